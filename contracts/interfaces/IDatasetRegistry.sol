// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IGrantListener
/// @notice Told by the dataset registry when an access grant is issued (the market starts the job).
interface IGrantListener {
    /// @notice Called after the owner of `datasetId` granted `worker` access for `jobId`.
    function onAccessGranted(uint256 datasetId, uint256 jobId, address worker) external;
}

/// @title IDatasetRegistry
/// @notice Sealed datasets (content root, cipher hash, URI, size, owner) and per-job, per-worker key grants.
/// @dev The wrapped data key of a grant is carried by the `AccessGranted` event, not stored.
interface IDatasetRegistry {
    /// @notice Stored dataset record. Slot 0: owner|size.
    struct Dataset {
        address owner;
        uint64 size;
        bytes32 contentRoot;
        bytes32 cipherHash;
        string uri;
    }

    /// @notice Stored grant record, one slot.
    struct Grant {
        uint40 grantedAt;
        uint40 expiresAt;
        uint40 revokedAt;
    }

    event GrantListenerSet(address indexed listener);
    event DatasetRegistered(
        uint256 indexed datasetId, address indexed owner, bytes32 contentRoot, bytes32 cipherHash, uint64 size, string uri
    );
    event DatasetURIUpdated(uint256 indexed datasetId, string uri);
    event AccessGranted(
        uint256 indexed datasetId, uint256 indexed jobId, address indexed worker, uint40 expiresAt, bytes wrappedKey
    );
    event AccessRevoked(uint256 indexed datasetId, uint256 indexed jobId, address indexed worker);

    error DatasetRegistryListenerAlreadySet(address listener);
    error DatasetInvalidRoot();
    error DatasetNotFound(uint256 datasetId);
    error DatasetNotOwner(uint256 datasetId, address caller);
    error DatasetInvalidGrant();
    error DatasetGrantExpiryInPast(uint40 expiresAt);
    error DatasetGrantActive(uint256 datasetId, uint256 jobId, address worker);
    error DatasetGrantNotFound(uint256 datasetId, uint256 jobId, address worker);

    /// @notice Registers a sealed dataset owned by the caller.
    /// @return datasetId the new id, counting from 1.
    function registerDataset(bytes32 contentRoot, bytes32 cipherHash, uint64 size, string calldata uri)
        external
        returns (uint256 datasetId);

    /// @notice Moves the sealed file; the hashes stay.
    function updateURI(uint256 datasetId, string calldata uri) external;

    /// @notice Owner grants `worker` access for `jobId` until `expiresAt`, publishing the HPKE-wrapped data key.
    function grantAccess(uint256 datasetId, uint256 jobId, address worker, uint40 expiresAt, bytes calldata wrappedKey)
        external;

    /// @notice Owner revokes a grant.
    function revokeAccess(uint256 datasetId, uint256 jobId, address worker) external;

    /// @notice May `worker` read `datasetId` for `jobId` now?
    function canRead(uint256 datasetId, uint256 jobId, address worker) external view returns (bool);

    /// @notice True when `datasetId` is registered.
    function exists(uint256 datasetId) external view returns (bool);

    /// @notice The content root (Merkle root over plaintext chunk hashes) of `datasetId`.
    function contentRoot(uint256 datasetId) external view returns (bytes32);

    /// @notice The full record of `datasetId`.
    function getDataset(uint256 datasetId) external view returns (Dataset memory);

    /// @notice The grant record for (`datasetId`, `jobId`, `worker`).
    function getGrant(uint256 datasetId, uint256 jobId, address worker) external view returns (Grant memory);

    /// @notice Number of datasets registered.
    function datasetCount() external view returns (uint256);
}
