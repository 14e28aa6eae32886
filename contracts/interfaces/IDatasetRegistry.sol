// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IDatasetRegistry
/// @notice Sealed datasets: content root, cipher hash, URI, size and owner.
/// @dev Access to a dataset is granted per job by its owner through the job market (`JobMarket.grantAccess`),
///      whose job record is the grant record: the wrapped key is carried by the market's `AccessGranted` event.
interface IDatasetRegistry {
    /// @notice Stored dataset record. Slot 0: owner|size.
    struct Dataset {
        address owner;
        uint64 size;
        bytes32 contentRoot;
        bytes32 cipherHash;
        string uri;
    }

    event DatasetRegistered(
        uint256 indexed datasetId, address indexed owner, bytes32 contentRoot, bytes32 cipherHash, uint64 size, string uri
    );
    event DatasetURIUpdated(uint256 indexed datasetId, string uri);

    error DatasetInvalidRoot();
    error DatasetInvalidSize();
    error DatasetNotFound(uint256 datasetId);
    error DatasetNotOwner(uint256 datasetId, address caller);

    /// @notice Registers a sealed dataset owned by the caller.
    /// @return datasetId the new id, counting from 1.
    function registerDataset(bytes32 contentRoot, bytes32 cipherHash, uint64 size, string calldata uri)
        external
        returns (uint256 datasetId);

    /// @notice Moves the sealed file; the hashes stay.
    function updateURI(uint256 datasetId, string calldata uri) external;

    /// @notice The owner of `datasetId` (address(0) when it does not exist). One storage read.
    function ownerOf(uint256 datasetId) external view returns (address);

    /// @notice True when `datasetId` is registered.
    function exists(uint256 datasetId) external view returns (bool);

    /// @notice The content root (Merkle root over plaintext chunk hashes) of `datasetId`.
    function contentRoot(uint256 datasetId) external view returns (bytes32);

    /// @notice The full record of `datasetId`.
    function getDataset(uint256 datasetId) external view returns (Dataset memory);

    /// @notice Number of datasets registered.
    function datasetCount() external view returns (uint256);
}
