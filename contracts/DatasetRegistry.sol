// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IDatasetRegistry} from "./interfaces/IDatasetRegistry.sol";

/// @title DatasetRegistry
/// @notice Records sealed datasets (hashes, size, URI, owner). Ownerless: anyone registers their own datasets.
contract DatasetRegistry is IDatasetRegistry {
    uint256 private _count;
    mapping(uint256 datasetId => Dataset) private _datasets;

    /// @inheritdoc IDatasetRegistry
    function registerDataset(bytes32 contentRoot_, bytes32 cipherHash, uint64 size, string calldata uri)
        external
        returns (uint256 datasetId)
    {
        if (contentRoot_ == bytes32(0) || cipherHash == bytes32(0)) revert DatasetInvalidRoot();
        if (size == 0) revert DatasetInvalidSize();
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
        address owner_ = _datasets[datasetId].owner;
        if (owner_ == address(0)) revert DatasetNotFound(datasetId);
        if (owner_ != msg.sender) revert DatasetNotOwner(datasetId, msg.sender);
        _datasets[datasetId].uri = uri;
        emit DatasetURIUpdated(datasetId, uri);
    }

    /// @inheritdoc IDatasetRegistry
    function ownerOf(uint256 datasetId) external view returns (address) {
        return _datasets[datasetId].owner;
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
    function datasetCount() external view returns (uint256) {
        return _count;
    }
}
