// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Attestation} from "../libraries/AttestationLib.sol";

/// @title IJobMarket
/// @notice Escrowed fine-tuning jobs: post, assign, start on grant, submit an attested result, settle.
interface IJobMarket {
    /// @notice Job states; Settled, Cancelled, Expired, Refunded and Failed are terminal.
    enum JobState {
        None,
        Open,
        Assigned,
        Running,
        Submitted,
        Disputed,
        Settled,
        Cancelled,
        Expired,
        Refunded,
        Failed
    }

    /// @notice What a client posts. `token` is address(0) for native ETH (then msg.value == amount).
    struct JobRequest {
        uint256 datasetId;
        bytes32 baseModelHash;
        bytes32 recipeHash;
        string recipeURI;
        uint8 gpuCount;
        uint16 gpuMemGiB;
        uint40 deadline;
        uint24 challengeWindow;
        address token;
        uint96 amount;
        bytes clientKey;
    }

    /// @notice Stored job, two slots.
    /// @dev Slot 0: client|state|gpuCount|stateSince|deadline. Slot 1: workerId|datasetId|challengeWindow|
    ///      gpuMemGiB|tokenId|escrow. Workers are stored by the registry's compact id and tokens by this market's
    ///      token id (0 is ETH), which saves a third fresh slot (22,100 gas) on every post.
    ///      The base-model and recipe hashes live in `JobPosted` only, and the contract does not compare the
    ///      attestation's content hashes with anything: a worker can sign whatever hashes it likes, so the
    ///      binding that matters is the attestation digest in `ResultSubmitted`, which `llmos audit` recomputes
    ///      from the posted job and the registered dataset. The contract checks who signed, for which job,
    ///      chain and market, and when.
    struct Job {
        address client;
        JobState state;
        uint8 gpuCount;
        uint40 stateSince;
        uint40 deadline;
        uint32 workerId;
        uint56 datasetId;
        uint24 challengeWindow;
        uint16 gpuMemGiB;
        uint16 tokenId;
        uint96 escrow;
    }

    /// @notice A job as {getJob} reports it, with the worker and token resolved to addresses.
    struct JobView {
        address client;
        JobState state;
        uint8 gpuCount;
        uint40 stateSince;
        uint40 deadline;
        address worker;
        uint256 datasetId;
        uint24 challengeWindow;
        uint16 gpuMemGiB;
        address token;
        uint96 escrow;
    }

    event JobPosted(
        uint256 indexed jobId,
        address indexed client,
        uint256 indexed datasetId,
        address token,
        uint96 amount,
        bytes32 baseModelHash,
        bytes32 recipeHash,
        string recipeURI,
        uint8 gpuCount,
        uint16 gpuMemGiB,
        uint40 deadline,
        uint24 challengeWindow,
        bytes clientKey
    );
    event JobCancelled(uint256 indexed jobId, uint256 refund);
    event JobAssigned(uint256 indexed jobId, address indexed worker, address indexed operator, uint256 collateral);
    event JobReopened(uint256 indexed jobId, address indexed worker);
    event JobStarted(uint256 indexed jobId, address indexed worker);
    event ResultSubmitted(
        uint256 indexed jobId,
        address indexed worker,
        bytes32 indexed digest,
        bytes32 outputHash,
        bytes32 metricsHash,
        bytes32 trajectoryRoot,
        uint64 startTime,
        uint64 endTime
    );
    event JobDisputed(uint256 indexed jobId, bytes32 reasonHash);
    event DisputeResolved(uint256 indexed jobId, bool workerWins);
    event JobSettled(uint256 indexed jobId, address indexed payee, uint256 amount);
    event JobRefunded(uint256 indexed jobId, address indexed client, uint256 amount, uint256 slashed);
    event JobExpired(uint256 indexed jobId);
    event FailureReported(uint256 indexed jobId, address indexed worker, uint8 reason, bytes32 detailsHash);
    event Withdrawn(address indexed token, address indexed account, uint256 amount);
    event ArbiterChanged(address indexed arbiter);
    event TokenRegistered(address indexed token, uint16 indexed tokenId);

