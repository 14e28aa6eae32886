// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IJobMarket} from "../../../contracts/interfaces/IJobMarket.sol";
import {IWorkerRegistry} from "../../../contracts/interfaces/IWorkerRegistry.sol";

/// @notice An operator that is a contract: it registers its own worker and can batch market calls in one
///         transaction, as a squatter would (time out the grant, then take the job straight back).
contract SquatterOperator {
    IJobMarket public immutable market;
    IWorkerRegistry public immutable workers;

    constructor(IJobMarket market_, IWorkerRegistry workers_) {
        market = market_;
        workers = workers_;
    }

    function register(address worker, IWorkerRegistry.WorkerParams calldata params) external payable returns (uint32) {
        return workers.register{value: msg.value}(worker, params);
    }

    function assign(uint256 jobId, IJobMarket.JobTerms calldata terms, uint32 workerId) external {
        market.assign(jobId, terms, workerId);
    }

    /// @notice The v1 squat: reopen the job on a grant timeout and take it again in the same transaction.
    function timeoutAndRetake(uint256 jobId, IJobMarket.JobTerms calldata terms, uint32 workerId) external {
        market.timeoutGrant(jobId, terms);
        market.assign(jobId, terms, workerId);
    }
}

/// @notice An EIP-1271 signer that refuses every signature.
contract RejectingWallet is IERC1271 {
    function isValidSignature(bytes32, bytes calldata) external pure returns (bytes4) {
        return 0xffffffff;
    }
}
