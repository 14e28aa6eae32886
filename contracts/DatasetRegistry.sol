// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IDatasetRegistry, IGrantListener} from "./interfaces/IDatasetRegistry.sol";

/// @title DatasetRegistry
/// @notice Records sealed datasets and the owner's per-job, per-worker access grants.
/// @dev A grant's wrapped key lives in its event: storing ~80 bytes per grant would triple its gas,
///      and the event log is as permanent and as public as storage.
contract DatasetRegistry is IDatasetRegistry, Ownable {
    /// @notice Told of each new grant (the job market); set once by the owner.
    address public grantListener;

    uint256 private _count;
    mapping(uint256 datasetId => Dataset) private _datasets;
    mapping(bytes32 grantKey => Grant) private _grants;

    constructor(address initialOwner) Ownable(initialOwner) {}

    /// @notice Wires the grant listener (the job market); callable once.
    function setGrantListener(address listener) external onlyOwner {
        if (grantListener != address(0)) revert DatasetRegistryListenerAlreadySet(grantListener);
        grantListener = listener;
        emit GrantListenerSet(listener);
    }

    /// @inheritdoc IDatasetRegistry
    function registerDataset(bytes32 contentRoot_, bytes32 cipherHash, uint64 size, string calldata uri)
        external
        returns (uint256 datasetId)
    {
        if (contentRoot_ == bytes32(0) || cipherHash == bytes32(0)) revert DatasetInvalidRoot();
        datasetId = ++_count;
        Dataset storage d = _datasets[datasetId];
        d.owner = msg.sender;
        d.size = size;
        d.contentRoot = contentRoot_;
        d.cipherHash = cipherHash;
        d.uri = uri;
        emit DatasetRegistered(datasetId, msg.sender, contentRoot_, cipherHash, size, uri);
    }

    /// @inheritdoc IDatasetRegistry
    function updateURI(uint256 datasetId, string calldata uri) external {
        _checkDatasetOwner(datasetId);
        _datasets[datasetId].uri = uri;
        emit DatasetURIUpdated(datasetId, uri);
    }

    /// @inheritdoc IDatasetRegistry
    function grantAccess(uint256 datasetId, uint256 jobId, address worker, uint40 expiresAt, bytes calldata wrappedKey)
        external
    {
        _checkDatasetOwner(datasetId);
        if (worker == address(0) || wrappedKey.length == 0) revert DatasetInvalidGrant();
        if (expiresAt <= block.timestamp) revert DatasetGrantExpiryInPast(expiresAt);
        Grant storage g = _grants[_key(datasetId, jobId, worker)];
        if (g.grantedAt != 0 && g.revokedAt == 0 && block.timestamp <= g.expiresAt) {
            revert DatasetGrantActive(datasetId, jobId, worker);
        }
        _grants[_key(datasetId, jobId, worker)] =
            Grant({grantedAt: uint40(block.timestamp), expiresAt: expiresAt, revokedAt: 0});
        emit AccessGranted(datasetId, jobId, worker, expiresAt, wrappedKey);
        address listener = grantListener;
        if (listener != address(0)) IGrantListener(listener).onAccessGranted(datasetId, jobId, worker);
    }

    /// @inheritdoc IDatasetRegistry
    function revokeAccess(uint256 datasetId, uint256 jobId, address worker) external {
        _checkDatasetOwner(datasetId);
        Grant storage g = _grants[_key(datasetId, jobId, worker)];
        if (g.grantedAt == 0 || g.revokedAt != 0) revert DatasetGrantNotFound(datasetId, jobId, worker);
        g.revokedAt = uint40(block.timestamp);
        emit AccessRevoked(datasetId, jobId, worker);
    }

    /// @inheritdoc IDatasetRegistry
    function canRead(uint256 datasetId, uint256 jobId, address worker) external view returns (bool) {
        Grant memory g = _grants[_key(datasetId, jobId, worker)];
        return g.grantedAt != 0 && g.revokedAt == 0 && block.timestamp <= g.expiresAt;
    }

    /// @inheritdoc IDatasetRegistry
    function exists(uint256 datasetId) external view returns (bool) {
        return _datasets[datasetId].owner != address(0);
    }

    /// @inheritdoc IDatasetRegistry
    function contentRoot(uint256 datasetId) external view returns (bytes32) {
        return _datasets[datasetId].contentRoot;
    }

    /// @inheritdoc IDatasetRegistry
    function getDataset(uint256 datasetId) external view returns (Dataset memory) {
        if (_datasets[datasetId].owner == address(0)) revert DatasetNotFound(datasetId);
        return _datasets[datasetId];
    }

    /// @inheritdoc IDatasetRegistry
    function getGrant(uint256 datasetId, uint256 jobId, address worker) external view returns (Grant memory) {
        return _grants[_key(datasetId, jobId, worker)];
    }

    /// @inheritdoc IDatasetRegistry
    function datasetCount() external view returns (uint256) {
        return _count;
    }

    function _checkDatasetOwner(uint256 datasetId) private view {
        address owner_ = _datasets[datasetId].owner;
        if (owner_ == address(0)) revert DatasetNotFound(datasetId);
        if (owner_ != msg.sender) revert DatasetNotOwner(datasetId, msg.sender);
    }

    function _key(uint256 datasetId, uint256 jobId, address worker) private pure returns (bytes32) {
        return keccak256(abi.encode(datasetId, jobId, worker));
    }
}
