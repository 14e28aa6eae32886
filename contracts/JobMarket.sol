// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJobMarket} from "./interfaces/IJobMarket.sol";
import {IWorkerRegistry} from "./interfaces/IWorkerRegistry.sol";
import {IDatasetRegistry} from "./interfaces/IDatasetRegistry.sol";
import {Attestation, AttestationLib} from "./libraries/AttestationLib.sol";

/// @title JobMarket
/// @notice Escrows fine-tuning jobs in ETH or an ERC-20 and settles them on a worker's EIP-712 attestation.
/// @dev The rules each party relies on:
///      - Worker: slashed only after holding the data for its whole `runTime` without a result (the run window
///        opens at the grant, and no grant is possible once a full window no longer fits before the deadline),
///        or when the arbiter upholds a dispute against it. Never for a client's or owner's delay.
///      - Client: cancels any job nobody was granted; a worker that holds the data past its run window is always
///        slashed (a failure report is refused then); results and failure claims can be disputed for a bond.
///      - Everyone: every state has a way out that does not depend on one silent party (timeouts, deadlines and
///        default dispute outcomes); every credit is backed by tokens the market holds (ERC-20 escrow is
///        checked on arrival; fee-on-transfer tokens are refused; rebasing tokens are not supported).
///      Gas: a job is one storage slot (terms hash, worker id, state, time); its fixed terms are in `JobPosted`
///      and passed back as calldata. Payments are pull-only; batches go through {multicall} (non-payable: a
///      batched call never reuses `msg.value`) or {postJobs}.
contract JobMarket is IJobMarket, Ownable, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    IWorkerRegistry public immutable workers;
    IDatasetRegistry public immutable datasets;
    /// @notice Collateral locked from a worker's stake per GPU the job needs (wei).
    uint256 public immutable collateralPerGpu;
    /// @notice Seconds the data owner has after assignment to grant before anyone may reopen the job; also how
    ///         long a worker whose assignment ended without a grant is barred from retaking the job.
    uint40 public immutable grantTimeout;
    /// @notice Seconds the arbiter has to decide a dispute before its default outcome applies.
    uint40 public immutable disputeWindow;
    /// @notice ETH a client pays to dispute; returned if the dispute is upheld, else paid to the worker's operator.
    uint256 public immutable disputeBond;

    /// @notice Decides disputes.
    address public arbiter;
    /// @inheritdoc IJobMarket
    /// @dev Packed beside `arbiter`.
    uint32 public arbiterKeyId;

    /// @dev One slot: a post reads the key count for free once it has read the job count.
    uint224 private _jobCount;
    uint32 private _keyCount;
    mapping(uint256 jobId => Job) private _jobs;
    /// @dev Stored as 1 + the credit once an account was first credited, so that paying a credit out leaves
    ///      the slot non-zero and the next credit costs a warm write instead of a fresh slot. {credits} reports
    ///      the real amount.
    mapping(address token => mapping(address account => uint256)) private _credits;

    uint8 private constant _KEY_X25519 = 0;
    uint8 private constant _KEY_HYBRID = 1;

    /// @param collateralPerGpu_ must be non-zero unless `allowZeroCollateral` says a zero is meant.
    constructor(
        address initialOwner,
        address arbiter_,
        IWorkerRegistry workers_,
        IDatasetRegistry datasets_,
        uint256 collateralPerGpu_,
        uint40 grantTimeout_,
        uint40 disputeWindow_,
        uint256 disputeBond_,
        bool allowZeroCollateral
    ) Ownable(initialOwner) EIP712("LlmosJobMarket", "1") {
        if (arbiter_ == address(0) || address(workers_) == address(0) || address(datasets_) == address(0)) {
            revert JobMarketZeroAddress();
        }
        if (workers_.market() != address(this)) revert JobMarketMiswired(workers_.market());
        if (collateralPerGpu_ == 0 && !allowZeroCollateral) revert JobMarketZeroCollateral();
        // The registry books locked collateral in gwei.
        if (collateralPerGpu_ % 1 gwei != 0) revert JobMarketCollateralNotGwei(collateralPerGpu_);
        arbiter = arbiter_;
        workers = workers_;
        datasets = datasets_;
        collateralPerGpu = collateralPerGpu_;
        grantTimeout = grantTimeout_;
        disputeWindow = disputeWindow_;
        disputeBond = disputeBond_;
        emit ArbiterChanged(arbiter_);
    }

    /// @notice Accepts slashed collateral from the worker registry only.
    receive() external payable {
        if (msg.sender != address(workers)) revert JobUnexpectedEther(msg.sender);
    }

    /// @notice Owner replaces the arbiter.
    function setArbiter(address arbiter_) external onlyOwner {
        if (arbiter_ == address(0)) revert JobMarketZeroAddress();
        arbiter = arbiter_;
        emit ArbiterChanged(arbiter_);
        // The old arbiter's key must not receive new grants or checkpoints.
        if (arbiterKeyId != 0) {
            arbiterKeyId = 0;
            emit ArbiterKeySet(arbiter_, 0);
        }
    }

    /// @inheritdoc IJobMarket
    function setArbiterKey(uint32 keyId) external {
        if (msg.sender != arbiter) revert JobNotArbiter(msg.sender);
        if (keyId > _keyCount) revert JobUnknownClientKey(keyId);
        arbiterKeyId = keyId;
        emit ArbiterKeySet(msg.sender, keyId);
    }

    // ----------------------------------------------------------------- client

    /// @inheritdoc IJobMarket
    function registerClientKey(uint8 keyKind, bytes calldata key) external returns (uint32 keyId) {
        uint256 expected = keyKind == _KEY_X25519 ? 32 : keyKind == _KEY_HYBRID ? 1216 : 0;
        if (expected == 0 || key.length != expected) revert JobInvalidClientKey(keyKind, key.length);
        keyId = ++_keyCount;
        emit ClientKeyRegistered(keyId, msg.sender, keyKind, key);
    }

    /// @inheritdoc IJobMarket
    function postJob(JobRequest calldata r) external payable nonReentrant returns (uint256 jobId) {
        uint256 eth;
        (jobId, eth,) = _post(r, 0, address(0));
        if (msg.value != eth) revert JobWrongPayment(eth, msg.value);
    }

    /// @inheritdoc IJobMarket
    function postJobs(JobRequest[] calldata rs) external payable nonReentrant returns (uint256 firstJobId) {
        uint256 eth;
        firstJobId = _jobCount + 1;
        uint256 lastDataset;
        address lastOwner;
        for (uint256 i; i < rs.length; ++i) {
            uint256 value;
            // A batch usually targets one dataset: its owner is read once.
            (, value, lastOwner) = _post(rs[i], lastDataset, lastOwner);
            lastDataset = rs[i].datasetId;
            eth += value;
        }
        if (msg.value != eth) revert JobWrongPayment(eth, msg.value);
    }

    /// @inheritdoc IJobMarket
    function cancel(uint256 jobId, JobTerms calldata t) external {
        Job storage job = _load(jobId, t);
        if (msg.sender != t.client) revert JobNotClient(jobId, msg.sender);
        JobState state = job.state;
        if (state != JobState.Open && state != JobState.Assigned) revert JobInvalidState(jobId, state);
        _enter(job, JobState.Cancelled);
        emit JobCancelled(jobId, t.amount);
        _credit(t.token, t.client, t.amount);
        if (state == JobState.Assigned) workers.unlockCollateral(job.workerId, _collateral(t));
    }

    /// @inheritdoc IJobMarket
    function accept(uint256 jobId, JobTerms calldata t) external {
        Job storage job = _load(jobId, t);
        if (msg.sender != t.client) revert JobNotClient(jobId, msg.sender);
        JobState state = job.state;
        if (state == JobState.Submitted) _settle(job, jobId, t, 0);
        else if (state == JobState.FailureClaimed) _fail(job, jobId, t, 0);
        else revert JobInvalidState(jobId, state);
    }

    /// @inheritdoc IJobMarket
    function dispute(uint256 jobId, JobTerms calldata t, bytes32 reasonHash) external payable {
        Job storage job = _load(jobId, t);
        if (msg.sender != t.client) revert JobNotClient(jobId, msg.sender);
        JobState state = job.state;
        if (state != JobState.Submitted && state != JobState.FailureClaimed) revert JobInvalidState(jobId, state);
        uint256 closesAt = uint256(job.since) + t.challengeWindow;
        if (block.timestamp > closesAt) revert JobChallengeWindowClosed(jobId, closesAt);
        if (msg.value != disputeBond) revert JobWrongPayment(disputeBond, msg.value);
        _enter(job, state == JobState.Submitted ? JobState.Disputed : JobState.FailureDisputed);
        emit JobDisputed(jobId, reasonHash, msg.value, block.timestamp + disputeWindow);
    }

    // ----------------------------------------------------------------- worker

    /// @inheritdoc IJobMarket
    function assign(uint256 jobId, JobTerms calldata t, uint32 workerId) external {
        uint256 collateral = _assign(jobId, t, workerId);
        // The registry checks that the caller operates an active worker that fits, then locks its collateral.
        workers.lockCollateral(workerId, msg.sender, t.gpuCount, t.gpuMemGiB, collateral, 1);
    }

    /// @inheritdoc IJobMarket
    function assignMany(uint256[] calldata jobIds, JobTerms[] calldata terms, uint32 workerId) external {
        uint256 n = jobIds.length;
        if (n == 0 || n != terms.length) revert JobInvalidRequest("batch");
        uint256 collateral;
        uint8 gpuCount;
        uint16 gpuMemGiB;
        for (uint256 i; i < n; ++i) {
            JobTerms calldata t = terms[i];
            collateral += _assign(jobIds[i], t, workerId);
            if (t.gpuCount > gpuCount) gpuCount = t.gpuCount;
            if (t.gpuMemGiB > gpuMemGiB) gpuMemGiB = t.gpuMemGiB;
        }
        workers.lockCollateral(workerId, msg.sender, gpuCount, gpuMemGiB, collateral, n);
    }

    /// @inheritdoc IJobMarket
    function dropAssignment(uint256 jobId, JobTerms calldata t) external {
        Job storage job = _load(jobId, t);
        if (job.state != JobState.Assigned) revert JobInvalidState(jobId, job.state);
        if (msg.sender != t.client && msg.sender != t.datasetOwner) {
            revert JobNotClientOrOwner(jobId, msg.sender);
        }
        _reopen(job, jobId, t, ReopenCause.Dropped);
    }

    /// @inheritdoc IJobMarket
    function timeoutGrant(uint256 jobId, JobTerms calldata t) external {
        Job storage job = _load(jobId, t);
        if (job.state != JobState.Assigned) revert JobInvalidState(jobId, job.state);
        uint256 timeoutAt = uint256(job.since) + grantTimeout;
        if (block.timestamp <= timeoutAt) revert JobGrantTimeoutNotReached(jobId, timeoutAt);
        _reopen(job, jobId, t, ReopenCause.GrantTimeout);
    }

    /// @inheritdoc IJobMarket
    function grantAccess(uint256 jobId, JobTerms calldata t, bytes calldata wrappedKey) external {
        Job storage job = _load(jobId, t);
        if (job.state != JobState.Assigned) revert JobInvalidState(jobId, job.state);
        if (msg.sender != t.datasetOwner) revert JobNotDatasetOwner(jobId, msg.sender);
        if (wrappedKey.length == 0) revert JobInvalidRequest("wrappedKey");
        uint256 dueAt = block.timestamp + t.runTime;
        if (dueAt > t.deadline) revert JobTooLateToStart(jobId, uint256(t.deadline) - t.runTime);
        _enter(job, JobState.Running);
        emit AccessGranted(jobId, uint40(dueAt), wrappedKey);
    }

    /// @inheritdoc IJobMarket
    function submitResult(uint256 jobId, JobTerms calldata t, Attestation calldata a, bytes calldata signature)
        external
    {
        Job storage job = _load(jobId, t);
        if (job.state != JobState.Running) revert JobInvalidState(jobId, job.state);
        uint256 dueAt = uint256(job.since) + t.runTime;
        if (block.timestamp > dueAt) revert JobRunTimeOver(jobId, dueAt);
        if (a.jobId != jobId) revert JobAttestationMismatch(jobId, "jobId");
        (address worker, address signer) = workers.signerOf(job.workerId);
        if (a.worker != worker) revert JobAttestationMismatch(jobId, "worker");
        if (a.startTime > a.endTime || a.endTime > block.timestamp) revert JobAttestationMismatch(jobId, "time");
        bytes32 digest = _hashTypedDataV4(AttestationLib.hash(a));
        if (!_validSignature(signer, digest, signature)) revert JobInvalidAttestationSignature(jobId, signer);
        _enter(job, JobState.Submitted);
        emit ResultSubmitted(
            jobId, worker, digest, signer, a.outputHash, a.metricsHash, a.trajectoryRoot, a.startTime, a.endTime
        );
    }

    /// @inheritdoc IJobMarket
    function reportFailure(uint256 jobId, JobTerms calldata t, uint8 reason, bytes32 detailsHash) external {
        Job storage job = _load(jobId, t);
        JobState state = job.state;
        if (state != JobState.Assigned && state != JobState.Running) revert JobInvalidState(jobId, state);
        uint32 workerId = job.workerId;
        (address operator, address signer) = workers.authorities(workerId);
        if (msg.sender != operator && msg.sender != signer) revert JobNotWorkerAuthority(jobId, msg.sender);
        if (state == JobState.Running) {
            uint256 dueAt = uint256(job.since) + t.runTime;
            if (block.timestamp > dueAt) revert JobRunTimeOver(jobId, dueAt);
            _enter(job, JobState.FailureClaimed);
            emit FailureReported(jobId, workerId, reason, detailsHash);
        } else {
            // Before the grant the worker has seen nothing: the job goes back to the market.
            emit FailureReported(jobId, workerId, reason, detailsHash);
            _reopen(job, jobId, t, ReopenCause.Released);
        }
    }

    // ----------------------------------------------------------------- anyone / arbiter

    /// @inheritdoc IJobMarket
    function finalize(uint256 jobId, JobTerms calldata t) external {
        Job storage job = _load(jobId, t);
        JobState state = job.state;
        if (state == JobState.Submitted || state == JobState.FailureClaimed) {
            uint256 closesAt = uint256(job.since) + t.challengeWindow;
            if (block.timestamp <= closesAt) revert JobChallengeWindowOpen(jobId, closesAt);
            if (state == JobState.Submitted) _settle(job, jobId, t, 0);
            else _fail(job, jobId, t, 0);
        } else if (state == JobState.Disputed || state == JobState.FailureDisputed) {
            uint256 resolveBy = uint256(job.since) + disputeWindow;
            if (block.timestamp <= resolveBy) revert JobDisputeDeadlineNotPassed(jobId, resolveBy);
            emit DisputeResolved(jobId, true, true);
            if (state == JobState.Disputed) _settle(job, jobId, t, disputeBond);
            else _fail(job, jobId, t, disputeBond);
        } else {
            revert JobInvalidState(jobId, state);
        }
    }

    /// @inheritdoc IJobMarket
    function grantVerifier(uint256 jobId, JobTerms calldata t, bytes calldata wrappedKey) external {
        Job storage job = _load(jobId, t);
        if (job.state != JobState.Disputed) revert JobInvalidState(jobId, job.state);
        if (msg.sender != t.datasetOwner) revert JobNotDatasetOwner(jobId, msg.sender);
        if (wrappedKey.length == 0) revert JobInvalidRequest("wrappedKey");
        uint32 keyId = arbiterKeyId;
        if (keyId == 0) revert JobNoArbiterKey();
        emit VerifierGranted(jobId, arbiter, keyId, wrappedKey);
    }

    /// @inheritdoc IJobMarket
    function resolveDispute(uint256 jobId, JobTerms calldata t, bool workerWins) external {
        _resolve(jobId, t, workerWins);
    }

    /// @inheritdoc IJobMarket
    function resolveDisputeWithEvidence(uint256 jobId, JobTerms calldata t, bool workerWins, ReplayEvidence calldata e)
        external
    {
        // Reverts with the same checks as {resolveDispute} (which undoes this event) when the caller may not decide.
        emit DisputeEvidence(jobId, e.interval, e.expected, e.replayed, e.reportHash);
        _resolve(jobId, t, workerWins);
    }

    /// @inheritdoc IJobMarket
    function reclaim(uint256 jobId, JobTerms calldata t) external {
        Job storage job = _load(jobId, t);
        JobState state = job.state;
        bool slash;
        if (state == JobState.Running) {
            uint256 dueAt = uint256(job.since) + t.runTime;
            if (block.timestamp <= dueAt) revert JobNotExpirable(jobId, dueAt);
            slash = true;
        } else if (state == JobState.Assigned) {
            uint256 latestStart = uint256(t.deadline) - t.runTime;
            if (block.timestamp <= latestStart) revert JobNotExpirable(jobId, latestStart);
        } else {
            revert JobInvalidState(jobId, state);
        }
        _enter(job, JobState.Expired);
        emit JobExpired(jobId, slash);
        _refund(job, jobId, t, slash);
    }

    /// @inheritdoc IJobMarket
    function withdraw(address token) external nonReentrant {
        uint256 stored = _credits[token][msg.sender];
        if (stored <= 1) revert JobNothingToWithdraw(token, msg.sender);
        uint256 amount = stored - 1;
        _credits[token][msg.sender] = 1;
        emit Withdrawn(token, msg.sender, amount);
        if (token == address(0)) {
            (bool ok,) = msg.sender.call{value: amount}("");
            if (!ok) revert JobTransferFailed(msg.sender, amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }

    /// @inheritdoc IJobMarket
    function multicall(bytes[] calldata data) external returns (bytes[] memory results) {
        results = new bytes[](data.length);
        for (uint256 i; i < data.length; ++i) {
            // Self-delegatecall keeps msg.sender; this function is non-payable, so msg.value is 0 in every call.
            (bool ok, bytes memory ret) = address(this).delegatecall(data[i]);
            if (!ok) {
                assembly ("memory-safe") {
                    revert(add(ret, 0x20), mload(ret))
                }
            }
            results[i] = ret;
        }
    }

    // ----------------------------------------------------------------- views

    /// @inheritdoc IJobMarket
    function attestationDigest(Attestation calldata a) external view returns (bytes32) {
        return _hashTypedDataV4(AttestationLib.hash(a));
    }

    /// @inheritdoc IJobMarket
    function hashTerms(JobTerms calldata t) external pure returns (bytes22) {
        return _hashTerms(t);
    }

    /// @inheritdoc IJobMarket
    function getJob(uint256 jobId) external view returns (JobView memory) {
        Job storage job = _jobs[jobId];
        if (job.state == JobState.None) revert JobNotFound(jobId);
        uint32 workerId = job.workerId;
        return JobView({
            state: job.state,
            since: job.since,
            workerId: workerId,
            worker: workerId == 0 ? address(0) : workers.workerAt(workerId),
            termsHash: job.termsHash
        });
    }

    /// @inheritdoc IJobMarket
    function canRead(uint256 jobId, address worker) external view returns (bool) {
        Job storage job = _jobs[jobId];
        return job.state == JobState.Running && worker != address(0) && workers.workerAt(job.workerId) == worker;
    }

    /// @inheritdoc IJobMarket
    function clientKeyCount() external view returns (uint32) {
        return _keyCount;
    }

    /// @inheritdoc IJobMarket
    function credits(address token, address account) external view returns (uint256) {
        uint256 stored = _credits[token][account];
        return stored == 0 ? 0 : stored - 1;
    }

    /// @inheritdoc IJobMarket
    function jobCount() external view returns (uint256) {
        return _jobCount;
    }

    /// @notice The EIP-712 domain separator attestations are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ----------------------------------------------------------------- internals

    /// @param knownDataset a dataset id whose owner the caller already read (`knownOwner`), or 0.
    function _post(JobRequest calldata r, uint256 knownDataset, address knownOwner)
        private
        returns (uint256 jobId, uint256 eth, address datasetOwner)
    {
        if (r.amount == 0) revert JobInvalidRequest("amount");
        if (r.gpuCount == 0) revert JobInvalidRequest("gpuCount");
        if (r.runTime == 0) revert JobInvalidRequest("runTime");
        // A first fair run window must still fit: otherwise nothing could ever start.
        if (uint256(r.deadline) < block.timestamp + r.runTime) revert JobInvalidRequest("deadline");
        // The owner is fixed forever (datasets are not transferable), so it joins the terms: granting and
        // dropping then need no registry call.
        if (r.datasetId == knownDataset && knownDataset != 0) datasetOwner = knownOwner;
        else if (r.datasetId <= type(uint64).max) datasetOwner = datasets.ownerOf(r.datasetId);
        if (datasetOwner == address(0)) revert JobUnknownDataset(r.datasetId);
        if (r.clientKeyId == 0 || r.clientKeyId > _keyCount) revert JobUnknownClientKey(r.clientKeyId);
        JobTerms memory t = JobTerms({
            client: msg.sender,
            datasetOwner: datasetOwner,
            token: r.token,
            amount: r.amount,
            datasetId: uint64(r.datasetId),
            clientKeyId: r.clientKeyId,
            gpuCount: r.gpuCount,
            gpuMemGiB: r.gpuMemGiB,
            deadline: r.deadline,
            runTime: r.runTime,
            challengeWindow: r.challengeWindow
        });
        jobId = ++_jobCount;
        _jobs[jobId] = Job({
            termsHash: bytes22(keccak256(abi.encode(t))),
            workerId: 0,
            since: uint40(block.timestamp),
            state: JobState.Open
        });
        emit JobPosted(jobId, msg.sender, r.datasetId, t, r.baseModelHash, r.recipeHash, r.recipeURI);
        if (r.token == address(0)) {
            eth = r.amount;
        } else {
            // Book only what arrived in full: a token that takes a fee (or lies about transfers) is refused, so
            // every credit the market ever owes in it is backed.
            IERC20 token = IERC20(r.token);
            uint256 before = token.balanceOf(address(this));
            token.safeTransferFrom(msg.sender, address(this), r.amount);
            uint256 received = token.balanceOf(address(this)) - before;
            if (received != r.amount) revert JobTokenShortfall(r.token, r.amount, received);
        }
    }

    /// @dev Moves one job to Assigned; the caller locks the returned collateral (the registry reverts unless the
    ///      caller operates the worker, so the operator named in the event is the caller).
    function _assign(uint256 jobId, JobTerms calldata t, uint32 workerId) private returns (uint256 collateral) {
        Job storage job = _load(jobId, t);
        if (job.state != JobState.Open) revert JobInvalidState(jobId, job.state);
        if (job.workerId == workerId) {
            uint256 until = uint256(job.since) + grantTimeout;
            if (block.timestamp < until) revert JobRetakeTooSoon(jobId, until);
        }
        uint256 latestStart = uint256(t.deadline) - t.runTime;
        if (block.timestamp > latestStart) revert JobTooLateToStart(jobId, latestStart);
        collateral = _collateral(t);
        job.workerId = workerId;
        _enter(job, JobState.Assigned);
        emit JobAssigned(jobId, workerId, msg.sender);
    }

    /// @dev The arbiter's decision, by the dispute deadline (inclusive).
    function _resolve(uint256 jobId, JobTerms calldata t, bool workerWins) private {
        if (msg.sender != arbiter) revert JobNotArbiter(msg.sender);
        Job storage job = _load(jobId, t);
        JobState state = job.state;
        if (state != JobState.Disputed && state != JobState.FailureDisputed) revert JobInvalidState(jobId, state);
        uint256 resolveBy = uint256(job.since) + disputeWindow;
        if (block.timestamp > resolveBy) revert JobDisputeDeadlinePassed(jobId, resolveBy);
        emit DisputeResolved(jobId, workerWins, false);
        if (workerWins) {
            if (state == JobState.Disputed) _settle(job, jobId, t, disputeBond);
            else _fail(job, jobId, t, disputeBond);
        } else {
            _enter(job, JobState.Refunded);
            _credit(address(0), t.client, disputeBond);
            _refund(job, jobId, t, true);
        }
    }

    /// @dev The job record of `jobId`, checked against the terms the caller passed back.
    function _load(uint256 jobId, JobTerms calldata t) private view returns (Job storage job) {
        job = _jobs[jobId];
        if (job.state == JobState.None) revert JobNotFound(jobId);
        if (job.termsHash != _hashTerms(t)) revert JobTermsMismatch(jobId);
    }

    /// @dev Hashes the terms as they sit in calldata (a static struct is laid out exactly as `abi.encode` lays it
    ///      out), skipping a field-by-field copy. Dirty padding only changes the hash, so such a call reverts
    ///      with {JobTermsMismatch}; the fields the function then reads are validated by the ABI decoder.
    function _hashTerms(JobTerms calldata t) private pure returns (bytes22 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, t, 0x160)
            h := keccak256(ptr, 0x160)
        }
    }

    function _enter(Job storage job, JobState state) private {
        job.state = state;
        job.since = uint40(block.timestamp);
    }

    function _collateral(JobTerms calldata t) private view returns (uint256) {
        return collateralPerGpu * t.gpuCount;
    }

    /// @dev Back to Open; the worker keeps its id in the record so that {assign} can bar it for a grant timeout.
    function _reopen(Job storage job, uint256 jobId, JobTerms calldata t, ReopenCause cause) private {
        uint32 workerId = job.workerId;
        _enter(job, JobState.Open);
        emit JobReopened(jobId, workerId, cause);
        workers.unlockCollateral(workerId, _collateral(t));
    }

    /// @dev Pays the worker's operator the escrow (and `bond`, in ETH) and releases its collateral.
    function _settle(Job storage job, uint256 jobId, JobTerms calldata t, uint256 bond) private {
        _enter(job, JobState.Settled);
        address operator = workers.unlockCollateral(job.workerId, _collateral(t));
        emit JobSettled(jobId, operator, t.amount);
        _credit(t.token, operator, t.amount);
        if (bond != 0) _credit(address(0), operator, bond);
    }

    /// @dev A failure claim stands: the client is refunded, the worker released; `bond` (ETH) goes to the operator.
    function _fail(Job storage job, uint256 jobId, JobTerms calldata t, uint256 bond) private {
        _enter(job, JobState.Failed);
        emit JobFailed(jobId);
        address operator = _refund(job, jobId, t, false);
        if (bond != 0) _credit(address(0), operator, bond);
    }

    /// @dev Credits the escrow back to the client; with `slashWorker`, also the worker's collateral (in ETH).
    function _refund(Job storage job, uint256 jobId, JobTerms calldata t, bool slashWorker)
        private
        returns (address operator)
    {
        uint256 collateral = _collateral(t);
        emit JobRefunded(jobId, t.client, t.amount, slashWorker ? collateral : 0);
        _credit(t.token, t.client, t.amount);
        if (slashWorker) {
            if (collateral != 0) _credit(address(0), t.client, collateral);
            workers.slash(job.workerId, jobId, collateral);
        } else {
            operator = workers.unlockCollateral(job.workerId, collateral);
        }
    }

    /// @dev No event of its own: every credit is reported by the job event that caused it.
    function _credit(address token, address account, uint256 amount) private {
        uint256 stored = _credits[token][account];
        _credits[token][account] = (stored == 0 ? 1 : stored) + amount;
    }

    /// @dev ECDSA first (no code-size lookup of the signer for the common EOA case), then EIP-1271.
    function _validSignature(address signer, bytes32 digest, bytes calldata signature) private view returns (bool) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == signer) return true;
        return SignatureChecker.isValidERC1271SignatureNowCalldata(signer, digest, signature);
    }
}
