// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Attestation} from "../libraries/AttestationLib.sol";

/// @title IJobMarket
/// @notice Escrowed fine-tuning jobs: post, assign, grant (which starts the run), submit an attested result or
///         report a failure, challenge, settle. Every transition says who may call it and when; see the README's
///         rules table. Time boundaries are inclusive for the party that acts in time and exclusive for the
///         one that acts on lateness: `t <= limit` is in time, `t > limit` is late.
interface IJobMarket {
    /// @notice Job states as the ABI returns them. Settled and everything after it are terminal.
    enum JobState {
        None, //             0
        Open, //             1  posted, or reopened; the client may cancel
        Assigned, //         2  a worker took it; waits for the owner's grant
        Running, //          3  granted; the worker has `runTime` seconds from the grant
        Submitted, //        4  attested result; challenge window running
        FailureClaimed, //   5  worker reported a failure in time; challenge window running
        Disputed, //         6  client challenged a result; arbiter decides by the dispute deadline
        FailureDisputed, //  7  client challenged a failure report; arbiter decides by the dispute deadline
        Settled, //          8  worker paid
        Cancelled, //        9  client took the escrow back before any grant
        Expired, //         10  deadline passed: no fair start possible (no slash) or run time over (slash)
        Refunded, //        11  dispute lost by the worker: client refunded, worker slashed
        Failed //           12  failure report stood: client refunded, worker released
    }

    /// @notice What a client posts. `token` is address(0) for native ETH (then msg.value == amount).
    /// @dev `runTime` is the worker's fair time: the run window opens at the grant and lasts `runTime` seconds;
    ///      no grant is possible later than `deadline - runTime`. `clientKeyId` names a key registered with
    ///      {registerClientKey} (by anyone: a public key is public); the output is sealed to it.
    struct JobRequest {
        uint256 datasetId;
        bytes32 baseModelHash;
        bytes32 recipeHash;
        string recipeURI;
        uint8 gpuCount;
        uint16 gpuMemGiB;
        uint40 deadline;
        uint32 runTime;
        uint24 challengeWindow;
        address token;
        uint96 amount;
        uint32 clientKeyId;
    }

    /// @notice A job's fixed terms. Stored only as a hash in the job record; every later call passes them back
    ///         (they are all in `JobPosted`), and a call whose terms do not hash to the record reverts.
    struct JobTerms {
        address client;
        address datasetOwner;
        address token;
        uint96 amount;
        uint64 datasetId;
        uint32 clientKeyId;
        uint8 gpuCount;
        uint16 gpuMemGiB;
        uint40 deadline;
        uint32 runTime;
        uint24 challengeWindow;
    }

    /// @notice The stored job: one slot. `since` is when the current state began; `workerId` is the assigned
    ///         worker's registry id, kept after a reopening so that the same worker cannot retake the job at once.
    struct Job {
        bytes22 termsHash;
        uint32 workerId;
        uint40 since;
        JobState state;
    }

    /// @notice A job as {getJob} reports it.
    struct JobView {
        JobState state;
        uint40 since;
        uint32 workerId;
        address worker;
        bytes22 termsHash;
    }

    /// @notice Why an assigned job went back to Open.
    enum ReopenCause {
        GrantTimeout,
        Dropped,
        Released
    }

    /// @notice What the arbiter replayed to decide a dispute (see `llmos verify`): the trajectory interval it names
    ///         (the first whose replay disagreed, or the last one checked when all agreed), the weights hash the
    ///         worker recorded at that interval's end, the one the replay reached, and the BLAKE3 hash of the
    ///         arbiter's published verification report.
    struct ReplayEvidence {
        uint32 interval;
        bytes32 expected;
        bytes32 replayed;
        bytes32 reportHash;
    }

    event ClientKeyRegistered(uint32 indexed keyId, address indexed client, uint8 keyKind, bytes key);
    event JobPosted(
        uint256 indexed jobId,
        address indexed client,
        uint256 indexed datasetId,
        JobTerms terms,
        bytes32 baseModelHash,
        bytes32 recipeHash,
        string recipeURI
    );
    event JobCancelled(uint256 indexed jobId, uint256 refund);
    event JobAssigned(uint256 indexed jobId, uint32 indexed workerId, address indexed operator);
    event JobReopened(uint256 indexed jobId, uint32 indexed workerId, ReopenCause cause);
    event AccessGranted(uint256 indexed jobId, uint40 dueAt, bytes wrappedKey);
    event ResultSubmitted(
        uint256 indexed jobId,
        address indexed worker,
        bytes32 indexed digest,
        address signer,
        bytes32 outputHash,
        bytes32 metricsHash,
        bytes32 trajectoryRoot,
        uint64 startTime,
        uint64 endTime
    );
    event FailureReported(uint256 indexed jobId, uint32 indexed workerId, uint8 reason, bytes32 detailsHash);
    event JobDisputed(uint256 indexed jobId, bytes32 reasonHash, uint256 bond, uint256 resolveBy);
    event DisputeResolved(uint256 indexed jobId, bool workerWins, bool byDefault);
    event JobSettled(uint256 indexed jobId, address indexed payee, uint256 amount);
    event JobRefunded(uint256 indexed jobId, address indexed client, uint256 amount, uint256 slashed);
    event JobExpired(uint256 indexed jobId, bool slashed);
    event JobFailed(uint256 indexed jobId);
    event Withdrawn(address indexed token, address indexed account, uint256 amount);
    event ArbiterChanged(address indexed arbiter);
    event ArbiterKeySet(address indexed arbiter, uint32 keyId);
    event VerifierGranted(uint256 indexed jobId, address indexed verifier, uint32 keyId, bytes wrappedKey);
    event DisputeEvidence(uint256 indexed jobId, uint32 interval, bytes32 expected, bytes32 replayed, bytes32 reportHash);

