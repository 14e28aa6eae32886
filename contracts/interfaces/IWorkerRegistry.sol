// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IWorkerRegistry
/// @notice GPU workers offered by providers: capabilities, price, HPKE key, signer and ETH stake.
/// @dev Records are keyed by a compact id handed out at registration. An address that leaves and registers again
///      gets a new id, so a job that names the old id never resolves to the new registration. Collateral for a
///      job is locked from the stake by the market (set once, immutably, at deployment); only the market can
///      slash. Locks and unlocks emit no event here: the market's job events report them.
interface IWorkerRegistry {
    /// @notice Lifecycle of a worker record. `Exited` records stay so that old job ids keep resolving.
    enum WorkerStatus {
        None,
        Active,
        Paused,
        Exiting,
        Exited
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
    /// @dev Slot 0: operator|status|gpuCount|gpuMemGiB|activeJobs|lockedGwei, everything assignment checks and
    ///      settlement writes, so unlocking a job's collateral and finding its payee is one slot. Locked collateral
    ///      is kept in gwei (the market's collateral per GPU is a whole number of gwei) to fit that slot.
    ///      Slot 1: stake|unbondingEnd|keyKind. Slot 2: account|price. Slot 3: signer.
    struct Worker {
        address operator;
        WorkerStatus status;
        uint8 gpuCount;
        uint16 gpuMemGiB;
        uint8 activeJobs;
        uint56 lockedGwei;
        uint96 stake;
        uint40 unbondingEnd;
        KeyKind keyKind;
        address account;
        uint96 pricePerGpuHour;
        address signer;
        bytes32 gpuModel;
        bytes encryptionKey;
    }

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
        uint32 indexed id,
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
    error WorkerHoldsJobs(address worker, uint256 activeJobs);
    error WorkerStakeTooLarge(uint256 stake);
    error WorkerTooManyWorkers();
    error WorkerTooManyJobs(address worker);
    error WorkerTransferFailed(address to, uint256 amount);
    error WorkerCollateralNotGwei(uint256 amount);

    /// @notice Registers `worker`, operated by the caller, staking `msg.value`.
    /// @return id the worker's compact id (new on every registration).
    function register(address worker, WorkerParams calldata params) external payable returns (uint32 id);

    /// @notice Replaces the signer, capabilities, price and encryption key of `worker`.
    /// @dev A new signer takes effect at once: attestations the old signer made but nobody submitted yet are
    ///      void (that is what rotating a compromised key must do). `ResultSubmitted` logs the signer that counted.
    function update(address worker, WorkerParams calldata params) external;

    /// @notice Adds `msg.value` to the stake of `worker`.
    function addStake(address worker) external payable;

    /// @notice Stops new assignments to `worker`; its jobs continue.
    function pause(address worker) external;

    /// @notice Makes a paused `worker` assignable again.
    function unpause(address worker) external;

    /// @notice Starts the unbonding delay; the worker takes no new jobs but must finish the ones it holds.
    function requestExit(address worker) external;

    /// @notice After unbonding, and only while the worker holds no job, pays the whole stake to the operator.
    function withdrawStake(address worker) external;

    /// @notice Market only: checks `caller` operates active worker `id`, that it fits every job (the largest GPU
    ///         count and memory among them) and has the free stake, then locks `amount` for `jobs` more jobs.
    /// @return operator the worker's operator.
    function lockCollateral(uint32 id, address caller, uint8 gpuCount, uint16 gpuMemGiB, uint256 amount, uint256 jobs)
        external
        returns (address operator);

    /// @notice Market only: releases the collateral of a job that ended without fault of the worker.
    /// @return operator the worker's operator, the payee of the job.
    function unlockCollateral(uint32 id, uint256 amount) external returns (address operator);

    /// @notice Market only: takes a job's locked collateral from the stake and sends it to the market.
    function slash(uint32 id, uint256 jobId, uint256 amount) external;

    /// @notice The market that locks, unlocks and slashes (fixed at deployment).
    function market() external view returns (address);

    /// @notice The current compact id of `worker` (0 when not registered).
    function idOf(address worker) external view returns (uint32);

    /// @notice The worker address of id `id` (address(0) when none).
    function workerAt(uint32 id) external view returns (address);

    /// @notice The worker address and attestation signer of id `id`.
    function signerOf(uint32 id) external view returns (address worker, address signer);

    /// @notice The operator and attestation signer of id `id`.
    function authorities(uint32 id) external view returns (address operator, address signer);

    /// @notice The full record of id `id`.
    function getWorkerById(uint32 id) external view returns (Worker memory);

    /// @notice Collateral of `id` locked for its jobs, in wei.
    function lockedOf(uint32 id) external view returns (uint256);

    /// @notice The full record of the current registration of `worker`.
    function getWorker(address worker) external view returns (Worker memory);

    /// @notice Number of worker ids handed out.
    function workerCount() external view returns (uint256);
}