    error JobMarketZeroAddress();
    error JobNotFound(uint256 jobId);
    error JobInvalidState(uint256 jobId, JobState state);
    error JobNotClient(uint256 jobId, address caller);
    error JobNotWorkerAuthority(uint256 jobId, address caller);
    error JobNotArbiter(address caller);
    error JobNotDatasetRegistry(address caller);
    error JobInvalidRequest(string field);
    error JobWrongPayment(uint256 expected, uint256 received);
    error JobDeadlinePassed(uint256 jobId, uint40 deadline);
    error JobDeadlineNotPassed(uint256 jobId, uint40 deadline);
    error JobGrantTimeoutNotReached(uint256 jobId, uint256 timeoutAt);
    error JobGrantMissing(uint256 jobId);
    error JobChallengeWindowClosed(uint256 jobId, uint256 closedAt);
    error JobChallengeWindowOpen(uint256 jobId, uint256 closesAt);
    error JobAttestationMismatch(uint256 jobId, string field);
    error JobInvalidAttestationSignature(uint256 jobId, address signer);
    error JobNothingToWithdraw(address token, address account);
    error JobUnexpectedEther(address sender);
    error JobTransferFailed(address to, uint256 amount);
    error JobTooManyTokens();

    /// @notice Posts a job with its payment in escrow.
    /// @return jobId the new id, counting from 1.
    function postJob(JobRequest calldata request) external payable returns (uint256 jobId);

    /// @notice Client cancels an open job and is credited the escrow.
    function cancel(uint256 jobId) external;

    /// @notice A worker's operator takes an open job; the worker's collateral is locked.
    function assign(uint256 jobId, address worker) external;

    /// @notice Dataset registry only: starts an assigned job once its grant is issued.
    function onAccessGranted(uint256 datasetId, uint256 jobId, address worker) external;

    /// @notice Anyone: starts an assigned job whose grant exists (if the registry's notice was missed).
    function startJob(uint256 jobId) external;

    /// @notice Anyone: reopens an assigned job whose owner did not grant access in time.
    function timeoutGrant(uint256 jobId) external;

    /// @notice Anyone relays the assigned worker's EIP-712 attestation of the result (the signature is the authority).
    function submitResult(uint256 jobId, Attestation calldata attestation, bytes calldata signature) external;

    /// @notice Operator or signer reports that the job cannot be done (bad data, hash mismatch); refunds the client.
    function reportFailure(uint256 jobId, uint8 reason, bytes32 detailsHash) external;

    /// @notice Client accepts a submitted result; the worker is paid.
    function accept(uint256 jobId) external;

    /// @notice Client disputes a submitted result within the challenge window.
    function dispute(uint256 jobId, bytes32 reasonHash) external;

    /// @notice Arbiter settles a disputed job for the worker or refunds the client and slashes.
    function resolveDispute(uint256 jobId, bool workerWins) external;

    /// @notice Anyone: settles a submitted job once its challenge window has closed.
    function finalize(uint256 jobId) external;

    /// @notice Anyone: after the deadline, refunds an assigned or running job (running ones are slashed).
    function reclaim(uint256 jobId) external;

    /// @notice Pays the caller's credit in `token` (address(0) for ETH).
    function withdraw(address token) external;

    /// @notice EIP-712 digest of `attestation` under this market's domain.
    function attestationDigest(Attestation calldata attestation) external view returns (bytes32);

    /// @notice The job, with its worker and token as addresses.
    function getJob(uint256 jobId) external view returns (JobView memory);

    /// @notice The id this market stores `token` under (0 for ETH and for tokens never used).
    function tokenId(address token) external view returns (uint16);

    /// @notice Unwithdrawn credit of `account` in `token`.
    function credits(address token, address account) external view returns (uint256);

    /// @notice Number of jobs posted.
    function jobCount() external view returns (uint256);
}