    error JobMarketZeroAddress();
    error JobMarketMiswired(address registryMarket);
    error JobMarketZeroCollateral();
    error JobMarketCollateralNotGwei(uint256 collateralPerGpu);
    error JobNotFound(uint256 jobId);
    error JobTermsMismatch(uint256 jobId);
    error JobInvalidState(uint256 jobId, JobState state);
    error JobNotClient(uint256 jobId, address caller);
    error JobNotClientOrOwner(uint256 jobId, address caller);
    error JobNotDatasetOwner(uint256 jobId, address caller);
    error JobNotWorkerAuthority(uint256 jobId, address caller);
    error JobNotArbiter(address caller);
    error JobNoArbiterKey();
    error JobInvalidRequest(string field);
    error JobUnknownDataset(uint256 datasetId);
    error JobUnknownClientKey(uint32 keyId);
    error JobInvalidClientKey(uint8 keyKind, uint256 length);
    error JobWrongPayment(uint256 expected, uint256 received);
    error JobTokenShortfall(address token, uint256 expected, uint256 received);
    error JobTooLateToStart(uint256 jobId, uint256 latestStart);
    error JobRetakeTooSoon(uint256 jobId, uint256 until);
    error JobGrantTimeoutNotReached(uint256 jobId, uint256 timeoutAt);
    error JobRunTimeOver(uint256 jobId, uint256 dueAt);
    error JobNotExpirable(uint256 jobId, uint256 expiresAfter);
    error JobChallengeWindowClosed(uint256 jobId, uint256 closedAt);
    error JobChallengeWindowOpen(uint256 jobId, uint256 closesAt);
    error JobDisputeDeadlinePassed(uint256 jobId, uint256 resolveBy);
    error JobDisputeDeadlineNotPassed(uint256 jobId, uint256 resolveBy);
    error JobAttestationMismatch(uint256 jobId, string field);
    error JobInvalidAttestationSignature(uint256 jobId, address signer);
    error JobNothingToWithdraw(address token, address account);
    error JobUnexpectedEther(address sender);
    error JobTransferFailed(address to, uint256 amount);

    /// @notice Registers a public key that outputs can be sealed to (0: X25519, 32 bytes; 1: ML-KEM-768 + X25519,
    ///         1216 bytes). The key lives in the event; jobs name it by id.
    function registerClientKey(uint8 keyKind, bytes calldata key) external returns (uint32 keyId);

    /// @notice Posts a job with its payment in escrow. ERC-20 escrow must arrive in full (no fee-on-transfer).
    /// @return jobId the new id, counting from 1.
    function postJob(JobRequest calldata request) external payable returns (uint256 jobId);

    /// @notice Posts several jobs in one transaction; `msg.value` is the sum of the ETH jobs' amounts.
    /// @return firstJobId the id of the first; the rest follow consecutively.
    function postJobs(JobRequest[] calldata requests) external payable returns (uint256 firstJobId);

    /// @notice Client: cancels a job nobody was granted yet (Open or Assigned); escrow back, worker released.
    function cancel(uint256 jobId, JobTerms calldata terms) external;

    /// @notice A worker's operator takes an Open job while a fair run still fits before the deadline
    ///         (`now + runTime <= deadline`); the worker's collateral is locked. A worker whose assignment was
    ///         dropped or timed out cannot retake the job for one grant timeout.
    function assign(uint256 jobId, JobTerms calldata terms, uint32 workerId) external;

    /// @notice {assign} for several jobs to one worker, locking their collateral in one registry call.
    function assignMany(uint256[] calldata jobIds, JobTerms[] calldata terms, uint32 workerId) external;

    /// @notice Client or dataset owner: drops an ungranted assignment; the job reopens, the worker is released.
    function dropAssignment(uint256 jobId, JobTerms calldata terms) external;

