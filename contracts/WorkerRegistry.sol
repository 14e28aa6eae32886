// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IWorkerRegistry} from "./interfaces/IWorkerRegistry.sol";

/// @title WorkerRegistry
/// @notice Providers register GPU workers with an ETH stake; the job market locks, unlocks and slashes it.
/// @dev The market's address is fixed in the constructor (the deployer predicts it: the market is deployed right
///      after), so every market call costs no storage read for the access check and nobody can re-wire it.
///      Rules a provider relies on: collateral is locked per job and only the market moves it; a worker holding
///      jobs cannot take its stake out (whatever its collateral); a re-registration never inherits old jobs.
contract WorkerRegistry is IWorkerRegistry, ReentrancyGuardTransient {
    /// @notice Seconds between `requestExit` and `withdrawStake`.
    uint40 public immutable unbondingDelay;

    /// @inheritdoc IWorkerRegistry
    address public immutable market;

    uint32 private _idCount;
    mapping(uint32 id => Worker) private _workers;
    mapping(address worker => uint32 id) private _idOf;

    /// @dev X25519 public keys are 32 bytes; ML-KEM-768 (1184) + X25519 (32) hybrid keys are 1216 bytes.
    uint256 private constant _X25519_KEY_LEN = 32;
    uint256 private constant _HYBRID_KEY_LEN = 1216;

    modifier onlyMarket() {
        if (msg.sender != market) revert WorkerRegistryNotMarket(msg.sender);
        _;
    }

    /// @param market_ the job market (deployed next by the same deployer).
    /// @param unbondingDelay_ seconds a worker waits between exit request and stake withdrawal.
    constructor(address market_, uint40 unbondingDelay_) {
        if (market_ == address(0)) revert WorkerRegistryZeroAddress();
        market = market_;
        unbondingDelay = unbondingDelay_;
    }

    /// @inheritdoc IWorkerRegistry
    function register(address worker, WorkerParams calldata params) external payable returns (uint32 id) {
        if (worker == address(0)) revert WorkerRegistryZeroAddress();
        uint32 current = _idOf[worker];
        if (current != 0 && _workers[current].status != WorkerStatus.Exited) revert WorkerAlreadyRegistered(worker);
        _validate(params);
        if (msg.value > type(uint96).max) revert WorkerStakeTooLarge(msg.value);
        if (_idCount == type(uint32).max) revert WorkerTooManyWorkers();
        id = ++_idCount;
        _idOf[worker] = id;
        Worker storage w = _workers[id];
        w.operator = msg.sender;
        w.status = WorkerStatus.Active;
        w.stake = uint96(msg.value);
        w.account = worker;
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
    function update(address worker, WorkerParams calldata params) external {
        (uint32 id, Worker storage w) = _operated(worker);
        _validate(params);
        _write(w, params);
        emit WorkerUpdated(
            worker,
            id,
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
    function addStake(address worker) external payable {
        (, Worker storage w) = _operated(worker);
        uint256 stake = uint256(w.stake) + msg.value;
        if (stake > type(uint96).max) revert WorkerStakeTooLarge(stake);
        w.stake = uint96(stake);
        emit StakeAdded(worker, msg.value, stake);
    }

    /// @inheritdoc IWorkerRegistry
    function pause(address worker) external {
        (, Worker storage w) = _operated(worker);
        if (w.status != WorkerStatus.Active) revert WorkerNotActive(worker, w.status);
        w.status = WorkerStatus.Paused;
        emit WorkerPaused(worker);
    }

    /// @inheritdoc IWorkerRegistry
    function unpause(address worker) external {
        (, Worker storage w) = _operated(worker);
        if (w.status != WorkerStatus.Paused) revert WorkerNotPaused(worker);
        w.status = WorkerStatus.Active;
        emit WorkerUnpaused(worker);
    }

    /// @inheritdoc IWorkerRegistry
    function requestExit(address worker) external {
        (, Worker storage w) = _operated(worker);
        if (w.status == WorkerStatus.Exiting) revert WorkerUnbonding(worker, w.unbondingEnd);
        uint40 end = uint40(block.timestamp) + unbondingDelay;
        w.status = WorkerStatus.Exiting;
        w.unbondingEnd = end;
        emit ExitRequested(worker, end);
    }

    /// @inheritdoc IWorkerRegistry
    function withdrawStake(address worker) external nonReentrant {
        (, Worker storage w) = _operated(worker);
        if (w.status != WorkerStatus.Exiting || block.timestamp < w.unbondingEnd) {
            revert WorkerUnbonding(worker, w.unbondingEnd);
        }
        // Counted, not inferred from `locked`: with zero collateral a worker still holds jobs.
        if (w.activeJobs != 0) revert WorkerHoldsJobs(worker, w.activeJobs);
        uint256 amount = w.stake;
        address operator = w.operator;
        // The record stays (as Exited) so that the id of every finished job still names this registration.
        w.status = WorkerStatus.Exited;
        w.stake = 0;
        emit StakeWithdrawn(worker, operator, amount);
        _pay(operator, amount);
    }

    /// @inheritdoc IWorkerRegistry
    function lockCollateral(uint32 id, address caller, uint8 gpuCount, uint16 gpuMemGiB, uint256 amount, uint256 jobs)
        external
        onlyMarket
        returns (address operator)
    {
        Worker storage w = _workers[id];
        operator = w.operator;
        WorkerStatus status = w.status;
        if (status == WorkerStatus.None) revert WorkerUnknownId(id);
        if (operator != caller) revert WorkerNotOperator(w.account, caller);
        if (status != WorkerStatus.Active) revert WorkerNotActive(w.account, status);
        if (w.gpuCount < gpuCount || w.gpuMemGiB < gpuMemGiB) {
            revert WorkerInsufficientCapabilities(w.account, w.gpuCount, w.gpuMemGiB);
        }
        uint256 lockedGwei = uint256(w.lockedGwei) + _gwei(amount);
        uint256 free = w.stake - uint256(w.lockedGwei) * 1 gwei;
        if (free < amount) revert WorkerInsufficientFreeStake(w.account, free, amount);
        uint256 active = uint256(w.activeJobs) + jobs;
        if (active > type(uint8).max) revert WorkerTooManyJobs(w.account);
        if (lockedGwei > type(uint56).max) revert WorkerStakeTooLarge(lockedGwei * 1 gwei);
        w.lockedGwei = uint56(lockedGwei);
        w.activeJobs = uint8(active);
    }

    /// @inheritdoc IWorkerRegistry
    function unlockCollateral(uint32 id, uint256 amount) external onlyMarket returns (address operator) {
        Worker storage w = _workers[id];
        // The market only unlocks what it locked for a job it counted; underflow would be a market bug.
        w.lockedGwei -= uint56(_gwei(amount));
        w.activeJobs -= 1;
        operator = w.operator;
    }

    /// @inheritdoc IWorkerRegistry
    function slash(uint32 id, uint256 jobId, uint256 amount) external onlyMarket nonReentrant {
        Worker storage w = _workers[id];
        w.lockedGwei -= uint56(_gwei(amount));
        w.activeJobs -= 1;
        w.stake -= uint96(amount);
        emit WorkerSlashed(w.account, jobId, amount);
        if (amount != 0) _pay(msg.sender, amount);
    }

    /// @inheritdoc IWorkerRegistry
    function lockedOf(uint32 id) external view returns (uint256) {
        return uint256(_workers[id].lockedGwei) * 1 gwei;
    }

    /// @inheritdoc IWorkerRegistry
    function idOf(address worker) external view returns (uint32) {
        return _idOf[worker];
    }

    /// @inheritdoc IWorkerRegistry
    function workerAt(uint32 id) external view returns (address) {
        return _workers[id].account;
    }

    /// @inheritdoc IWorkerRegistry
    function signerOf(uint32 id) external view returns (address worker, address signer) {
        Worker storage w = _workers[id];
        return (w.account, w.signer);
    }

    /// @inheritdoc IWorkerRegistry
    function authorities(uint32 id) external view returns (address operator, address signer) {
        Worker storage w = _workers[id];
        return (w.operator, w.signer);
    }

    /// @inheritdoc IWorkerRegistry
    function getWorkerById(uint32 id) external view returns (Worker memory) {
        return _workers[id];
    }

    /// @inheritdoc IWorkerRegistry
    function getWorker(address worker) external view returns (Worker memory) {
        return _workers[_idOf[worker]];
    }

    /// @inheritdoc IWorkerRegistry
    function workerCount() external view returns (uint256) {
        return _idCount;
    }

    /// @dev The live record of `worker`, which the caller must operate.
    function _operated(address worker) private view returns (uint32 id, Worker storage w) {
        id = _idOf[worker];
        w = _workers[id];
        if (id == 0 || w.status == WorkerStatus.Exited) revert WorkerNotRegistered(worker);
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

    function _gwei(uint256 amount) private pure returns (uint256) {
        if (amount % 1 gwei != 0) revert WorkerCollateralNotGwei(amount);
        return amount / 1 gwei;
    }

    function _pay(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert WorkerTransferFailed(to, amount);
    }
}
