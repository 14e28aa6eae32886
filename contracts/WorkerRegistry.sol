// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IWorkerRegistry} from "./interfaces/IWorkerRegistry.sol";

/// @title WorkerRegistry
/// @notice Providers register GPU workers with an ETH stake; the job market locks, unlocks and slashes it.
/// @dev The owner wires the market once after deployment (the market takes this registry in its constructor).
contract WorkerRegistry is IWorkerRegistry, Ownable, ReentrancyGuardTransient {
    /// @notice Seconds between `requestExit` and `withdrawStake`.
    uint40 public immutable unbondingDelay;

    /// @notice The only contract that may lock, unlock and slash collateral.
    address public market;

    uint32 private _idCount;
    mapping(address worker => Worker) private _workers;
    mapping(uint32 id => address worker) private _workerAt;

    /// @dev X25519 public keys are 32 bytes; ML-KEM-768 (1184) + X25519 (32) hybrid keys are 1216 bytes.
    uint256 private constant _X25519_KEY_LEN = 32;
    uint256 private constant _HYBRID_KEY_LEN = 1216;

    modifier onlyMarket() {
        if (msg.sender != market) revert WorkerRegistryNotMarket(msg.sender);
        _;
    }

    modifier onlyOperator(address worker) {
        _checkOperator(worker);
        _;
    }

    /// @param initialOwner may call {setMarket} once.
    /// @param unbondingDelay_ seconds a worker waits between exit request and stake withdrawal.
    constructor(address initialOwner, uint40 unbondingDelay_) Ownable(initialOwner) {
        unbondingDelay = unbondingDelay_;
    }

    /// @notice Wires the job market; callable once.
    function setMarket(address market_) external onlyOwner {
        if (market_ == address(0)) revert WorkerRegistryZeroAddress();
        if (market != address(0)) revert WorkerRegistryMarketAlreadySet(market);
        market = market_;
        emit MarketSet(market_);
    }

    /// @inheritdoc IWorkerRegistry
    function register(address worker, WorkerParams calldata params) external payable {
        if (worker == address(0)) revert WorkerRegistryZeroAddress();
        Worker storage w = _workers[worker];
        if (w.status != WorkerStatus.None) revert WorkerAlreadyRegistered(worker);
        _validate(params);
        if (msg.value > type(uint96).max) revert WorkerStakeTooLarge(msg.value);
        if (_idCount == type(uint32).max) revert WorkerTooManyWorkers();
        // A re-registered address (after withdrawStake) gets a fresh id: old jobs keep pointing at the old one.
        uint32 id = ++_idCount;
        _workerAt[id] = worker;
        w.operator = msg.sender;
        w.id = id;
        w.status = WorkerStatus.Active;
        w.stake = uint96(msg.value);
        _write(w, params);
        emit WorkerRegistered(
            worker,
            msg.sender,
            id,
            params.signer,
            params.gpuModel,
            params.gpuCount,
            params.gpuMemGiB,
            params.pricePerGpuHour,
            params.keyKind,
            params.encryptionKey,
            msg.value
        );
    }

    /// @inheritdoc IWorkerRegistry
    function update(address worker, WorkerParams calldata params) external onlyOperator(worker) {
        _validate(params);
        _write(_workers[worker], params);
        emit WorkerUpdated(
            worker,
            params.signer,
            params.gpuModel,
            params.gpuCount,
            params.gpuMemGiB,
            params.pricePerGpuHour,
            params.keyKind,
            params.encryptionKey
        );
    }

    /// @inheritdoc IWorkerRegistry
    function addStake(address worker) external payable onlyOperator(worker) {
        Worker storage w = _workers[worker];
        uint256 stake = uint256(w.stake) + msg.value;
        if (stake > type(uint96).max) revert WorkerStakeTooLarge(stake);
        w.stake = uint96(stake);
        emit StakeAdded(worker, msg.value, stake);
    }

    /// @inheritdoc IWorkerRegistry
    function pause(address worker) external onlyOperator(worker) {
        Worker storage w = _workers[worker];
        if (w.status != WorkerStatus.Active) revert WorkerNotActive(worker, w.status);
        w.status = WorkerStatus.Paused;
        emit WorkerPaused(worker);
    }

    /// @inheritdoc IWorkerRegistry
    function unpause(address worker) external onlyOperator(worker) {
        Worker storage w = _workers[worker];
        if (w.status != WorkerStatus.Paused) revert WorkerNotPaused(worker);
        w.status = WorkerStatus.Active;
        emit WorkerUnpaused(worker);
    }

    /// @inheritdoc IWorkerRegistry
    function requestExit(address worker) external onlyOperator(worker) {
        Worker storage w = _workers[worker];
        if (w.status == WorkerStatus.Exiting) revert WorkerUnbonding(worker, w.unbondingEnd);
        uint40 end = uint40(block.timestamp) + unbondingDelay;
        w.status = WorkerStatus.Exiting;
        w.unbondingEnd = end;
        emit ExitRequested(worker, end);
    }

    /// @inheritdoc IWorkerRegistry
    function withdrawStake(address worker) external nonReentrant onlyOperator(worker) {
        Worker storage w = _workers[worker];
        if (w.status != WorkerStatus.Exiting || block.timestamp < w.unbondingEnd) {
            revert WorkerUnbonding(worker, w.unbondingEnd);
        }
        if (w.locked != 0) revert WorkerCollateralLocked(worker, w.locked);
        uint256 amount = w.stake;
        address operator = w.operator;
        // The record goes before the payment (checks-effects-interactions). The id keeps resolving to this
        // address, so finished jobs still name their worker.
        delete _workers[worker];
        emit StakeWithdrawn(worker, operator, amount);
        _pay(operator, amount);
    }

    /// @inheritdoc IWorkerRegistry
    function lockCollateral(address worker, address caller, uint8 gpuCount, uint16 gpuMemGiB, uint256 amount)
        external
        onlyMarket
        returns (address operator, uint32 id)
    {
        Worker storage w = _workers[worker];
        operator = w.operator;
        id = w.id;
        if (w.status == WorkerStatus.None) revert WorkerNotRegistered(worker);
        if (operator != caller) revert WorkerNotOperator(worker, caller);
        if (w.status != WorkerStatus.Active) revert WorkerNotActive(worker, w.status);
        if (w.gpuCount < gpuCount || w.gpuMemGiB < gpuMemGiB) {
            revert WorkerInsufficientCapabilities(worker, w.gpuCount, w.gpuMemGiB);
        }
        uint256 locked = w.locked;
        uint256 free = w.stake - locked;
        if (free < amount) revert WorkerInsufficientFreeStake(worker, free, amount);
        // Fits in uint96: locked + amount <= stake, which is a uint96.
        w.locked = uint96(locked + amount);
    }

    /// @inheritdoc IWorkerRegistry
    function unlockCollateral(uint32 id, uint256 amount) external onlyMarket returns (address worker, address operator) {
        worker = _workerAt[id];
        Worker storage w = _workers[worker];
        // The market only unlocks what it locked, and a worker cannot leave while anything is locked.
        w.locked -= uint96(amount);
        operator = w.operator;
    }

    /// @inheritdoc IWorkerRegistry
    function slash(uint32 id, uint256 jobId, uint256 amount) external onlyMarket nonReentrant {
        address worker = _workerAt[id];
        Worker storage w = _workers[worker];
        w.locked -= uint96(amount);
        w.stake -= uint96(amount);
        emit WorkerSlashed(worker, jobId, amount);
        _pay(msg.sender, amount);
    }

    /// @inheritdoc IWorkerRegistry
    function idOf(address worker) external view returns (uint32) {
        return _workers[worker].id;
    }

    /// @inheritdoc IWorkerRegistry
    function workerAt(uint32 id) external view returns (address) {
        return _workerAt[id];
    }

    /// @inheritdoc IWorkerRegistry
    function signerOf(uint32 id) external view returns (address worker, address signer) {
        worker = _workerAt[id];
        signer = _workers[worker].signer;
    }

    /// @inheritdoc IWorkerRegistry
    function authorities(address worker) external view returns (address operator, address signer) {
        Worker storage w = _workers[worker];
        return (w.operator, w.signer);
    }

    /// @inheritdoc IWorkerRegistry
    function getWorker(address worker) external view returns (Worker memory) {
        return _workers[worker];
    }

    /// @inheritdoc IWorkerRegistry
    function workerCount() external view returns (uint256) {
        return _idCount;
    }

    function _checkOperator(address worker) private view {
        Worker storage w = _workers[worker];
        if (w.status == WorkerStatus.None) revert WorkerNotRegistered(worker);
        if (w.operator != msg.sender) revert WorkerNotOperator(worker, msg.sender);
    }

    function _validate(WorkerParams calldata p) private pure {
        if (p.signer == address(0)) revert WorkerRegistryZeroAddress();
        if (p.gpuCount == 0 || p.gpuMemGiB == 0) revert WorkerInvalidCapabilities(p.gpuCount, p.gpuMemGiB);
        uint256 expected = p.keyKind == KeyKind.X25519 ? _X25519_KEY_LEN : _HYBRID_KEY_LEN;
        if (p.encryptionKey.length != expected) revert WorkerInvalidEncryptionKey(p.keyKind, p.encryptionKey.length);
    }

    function _write(Worker storage w, WorkerParams calldata p) private {
        w.signer = p.signer;
        w.gpuModel = p.gpuModel;
        w.gpuCount = p.gpuCount;
        w.gpuMemGiB = p.gpuMemGiB;
        w.pricePerGpuHour = p.pricePerGpuHour;
        w.keyKind = p.keyKind;
        w.encryptionKey = p.encryptionKey;
    }

    function _pay(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert WorkerTransferFailed(to, amount);
    }
}
