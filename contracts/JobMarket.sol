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
import {IDatasetRegistry, IGrantListener} from "./interfaces/IDatasetRegistry.sol";
import {Attestation, AttestationLib} from "./libraries/AttestationLib.sol";

/// @title JobMarket
/// @notice Escrows fine-tuning jobs in ETH or an ERC-20 and settles them on a worker's EIP-712 attestation.
/// @dev Payments are pull-only: every payout is a credit, paid by {withdraw}. Standard ERC-20 tokens only
///      (no fee-on-transfer or rebasing tokens: escrow is booked at the requested amount).
contract JobMarket is IJobMarket, IGrantListener, Ownable, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    IWorkerRegistry public immutable workers;
    IDatasetRegistry public immutable datasets;
    /// @notice Collateral locked from a worker's stake per GPU the job needs (wei).
    uint256 public immutable collateralPerGpu;
    /// @notice Seconds the data owner has, after assignment, to grant access before anyone may reopen the job.
    uint40 public immutable grantTimeout;

    /// @notice Settles disputes.
    address public arbiter;

    uint256 private _jobCount;
    mapping(uint256 jobId => Job) private _jobs;
    /// @dev Stored as 1 + the credit once an account was first credited, so that paying a credit out leaves
    ///      the slot non-zero and the next credit costs a warm write instead of a fresh slot (~17k gas less
    ///      per payout for an operator that withdraws after every job). {credits} reports the real amount.
    mapping(address token => mapping(address account => uint256)) private _credits;
    uint16 private _tokenCount;
    mapping(address token => uint16) private _tokenIds;
    mapping(uint16 tokenId => address) private _tokens;

    constructor(
        address initialOwner,
        address arbiter_,
        IWorkerRegistry workers_,
        IDatasetRegistry datasets_,
        uint256 collateralPerGpu_,
        uint40 grantTimeout_
    ) Ownable(initialOwner) EIP712("LlmosJobMarket", "1") {
        if (arbiter_ == address(0) || address(workers_) == address(0) || address(datasets_) == address(0)) {
            revert JobMarketZeroAddress();
        }
        arbiter = arbiter_;
        workers = workers_;
        datasets = datasets_;
        collateralPerGpu = collateralPerGpu_;
        grantTimeout = grantTimeout_;
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
    }

    // ----------------------------------------------------------------- client

    /// @inheritdoc IJobMarket
    function postJob(JobRequest calldata r) external payable nonReentrant returns (uint256 jobId) {
        if (r.amount == 0) revert JobInvalidRequest("amount");
        if (r.gpuCount == 0) revert JobInvalidRequest("gpuCount");
        if (r.deadline <= block.timestamp) revert JobInvalidRequest("deadline");
        if (r.clientKey.length == 0) revert JobInvalidRequest("clientKey");
        // The dataset's existence is checked by the SDK, not here: a job on an unknown dataset can never be
        // granted, and its client can cancel it. That saves a cross-contract call on every post.
        if (r.datasetId == 0 || r.datasetId > type(uint56).max) revert JobInvalidRequest("datasetId");
        uint16 tokenId_;
        if (r.token == address(0)) {
            if (msg.value != r.amount) revert JobWrongPayment(r.amount, msg.value);
        } else {
            if (msg.value != 0) revert JobWrongPayment(0, msg.value);
            tokenId_ = _internToken(r.token);
        }

        jobId = ++_jobCount;
        _jobs[jobId] = Job({
            client: msg.sender,
            state: JobState.Open,
            gpuCount: r.gpuCount,
            stateSince: uint40(block.timestamp),
            deadline: r.deadline,
            workerId: 0,
            datasetId: uint56(r.datasetId),
            challengeWindow: r.challengeWindow,
            gpuMemGiB: r.gpuMemGiB,
            tokenId: tokenId_,
            escrow: r.amount
        });
        emit JobPosted(
            jobId,
            msg.sender,
            r.datasetId,
            r.token,
            r.amount,
            r.baseModelHash,
            r.recipeHash,
            r.recipeURI,
            r.gpuCount,
            r.gpuMemGiB,
            r.deadline,
            r.challengeWindow,
            r.clientKey
        );
        if (r.token != address(0)) IERC20(r.token).safeTransferFrom(msg.sender, address(this), r.amount);
    }

    /// @inheritdoc IJobMarket
    function cancel(uint256 jobId) external {
        Job storage job = _job(jobId);
        _onlyClient(job, jobId);
        _expectState(job, jobId, JobState.Open);
        job.state = JobState.Cancelled;
        job.stateSince = uint40(block.timestamp);
        emit JobCancelled(jobId, job.escrow);
        _credit(_token(job.tokenId), job.client, job.escrow);
    }

    /// @inheritdoc IJobMarket
    function accept(uint256 jobId) external nonReentrant {
        Job storage job = _job(jobId);
        _onlyClient(job, jobId);
        _expectState(job, jobId, JobState.Submitted);
        _settle(job, jobId);
    }

    /// @inheritdoc IJobMarket
    function dispute(uint256 jobId, bytes32 reasonHash) external {
        Job storage job = _job(jobId);
        _onlyClient(job, jobId);
        _expectState(job, jobId, JobState.Submitted);
        uint256 closesAt = uint256(job.stateSince) + job.challengeWindow;
        if (block.timestamp > closesAt) revert JobChallengeWindowClosed(jobId, closesAt);
        job.state = JobState.Disputed;
        job.stateSince = uint40(block.timestamp);
        emit JobDisputed(jobId, reasonHash);
    }

    // ----------------------------------------------------------------- worker

    /// @inheritdoc IJobMarket
    function assign(uint256 jobId, address worker) external nonReentrant {
        Job storage job = _job(jobId);
        _expectState(job, jobId, JobState.Open);
        if (block.timestamp >= job.deadline) revert JobDeadlinePassed(jobId, job.deadline);
        uint256 collateral = _collateral(job);
        // The registry checks that the caller operates an active worker that fits, then locks its collateral.
        (address operator, uint32 workerId) =
            workers.lockCollateral(worker, msg.sender, job.gpuCount, job.gpuMemGiB, collateral);
        job.workerId = workerId;
        job.state = JobState.Assigned;
        job.stateSince = uint40(block.timestamp);
        emit JobAssigned(jobId, worker, operator, collateral);
    }

    /// @inheritdoc IGrantListener
    function onAccessGranted(uint256 datasetId, uint256 jobId, address worker)
        external
        override(IGrantListener, IJobMarket)
    {
        if (msg.sender != address(datasets)) revert JobNotDatasetRegistry(msg.sender);
        Job storage job = _jobs[jobId];
        // A grant for anything but this job's dataset and assigned worker starts nothing.
        if (job.state != JobState.Assigned || job.datasetId != datasetId) return;
        if (workers.workerAt(job.workerId) != worker) return;
        _start(job, jobId, worker);
    }

    /// @inheritdoc IJobMarket
    function startJob(uint256 jobId) external {
        Job storage job = _job(jobId);
        _expectState(job, jobId, JobState.Assigned);
        address worker = workers.workerAt(job.workerId);
        if (!datasets.canRead(job.datasetId, jobId, worker)) revert JobGrantMissing(jobId);
        _start(job, jobId, worker);
    }

    /// @inheritdoc IJobMarket
    function timeoutGrant(uint256 jobId) external nonReentrant {
        Job storage job = _job(jobId);
        _expectState(job, jobId, JobState.Assigned);
        uint256 timeoutAt = uint256(job.stateSince) + grantTimeout;
        if (block.timestamp <= timeoutAt) revert JobGrantTimeoutNotReached(jobId, timeoutAt);
        uint32 workerId = job.workerId;
        job.workerId = 0;
        job.state = JobState.Open;
        job.stateSince = uint40(block.timestamp);
        (address worker,) = workers.unlockCollateral(workerId, _collateral(job));
        emit JobReopened(jobId, worker);
    }

    /// @inheritdoc IJobMarket
    function submitResult(uint256 jobId, Attestation calldata a, bytes calldata signature) external nonReentrant {
        Job storage job = _job(jobId);
        _expectState(job, jobId, JobState.Running);
        if (block.timestamp > job.deadline) revert JobDeadlinePassed(jobId, job.deadline);
        if (a.jobId != jobId) revert JobAttestationMismatch(jobId, "jobId");
        (address worker, address signer) = workers.signerOf(job.workerId);
        if (a.worker != worker) revert JobAttestationMismatch(jobId, "worker");
        if (a.startTime > a.endTime || a.endTime > block.timestamp) revert JobAttestationMismatch(jobId, "time");
        bytes32 digest = _hashTypedDataV4(AttestationLib.hash(a));
        if (!_validSignature(signer, digest, signature)) revert JobInvalidAttestationSignature(jobId, signer);
        job.state = JobState.Submitted;
        job.stateSince = uint40(block.timestamp);
        emit ResultSubmitted(
            jobId, worker, digest, a.outputHash, a.metricsHash, a.trajectoryRoot, a.startTime, a.endTime
        );
    }

    /// @inheritdoc IJobMarket
    function reportFailure(uint256 jobId, uint8 reason, bytes32 detailsHash) external nonReentrant {
        Job storage job = _job(jobId);
        JobState state = job.state;
        if (state != JobState.Assigned && state != JobState.Running) revert JobInvalidState(jobId, state);
        address worker = workers.workerAt(job.workerId);
        (address operator, address signer) = workers.authorities(worker);
        if (msg.sender != operator && msg.sender != signer) revert JobNotWorkerAuthority(jobId, msg.sender);
        job.state = JobState.Failed;
        job.stateSince = uint40(block.timestamp);
        emit FailureReported(jobId, worker, reason, detailsHash);
        _refund(job, jobId, false);
    }

    // ----------------------------------------------------------------- anyone / arbiter

    /// @inheritdoc IJobMarket
    function finalize(uint256 jobId) external nonReentrant {
        Job storage job = _job(jobId);
        _expectState(job, jobId, JobState.Submitted);
        uint256 closesAt = uint256(job.stateSince) + job.challengeWindow;
        if (block.timestamp <= closesAt) revert JobChallengeWindowOpen(jobId, closesAt);
        _settle(job, jobId);
    }

    /// @inheritdoc IJobMarket
    function resolveDispute(uint256 jobId, bool workerWins) external nonReentrant {
        if (msg.sender != arbiter) revert JobNotArbiter(msg.sender);
        Job storage job = _job(jobId);
        _expectState(job, jobId, JobState.Disputed);
        emit DisputeResolved(jobId, workerWins);
        if (workerWins) {
            _settle(job, jobId);
        } else {
            job.state = JobState.Refunded;
            job.stateSince = uint40(block.timestamp);
            _refund(job, jobId, true);
        }
    }

    /// @inheritdoc IJobMarket
    function reclaim(uint256 jobId) external nonReentrant {
        Job storage job = _job(jobId);
        JobState state = job.state;
        if (state != JobState.Assigned && state != JobState.Running) revert JobInvalidState(jobId, state);
        if (block.timestamp <= job.deadline) revert JobDeadlineNotPassed(jobId, job.deadline);
        job.state = JobState.Expired;
        job.stateSince = uint40(block.timestamp);
        emit JobExpired(jobId);
        // Only a worker that held a grant (Running) is at fault for missing the deadline.
        _refund(job, jobId, state == JobState.Running);
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

    // ----------------------------------------------------------------- views

    /// @inheritdoc IJobMarket
    function attestationDigest(Attestation calldata a) external view returns (bytes32) {
        return _hashTypedDataV4(AttestationLib.hash(a));
    }

    /// @inheritdoc IJobMarket
    function getJob(uint256 jobId) external view returns (JobView memory) {
        Job storage job = _job(jobId);
        return JobView({
            client: job.client,
            state: job.state,
            gpuCount: job.gpuCount,
            stateSince: job.stateSince,
            deadline: job.deadline,
            worker: job.workerId == 0 ? address(0) : workers.workerAt(job.workerId),
            datasetId: job.datasetId,
            challengeWindow: job.challengeWindow,
            gpuMemGiB: job.gpuMemGiB,
            token: _token(job.tokenId),
            escrow: job.escrow
        });
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

    /// @inheritdoc IJobMarket
    function tokenId(address token) external view returns (uint16) {
        return _tokenIds[token];
    }

    /// @notice The EIP-712 domain separator attestations are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ----------------------------------------------------------------- internals

    function _job(uint256 jobId) private view returns (Job storage job) {
        job = _jobs[jobId];
        if (job.state == JobState.None) revert JobNotFound(jobId);
    }

    function _expectState(Job storage job, uint256 jobId, JobState expected) private view {
        JobState state = job.state;
        if (state != expected) revert JobInvalidState(jobId, state);
    }

    function _onlyClient(Job storage job, uint256 jobId) private view {
        if (msg.sender != job.client) revert JobNotClient(jobId, msg.sender);
    }

    function _collateral(Job storage job) private view returns (uint256) {
        return collateralPerGpu * job.gpuCount;
    }

    function _internToken(address token) private returns (uint16 id) {
        id = _tokenIds[token];
        if (id == 0) {
            if (_tokenCount == type(uint16).max) revert JobTooManyTokens();
            id = ++_tokenCount;
            _tokenIds[token] = id;
            _tokens[id] = token;
            emit TokenRegistered(token, id);
        }
    }

    /// @dev ETH (id 0) needs no storage read.
    function _token(uint16 id) private view returns (address) {
        return id == 0 ? address(0) : _tokens[id];
    }

    function _start(Job storage job, uint256 jobId, address worker) private {
        job.state = JobState.Running;
        job.stateSince = uint40(block.timestamp);
        emit JobStarted(jobId, worker);
    }

    /// @dev Pays the worker's operator and releases its collateral.
    function _settle(Job storage job, uint256 jobId) private {
        job.state = JobState.Settled;
        job.stateSince = uint40(block.timestamp);
        (, address operator) = workers.unlockCollateral(job.workerId, _collateral(job));
        uint256 amount = job.escrow;
        emit JobSettled(jobId, operator, amount);
        _credit(_token(job.tokenId), operator, amount);
    }

    /// @dev Credits the escrow back to the client; with `slashWorker`, also the worker's collateral (in ETH).
    function _refund(Job storage job, uint256 jobId, bool slashWorker) private {
        address client = job.client;
        uint256 escrow = job.escrow;
        uint256 collateral = _collateral(job);
        uint256 slashed = slashWorker ? collateral : 0;
        emit JobRefunded(jobId, client, escrow, slashed);
        _credit(_token(job.tokenId), client, escrow);
        if (slashWorker) {
            if (collateral != 0) {
                _credit(address(0), client, collateral);
                workers.slash(job.workerId, jobId, collateral);
            }
        } else {
            workers.unlockCollateral(job.workerId, collateral);
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
