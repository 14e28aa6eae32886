// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice What a worker signs about one finished job (EIP-712 struct `Attestation`).
struct Attestation {
    uint256 jobId;
    address worker;
    bytes32 datasetRoot;
    bytes32 baseModelHash;
    bytes32 recipeHash;
    bytes32 outputHash;
    bytes32 metricsHash;
    bytes32 trajectoryRoot;
    uint64 startTime;
    uint64 endTime;
}

/// @title AttestationLib
/// @notice EIP-712 struct hash of an {Attestation}; the Python side mirrors it in llmos_chain/attestation.py.
library AttestationLib {
    bytes32 internal constant TYPEHASH = keccak256(
        "Attestation(uint256 jobId,address worker,bytes32 datasetRoot,bytes32 baseModelHash,bytes32 recipeHash,"
        "bytes32 outputHash,bytes32 metricsHash,bytes32 trajectoryRoot,uint64 startTime,uint64 endTime)"
    );

    /// @notice hashStruct(attestation) as EIP-712 defines it (all members are static: abi.encode suffices).
    function hash(Attestation calldata a) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                TYPEHASH,
                a.jobId,
                a.worker,
                a.datasetRoot,
                a.baseModelHash,
                a.recipeHash,
                a.outputHash,
                a.metricsHash,
                a.trajectoryRoot,
                a.startTime,
                a.endTime
            )
        );
    }
}
