// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IWorkerRegistry
/// @notice GPU workers offered by providers: capabilities, price, HPKE key, signer and ETH stake.
/// @dev Collateral for a job is locked from the stake by the market; only the market can slash. Locks and
///      unlocks emit no event here: the market's JobAssigned/JobSettled/JobRefunded/JobReopened report them.
interface IWorkerRegistry {
    /// @notice Lifecycle of a worker entry.
    enum WorkerStatus {
        None,
        Active,
        Paused,
        Exiting
    }

    /// @notice HPKE suite of a worker's encryption key.
    enum KeyKind {
        X25519,
        MLKEM768X25519
    }

    /// @notice What a provider registers for one worker.
    struct WorkerParams {
        address signer;
        bytes32 gpuModel;
        uint8 gpuCount;
        uint16 gpuMemGiB;
        uint96 pricePerGpuHour;
        KeyKind keyKind;
        bytes encryptionKey;
    }

    /// @notice Stored worker record.
    /// @dev Slot 0: operator|id|status|gpuCount|gpuMemGiB|keyKind (what assignment reads). Slot 1: signer|price.
    ///      Slot 2: stake|locked|unbondingEnd. The compact `id` lets the market store a worker in 4 bytes.
    struct Worker {
        address operator;
        uint32 id;
        WorkerStatus status;
        uint8 gpuCount;
        uint16 gpuMemGiB;
        KeyKind keyKind;
        address signer;
        uint96 pricePerGpuHour;
        uint96 stake;
        uint96 locked;
        uint40 unbondingEnd;
        bytes32 gpuModel;
        bytes encryptionKey;
    }

    event MarketSet(address indexed market);
    event WorkerRegistered(
        address indexed worker,
        address indexed operator,
        uint32 indexed id,
        address signer,
        bytes32 gpuModel,
        uint8 gpuCount,
        uint16 gpuMemGiB,
        uint96 pricePerGpuHour,
        KeyKind keyKind,
        bytes encryptionKey,
        uint256 stake
    );
    event WorkerUpdated(
        address indexed worker,
        address signer,
        bytes32 gpuModel,
        uint8 gpuCount,
        uint16 gpuMemGiB,
        uint96 pricePerGpuHour,
        KeyKind keyKind,
        bytes encryptionKey
    );
    event StakeAdded(address indexed worker, uint256 amount, uint256 stake);
    event WorkerPaused(address indexed worker);
    event WorkerUnpaused(address indexed worker);
    event ExitRequested(address indexed worker, uint40 unbondingEnd);
    event StakeWithdrawn(address indexed worker, address indexed to, uint256 amount);
    event WorkerSlashed(address indexed worker, uint256 indexed jobId, uint256 amount);

    error WorkerRegistryZeroAddress();
    error WorkerRegistryMarketAlreadySet(address market);
    error WorkerRegistryNotMarket(address caller);
    error WorkerAlreadyRegistered(address worker);
    error WorkerNotRegistered(address worker);
    error WorkerUnknownId(uint32 id);
    error WorkerNotOperator(address worker, address caller);
    error WorkerNotActive(address worker, WorkerStatus status);
    error WorkerNotPaused(address worker);
    error WorkerInvalidCapabilities(uint8 gpuCount, uint16 gpuMemGiB);
    error WorkerInvalidEncryptionKey(KeyKind keyKind, uint256 length);
    error WorkerInsufficientCapabilities(address worker, uint8 gpuCount, uint16 gpuMemGiB);
    error WorkerInsufficientFreeStake(address worker, uint256 available, uint256 needed);
    error WorkerUnbonding(address worker, uint40 unbondingEnd);
    error WorkerCollateralLocked(address worker, uint256 locked);
    error WorkerStakeTooLarge(uint256 stake);
    error WorkerTooManyWorkers();
    error WorkerTransferFailed(address to, uint256 amount);

    /// @notice Registers `worker`, operated by the caller, staking `msg.value`.
    function register(address worker, WorkerParams calldata params) external payable;

    /// @notice Replaces the signer, capabilities, price and encryption key of `worker`.
    function update(address worker, WorkerParams calldata params) external;

    /// @notice Adds `msg.value` to the stake of `worker`.
    function addStake(address worker) external payable;

    /// @notice Stops new assignments to `worker`; running jobs continue.
    function pause(address worker) external;

    /// @notice Makes a paused `worker` assignable again.
    function unpause(address worker) external;

    /// @notice Starts the unbonding delay; the worker takes no new jobs.
    function requestExit(address worker) external;

    /// @notice After unbonding and with nothing locked, pays the whole stake to the operator.
    function withdrawStake(address worker) external;

    /// @notice Market only: checks `caller` operates an active worker that fits the job and locks collateral.
    /// @return operator the worker's operator; id the worker's compact id.
    function lockCollateral(address worker, address caller, uint8 gpuCount, uint16 gpuMemGiB, uint256 amount)
        external
        returns (address operator, uint32 id);

    /// @notice Market only: releases collateral of a finished job.
    /// @return worker the worker's address; operator its operator, the payee of the job.
    function unlockCollateral(uint32 id, uint256 amount) external returns (address worker, address operator);

    /// @notice Market only: takes locked collateral from the stake and sends it to the market.
    function slash(uint32 id, uint256 jobId, uint256 amount) external;

    /// @notice The compact id of `worker` (0 when not registered).
    function idOf(address worker) external view returns (uint32);

    /// @notice The worker with compact id `id` (address(0) when none).
    function workerAt(uint32 id) external view returns (address);

    /// @notice The address and attestation signer of the worker with compact id `id`.
    function signerOf(uint32 id) external view returns (address worker, address signer);

    /// @notice The operator and the attestation signer of `worker`.
    function authorities(address worker) external view returns (address operator, address signer);

    /// @notice The full record of `worker`.
    function getWorker(address worker) external view returns (Worker memory);

    /// @notice Number of worker ids handed out.
    function workerCount() external view returns (uint256);
}