    /// @notice Anyone: reopens an Assigned job whose owner did not grant within the grant timeout (`now > since + grantTimeout`).
    function timeoutGrant(uint256 jobId, JobTerms calldata terms) external;

    /// @notice Dataset owner: publishes the data key wrapped to the assigned worker and starts the run window,
    ///         which must fit before the deadline (`now + runTime <= deadline`).
    function grantAccess(uint256 jobId, JobTerms calldata terms, bytes calldata wrappedKey) external;

    /// @notice Anyone relays the worker's EIP-712 attestation, in the run window (`now <= grant + runTime`).
    ///         The signature must come from the worker's signer at submission time (EOA or EIP-1271).
    function submitResult(uint256 jobId, JobTerms calldata terms, Attestation calldata attestation, bytes calldata signature)
        external;

    /// @notice Worker's operator or signer reports that the job cannot be done. Before the grant the job reopens
    ///         (the worker is released). In the run window the claim opens the challenge window: the client may
    ///         dispute it; undisputed it ends Failed (client refunded, worker released). After the run window: reverts.
    function reportFailure(uint256 jobId, JobTerms calldata terms, uint8 reason, bytes32 detailsHash) external;

    /// @notice Client accepts a submitted result (worker paid) or a failure claim (client refunded).
    function accept(uint256 jobId, JobTerms calldata terms) external;

    /// @notice Client disputes a result or failure claim within the challenge window, paying the dispute bond.
    function dispute(uint256 jobId, JobTerms calldata terms, bytes32 reasonHash) external payable;

    /// @notice Arbiter decides a dispute by its deadline. Worker wins: the result (or failure claim) stands and the
    ///         bond goes to the worker's operator. Client wins: refund, slash, bond back.

    /// @notice Arbiter decides a dispute by its deadline. Worker wins: the result (or failure claim) stands and the
    ///         bond goes to the worker's operator. Client wins: refund, slash, bond back.
    function resolveDispute(uint256 jobId, JobTerms calldata terms, bool workerWins) external;

    /// @notice {resolveDispute} with the replay that decided it, recorded in `DisputeEvidence` before the outcome.
    function resolveDisputeWithEvidence(uint256 jobId, JobTerms calldata terms, bool workerWins, ReplayEvidence calldata evidence)
        external;

    /// @notice Arbiter: names the registered key (see {registerClientKey}) that verifiers' grants and checkpoints are
    ///         sealed to; 0 clears it. Workers seal their training checkpoints to it; a new arbiter starts with none.
    function setArbiterKey(uint32 keyId) external;

    /// @notice Dataset owner: publishes the data key wrapped to the arbiter's key for a Disputed job, so that the
    ///         arbiter can replay the training it disputes. Changes no state; may be sent again (the last one counts).
    function grantVerifier(uint256 jobId, JobTerms calldata terms, bytes calldata wrappedKey) external;

    /// @notice Anyone: ends a Submitted or FailureClaimed job after its challenge window, or a dispute after its
    ///         deadline with the default outcome (the worker's claim stands; the bond goes to its operator).
    function finalize(uint256 jobId, JobTerms calldata terms) external;

    /// @notice Anyone: expires a Running job after its run window (worker slashed) or an Assigned job that can no
    ///         longer start in time (`now + runTime > deadline`; no slash).
    function reclaim(uint256 jobId, JobTerms calldata terms) external;

    /// @notice Pays the caller's credit in `token` (address(0) for ETH).
    function withdraw(address token) external;

    /// @notice Runs several calls of this market as the caller, in order, all or nothing (e.g. a provider's
    ///         assignments, an owner's grants, a client's accepts, a keeper's finalizations). Non-payable: a batched
    ///         call can never reuse one `msg.value`, so ETH jobs are batched with {postJobs} instead.
    function multicall(bytes[] calldata data) external returns (bytes[] memory results);

    /// @notice EIP-712 digest of `attestation` under this market's domain.
    function attestationDigest(Attestation calldata attestation) external view returns (bytes32);

    /// @notice The hash a job record stores for `terms`.
    function hashTerms(JobTerms calldata terms) external pure returns (bytes22);

    /// @notice The job's mutable record, with its worker resolved to an address.
    function getJob(uint256 jobId) external view returns (JobView memory);

    /// @notice Whether `worker` holds the running grant of `jobId`.
    function canRead(uint256 jobId, address worker) external view returns (bool);

    /// @notice The arbiter's key id for verification grants and sealed checkpoints (0: none).
    function arbiterKeyId() external view returns (uint32);

    /// @notice Number of client keys registered (ids count from 1).
    function clientKeyCount() external view returns (uint32);

    /// @notice Unwithdrawn credit of `account` in `token`.
    function credits(address token, address account) external view returns (uint256);

    /// @notice Number of jobs posted.
    function jobCount() external view returns (uint256);
}
