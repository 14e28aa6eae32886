// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "../utils/Vm.sol";
import {JobMarket} from "../../../contracts/JobMarket.sol";
import {WorkerRegistry} from "../../../contracts/WorkerRegistry.sol";
import {DatasetRegistry} from "../../../contracts/DatasetRegistry.sol";
import {TestToken} from "../../../contracts/test/TestToken.sol";
import {TestSmartWallet} from "../../../contracts/test/TestSmartWallet.sol";
import {IJobMarket} from "../../../contracts/interfaces/IJobMarket.sol";
import {IWorkerRegistry} from "../../../contracts/interfaces/IWorkerRegistry.sol";
import {Attestation} from "../../../contracts/libraries/AttestationLib.sol";

/// @notice Drives random actors through every market entry point (and the registry's worker lifecycle) while
///         keeping a model of what the rules say must happen. A call the model allows is made plainly: if the
///         contract reverts, the run fails (`fail_on_revert`). A call the model forbids is made in a `try`: if the
///         contract lets it through, `unexpected` counts it and an invariant fails. After every allowed call the
///         model is updated; the invariants compare it (and the ghost sums) with the contracts.
contract MarketHandler is TestBase {
    uint256 public constant COLLATERAL = 0.01 ether;
    uint40 public constant GRANT_TIMEOUT = 1 hours;
    uint40 public constant DISPUTE_WINDOW = 2 hours;
    uint256 public constant BOND = 0.02 ether;
    uint40 public constant UNBONDING = 1 hours;

    JobMarket public market;
    WorkerRegistry public workers;
    DatasetRegistry public datasets;
    TestToken public token;

    address public arbiter;
    address public stranger;
    address[3] public clients;
    address[2] public operators;
    uint256[2] internal _datasetIds; // [0] owned by dataOwner, [1] owned by clients[0] (client = owner)
    address public dataOwner;
    uint32 internal _keyId;

    // ---------------------------------------------------------------- worker slots (one live registration each)

    struct Slot {
        uint32 id;
        address operator;
        address account;
        uint256 pk; // the key that signs: the EOA signer's, or the wallet owner's
        address signer; // the registered signer: the EOA, or the TestSmartWallet
        uint256 stalePk; // a key rotated out (0: none)
        bool wallet;
        uint8 gpus;
        uint16 mem;
    }

    Slot[3] internal _slots;
    uint256 internal _pkNonce;

    struct WorkerModel {
        uint256 stake;
        uint256 locked;
        uint256 active;
        IWorkerRegistry.WorkerStatus status;
        uint256 unbondingEnd;
        address operator;
    }

    uint32[] internal _ids; // every id ever handed out
    mapping(uint32 => WorkerModel) internal _wm;

    // ---------------------------------------------------------------- jobs

    struct JobModel {
        IJobMarket.JobState state;
        uint40 since;
        uint32 workerId;
    }

    uint256 public jobCount;
    uint256 internal _forced; // set by _step: the next _pick returns this job
    mapping(uint256 => IJobMarket.JobTerms) internal _terms;
    mapping(uint256 => JobModel) internal _jm;
    mapping(uint256 => mapping(uint32 => bool)) public everGranted;

    // ---------------------------------------------------------------- ghosts

    mapping(address => mapping(address => uint256)) public modelCredit; // token => account => credit
    uint256 public ethIn;
    uint256 public ethOut;
    uint256 public tokenIn;
    uint256 public tokenOut;
    uint256 public unexpected; // calls the rules forbid that went through
    string public lastUnexpected;
    uint256 public slashesWithoutGrant;
    mapping(string => uint256) public calls;
    mapping(string => uint256) public succeeded; // allowed calls made (and so successful)
    string[] internal _actionNames;

    constructor() {
        arbiter = makeAddr("arbiter");
        stranger = makeAddr("stranger");
        dataOwner = makeAddr("dataOwner");
        clients = [makeAddr("client0"), makeAddr("client1"), makeAddr("client2")];
        operators = [makeAddr("operator0"), makeAddr("operator1")];

        datasets = new DatasetRegistry();
        address predicted = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 1);
        workers = new WorkerRegistry(predicted, UNBONDING);
        market = new JobMarket(
            makeAddr("admin"), arbiter, workers, datasets, COLLATERAL, GRANT_TIMEOUT, DISPUTE_WINDOW, BOND, false
        );
        require(address(market) == predicted, "market not where predicted");
        token = new TestToken();

        vm.prank(dataOwner);
        _datasetIds[0] = datasets.registerDataset(keccak256("root"), keccak256("cipher"), 1, "file:///0");
        vm.prank(clients[0]);
        _datasetIds[1] = datasets.registerDataset(keccak256("root"), keccak256("cipher"), 1, "file:///1");
        vm.prank(clients[0]);
        _keyId = market.registerClientKey(0, abi.encodePacked(keccak256("key")));
        for (uint256 i; i < 3; ++i) {
            token.mint(clients[i], type(uint128).max);
            vm.prank(clients[i]);
            token.approve(address(market), type(uint256).max);
        }

        // Slot 0 and 1: one operator, EOA signers, 4 GPUs; slot 0 is short of stake. Slot 2: another operator,
        // a contract (EIP-1271) signer, a small card (2 GPUs, 40 GiB) that many jobs do not fit.
        _slots[0] = Slot(0, operators[0], makeAddr("worker0"), 0, address(0), 0, false, 4, 80);
        _slots[1] = Slot(0, operators[0], makeAddr("worker1"), 0, address(0), 0, false, 4, 80);
        _slots[2] = Slot(0, operators[1], makeAddr("worker2"), 0, address(0), 0, true, 2, 40);
        _register(0, 0.05 ether);
        _register(1, 1 ether);
        _register(2, 0.3 ether);
    }

    // ================================================================ views for the invariants

    function terms(uint256 jobId) external view returns (IJobMarket.JobTerms memory) {
        return _terms[jobId];
    }

    function jobModel(uint256 jobId) external view returns (IJobMarket.JobState, uint40, uint32) {
        JobModel storage m = _jm[jobId];
        return (m.state, m.since, m.workerId);
    }

    /// @notice Everything the invariants need from the model in one call: per job (index jobId - 1) its terms,
    ///         modelled state, since and worker, and whether that worker was ever granted the job.
    function jobsSnapshot()
        external
        view
        returns (IJobMarket.JobTerms[] memory ts, JobModel[] memory ms, bool[] memory granted)
    {
        uint256 n = jobCount;
        ts = new IJobMarket.JobTerms[](n);
        ms = new JobModel[](n);
        granted = new bool[](n);
        for (uint256 i; i < n; ++i) {
            ts[i] = _terms[i + 1];
            ms[i] = _jm[i + 1];
            granted[i] = everGranted[i + 1][ms[i].workerId];
        }
    }

    function ids() external view returns (uint32[] memory) {
        return _ids;
    }

    function workerModel(uint32 id) external view returns (WorkerModel memory) {
        return _wm[id];
    }

    function accounts() external view returns (address[] memory a) {
        a = new address[](7);
        a[0] = clients[0];
        a[1] = clients[1];
        a[2] = clients[2];
        a[3] = operators[0];
        a[4] = operators[1];
        a[5] = dataOwner;
        a[6] = stranger;
    }

    function actionNames() external view returns (string[] memory) {
        return _actionNames;
    }

    // ================================================================ client actions

    function post(
        uint256 who,
        uint256 ds,
        uint256 kind,
        uint256 amount,
        uint256 gpus,
        uint256 run,
        uint256 slack,
        uint256 cw
    ) external {
        _count("post");
        address c = clients[who % 3];
        IJobMarket.JobRequest memory r = _makeRequest(ds, kind, amount, gpus, run, slack, cw);
        if (r.token == address(0)) vm.deal(c, c.balance + r.amount);
        vm.prank(c);
        uint256 jobId = market.postJob{value: r.token == address(0) ? r.amount : 0}(r);
        _recordPost(jobId, c, r);
    }

    function postBatch(uint256 who, uint256 seed) external {
        _count("postBatch");
        address c = clients[who % 3];
        uint256 n = 1 + seed % 3;
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](n);
        uint256 eth;
        for (uint256 i; i < n; ++i) {
            uint256 s = uint256(keccak256(abi.encode(seed, i)));
            rs[i] = _makeRequest(s, s >> 8, s >> 16, s >> 32, s >> 48, s >> 64, s >> 80);
            if (rs[i].token == address(0)) eth += rs[i].amount;
        }
        vm.deal(c, c.balance + eth);
        vm.prank(c);
        uint256 first = market.postJobs{value: eth}(rs);
        for (uint256 i; i < n; ++i) {
            _recordPost(first + i, c, rs[i]);
        }
    }

    function cancel(uint256 j, uint256 who) external {
        _count("cancel");
        uint256 jobId = _pick(j, _Open | _Assigned);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        address caller = _roll(who, 6) == 0 ? stranger : t.client;
        bool ok = caller == t.client && (m.state == IJobMarket.JobState.Open || m.state == IJobMarket.JobState.Assigned);
        if (!_call(ok, caller, 0, abi.encodeCall(market.cancel, (jobId, t)), "cancel")) return;
        if (m.state == IJobMarket.JobState.Assigned) _unlock(m.workerId, _coll(t));
        _enter(jobId, IJobMarket.JobState.Cancelled);
        _credit(t.token, t.client, t.amount);
    }

    function drop(uint256 j, uint256 who) external {
        _count("drop");
        uint256 jobId = _pick(j, _Assigned);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        uint256 w = _roll(who, 5);
        address caller = w == 0 ? stranger : w < 3 ? t.client : t.datasetOwner;
        bool ok = _jm[jobId].state == IJobMarket.JobState.Assigned && (caller == t.client || caller == t.datasetOwner);
        if (!_call(ok, caller, 0, abi.encodeCall(market.dropAssignment, (jobId, t)), "drop")) return;
        _reopen(jobId, t);
    }

    function accept(uint256 j, uint256 who) external {
        _count("accept");
        uint256 jobId = _pick(j, _Submitted | _FailureClaimed);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        IJobMarket.JobState s = _jm[jobId].state;
        address caller = _roll(who, 6) == 0 ? stranger : t.client;
        bool ok = caller == t.client && (s == IJobMarket.JobState.Submitted || s == IJobMarket.JobState.FailureClaimed);
        if (!_call(ok, caller, 0, abi.encodeCall(market.accept, (jobId, t)), "accept")) return;
        if (s == IJobMarket.JobState.Submitted) _settle(jobId, t, 0);
        else _fail(jobId, t, 0);
    }

    function dispute(uint256 j, uint256 pay) external {
        _count("dispute");
        uint256 jobId = _pick(j, _Submitted | _FailureClaimed);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        uint256 value = _roll(pay, 8) == 0 ? BOND - 1 : BOND;
        bool ok = (m.state == IJobMarket.JobState.Submitted || m.state == IJobMarket.JobState.FailureClaimed)
            && block.timestamp <= uint256(m.since) + t.challengeWindow && value == BOND;
        vm.deal(t.client, t.client.balance + value);
        if (!_call(ok, t.client, value, abi.encodeCall(market.dispute, (jobId, t, keccak256("why"))), "dispute")) {
            return;
        }
        ethIn += value;
        _enter(
            jobId,
            m.state == IJobMarket.JobState.Submitted
                ? IJobMarket.JobState.Disputed
                : IJobMarket.JobState.FailureDisputed
        );
    }

    // ================================================================ worker actions

    function assign(uint256 j, uint256 s, uint256 who) external {
        _count("assign");
        uint256 jobId = _pick(j, _Open);
        if (jobId == 0) return;
        Slot storage slot = _slots[s % 3];
        address caller = _roll(who, 8) == 0 ? stranger : slot.operator;
        IJobMarket.JobTerms memory t = _terms[jobId];
        bool ok = _canAssign(jobId, slot.id, caller, 0, 0);
        if (!_call(ok, caller, 0, abi.encodeCall(market.assign, (jobId, t, slot.id)), "assign")) return;
        _recordAssign(jobId, slot.id, t);
    }

    function assignMany(uint256 j, uint256 s, uint256 k) external {
        _count("assignMany");
        uint256 n = 2 + k % 2;
        uint256[] memory jobIds = new uint256[](n);
        IJobMarket.JobTerms[] memory ts = new IJobMarket.JobTerms[](n);
        for (uint256 i; i < n; ++i) {
            jobIds[i] = _pick(uint256(keccak256(abi.encode(j, i))), _Open);
            if (jobIds[i] == 0) return;
            ts[i] = _terms[jobIds[i]];
        }
        Slot storage slot = _slots[s % 3];
        bool ok = _canAssignAll(jobIds, slot.id, slot.operator);
        if (!_call(ok, slot.operator, 0, abi.encodeCall(market.assignMany, (jobIds, ts, slot.id)), "assignMany")) {
            return;
        }
        for (uint256 i; i < n; ++i) {
            _recordAssign(jobIds[i], slot.id, ts[i]);
        }
    }

    /// Two assignments batched with multicall (all or nothing), as a provider's agent does.
    function multicallAssign(uint256 j, uint256 s) external {
        _count("multicallAssign");
        uint256[] memory jobIds = new uint256[](2);
        bytes[] memory data = new bytes[](2);
        Slot storage slot = _slots[s % 3];
        for (uint256 i; i < 2; ++i) {
            jobIds[i] = _pick(uint256(keccak256(abi.encode(j, i, "mc"))), _Open);
            if (jobIds[i] == 0) return;
            data[i] = abi.encodeCall(market.assign, (jobIds[i], _terms[jobIds[i]], slot.id));
        }
        bool ok = _canAssignAll(jobIds, slot.id, slot.operator);
        if (!_call(ok, slot.operator, 0, abi.encodeCall(market.multicall, (data)), "multicallAssign")) return;
        for (uint256 i; i < 2; ++i) {
            _recordAssign(jobIds[i], slot.id, _terms[jobIds[i]]);
        }
    }

    function timeoutGrant(uint256 j) external {
        _count("timeoutGrant");
        uint256 jobId = _pick(j, _Assigned);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        bool ok = m.state == IJobMarket.JobState.Assigned && block.timestamp > uint256(m.since) + GRANT_TIMEOUT;
        if (!_call(ok, stranger, 0, abi.encodeCall(market.timeoutGrant, (jobId, t)), "timeoutGrant")) return;
        _reopen(jobId, t);
    }

    function submit(uint256 j, uint256 how) external {
        _count("submit");
        uint256 jobId = _pick(j, _Running);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        (bool found, uint256 si) = _slotOf(m.workerId);
        // A job held by an id that is no longer a slot's live one: sign as that id's registered signer cannot
        // happen (we lost the key with the rotation), so relay a garbage signature, which must fail.
        uint256 pk = found ? _slots[si].pk : keyOf("nobody");
        bool stale = found && _roll(how, 6) == 0 && _slots[si].stalePk != 0;
        if (stale) pk = _slots[si].stalePk;
        Attestation memory a = Attestation({
            jobId: jobId,
            worker: workers.workerAt(m.workerId),
            datasetRoot: keccak256("root"),
            baseModelHash: keccak256("base"),
            recipeHash: keccak256("recipe"),
            outputHash: keccak256(abi.encode("out", jobId)),
            metricsHash: bytes32(0),
            trajectoryRoot: bytes32(0),
            startTime: m.since,
            endTime: uint64(block.timestamp)
        });
        bytes memory sig = _sign(pk, market.attestationDigest(a));
        bool ok = m.state == IJobMarket.JobState.Running && block.timestamp <= uint256(m.since) + t.runTime && found
            && !stale;
        if (!_call(ok, stranger, 0, abi.encodeCall(market.submitResult, (jobId, t, a, sig)), "submit")) return;
        _enter(jobId, IJobMarket.JobState.Submitted);
    }

    function reportFailure(uint256 j, uint256 who) external {
        _count("reportFailure");
        uint256 jobId = _pick(j, _Assigned | _Running);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        (address op, address sg) = workers.authorities(m.workerId);
        uint256 w = _roll(who, 5);
        address caller = w == 0 ? stranger : w < 3 ? op : sg;
        bool inWindow = m.state == IJobMarket.JobState.Assigned
            || (m.state == IJobMarket.JobState.Running && block.timestamp <= uint256(m.since) + t.runTime);
        bool ok = inWindow && (caller == op || caller == sg) && caller != stranger;
        bytes memory data = abi.encodeCall(market.reportFailure, (jobId, t, uint8(w), bytes32(0)));
        if (!_call(ok, caller, 0, data, "reportFailure")) return;
        if (m.state == IJobMarket.JobState.Assigned) _reopen(jobId, t);
        else _enter(jobId, IJobMarket.JobState.FailureClaimed);
    }

    // ================================================================ dataset owner

    function grant(uint256 j, uint256 who) external {
        _count("grant");
        uint256 jobId = _pick(j, _Assigned);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        address caller = _roll(who, 7) == 0 ? stranger : t.datasetOwner;
        bool ok = m.state == IJobMarket.JobState.Assigned && caller == t.datasetOwner
            && block.timestamp + t.runTime <= t.deadline;
        if (!_call(ok, caller, 0, abi.encodeCall(market.grantAccess, (jobId, t, hex"beef")), "grant")) return;
        everGranted[jobId][m.workerId] = true;
        _enter(jobId, IJobMarket.JobState.Running);
    }

    // ================================================================ anyone / arbiter

    function resolve(uint256 j, bool workerWins, uint256 who) external {
        _count("resolve");
        uint256 jobId = _pick(j, _Disputed | _FailureDisputed);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        address caller = _roll(who, 7) == 0 ? t.client : arbiter;
        IJobMarket.JobState s = m.state;
        bool ok = caller == arbiter && (s == IJobMarket.JobState.Disputed || s == IJobMarket.JobState.FailureDisputed)
            && block.timestamp <= uint256(m.since) + DISPUTE_WINDOW;
        if (!_call(ok, caller, 0, abi.encodeCall(market.resolveDispute, (jobId, t, workerWins)), "resolve")) return;
        if (workerWins) {
            if (s == IJobMarket.JobState.Disputed) _settle(jobId, t, BOND);
            else _fail(jobId, t, BOND);
        } else {
            _credit(address(0), t.client, BOND);
            _slashRefund(jobId, t);
        }
    }

    function finalize(uint256 j) external {
        _count("finalize");
        uint256 jobId = _pick(j, _Submitted | _FailureClaimed | _Disputed | _FailureDisputed);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        IJobMarket.JobState s = m.state;
        bool claim = s == IJobMarket.JobState.Submitted || s == IJobMarket.JobState.FailureClaimed;
        bool disputed = s == IJobMarket.JobState.Disputed || s == IJobMarket.JobState.FailureDisputed;
        bool ok = (claim && block.timestamp > uint256(m.since) + t.challengeWindow)
            || (disputed && block.timestamp > uint256(m.since) + DISPUTE_WINDOW);
        if (!_call(ok, stranger, 0, abi.encodeCall(market.finalize, (jobId, t)), "finalize")) return;
        uint256 bond = disputed ? BOND : 0;
        if (s == IJobMarket.JobState.Submitted || s == IJobMarket.JobState.Disputed) _settle(jobId, t, bond);
        else _fail(jobId, t, bond);
    }

    function reclaim(uint256 j) external {
        _count("reclaim");
        uint256 jobId = _pick(j, _Assigned | _Running);
        if (jobId == 0) return;
        IJobMarket.JobTerms memory t = _terms[jobId];
        JobModel storage m = _jm[jobId];
        bool running = m.state == IJobMarket.JobState.Running;
        bool ok = (running && block.timestamp > uint256(m.since) + t.runTime)
            || (m.state == IJobMarket.JobState.Assigned && block.timestamp > uint256(t.deadline) - t.runTime);
        if (!_call(ok, stranger, 0, abi.encodeCall(market.reclaim, (jobId, t)), "reclaim")) return;
        if (running) {
            _slashRefund(jobId, t);
        } else {
            _credit(t.token, t.client, t.amount);
            _unlock(m.workerId, _coll(t));
        }
        _enter(jobId, IJobMarket.JobState.Expired);
    }

    function withdraw(uint256 who, bool inToken) external {
        _count("withdraw");
        address[] memory a = this.accounts();
        address caller = a[who % a.length];
        address tk = inToken ? address(token) : address(0);
        uint256 amount = modelCredit[tk][caller];
        uint256 balanceBefore = inToken ? token.balanceOf(caller) : caller.balance;
        if (!_call(amount != 0, caller, 0, abi.encodeCall(market.withdraw, (tk)), "withdraw")) return;
        uint256 balanceAfter = inToken ? token.balanceOf(caller) : caller.balance;
        require(balanceAfter - balanceBefore == amount, "withdraw paid a different amount");
        modelCredit[tk][caller] = 0;
        if (inToken) tokenOut += amount;
        else ethOut += amount;
    }

    // ================================================================ natural next steps

    /// Moves a random live job along its usual path with the right party (most of the time), so that jobs reach
    /// the late states within the run's depth. Four entry points weight it against the single actions.
    function step1(uint256 j, uint256 seed) external {
        _step(j, seed);
    }

    function step2(uint256 j, uint256 seed) external {
        _step(j, seed);
    }

    function step3(uint256 j, uint256 seed) external {
        _step(j, seed);
    }

    function step4(uint256 j, uint256 seed) external {
        _step(j, seed);
    }

    function _step(uint256 j, uint256 seed) internal {
        uint256 jobId = _pick(j, _LIVE);
        if (jobId == 0) return;
        uint256 js = jobId; // only a seed: _forced makes the action's _pick return this job
        _forced = jobId;
        IJobMarket.JobState s = _jm[jobId].state;
        uint256 r = _roll(seed, 10);
        if (s == IJobMarket.JobState.Open) {
            // A client cancels a job that can no longer start; otherwise providers take it.
            IJobMarket.JobTerms storage t = _terms[jobId];
            if (block.timestamp > uint256(t.deadline) - t.runTime) this.cancel(js, seed);
            else if (r < 8) this.assign(js, seed, seed >> 8);
            else this.assignMany(js, seed, seed >> 8);
        } else if (s == IJobMarket.JobState.Assigned) {
            if (r < 7) this.grant(js, seed);
            else if (r < 8) this.reportFailure(js, seed);
            else if (r < 9) this.drop(js, seed);
            else this.timeoutGrant(js);
        } else if (s == IJobMarket.JobState.Running) {
            if (r < 7) this.submit(js, seed);
            else if (r < 9) this.reportFailure(js, seed);
            else this.reclaim(js);
        } else if (s == IJobMarket.JobState.Submitted || s == IJobMarket.JobState.FailureClaimed) {
            if (r < 4) this.accept(js, seed);
            else if (r < 7) this.dispute(js, seed);
            else this.finalize(js);
        } else {
            if (r < 6) this.resolve(js, seed % 2 == 0, seed >> 8);
            else this.finalize(js);
        }
    }

    // ================================================================ time

    /// Warps to one of a job's current limits, exactly or one second either side.
    function warpToLimit(uint256 j, uint256 off) external {
        _count("warpToLimit");
        uint256 jobId = _pick(j, _LIVE);
        uint256 target;
        if (jobId != 0) {
            IJobMarket.JobTerms memory t = _terms[jobId];
            JobModel storage m = _jm[jobId];
            IJobMarket.JobState s = m.state;
            if (s == IJobMarket.JobState.Open) {
                target = _roll(off, 2) == 0 ? uint256(t.deadline) - t.runTime : uint256(m.since) + GRANT_TIMEOUT;
            } else if (s == IJobMarket.JobState.Assigned) {
                target = _roll(off, 2) == 0 ? uint256(t.deadline) - t.runTime : uint256(m.since) + GRANT_TIMEOUT;
            } else if (s == IJobMarket.JobState.Running) {
                target = uint256(m.since) + t.runTime;
            } else if (s == IJobMarket.JobState.Submitted || s == IJobMarket.JobState.FailureClaimed) {
                target = uint256(m.since) + t.challengeWindow;
            } else {
                target = uint256(m.since) + DISPUTE_WINDOW;
            }
            target = target + _roll(off >> 1, 3) - 1; // limit - 1, limit, limit + 1
        }
        if (target <= block.timestamp) target = block.timestamp + 1 + off % 600;
        vm.warp(target);
    }

    function warpBy(uint256 dt) external {
        _count("warpBy");
        vm.warp(block.timestamp + 1 + _roll(dt, 20 minutes));
    }

    // ================================================================ registry: the worker lifecycle

    function rotateSigner(uint256 s) external {
        _count("rotateSigner");
        Slot storage slot = _slots[s % 3];
        if (_wm[slot.id].status == IWorkerRegistry.WorkerStatus.Exited) return;
        slot.stalePk = slot.pk;
        _newSigner(slot);
        vm.prank(slot.operator);
        workers.update(slot.account, _params(slot));
    }

    function pauseToggle(uint256 s) external {
        _count("pauseToggle");
        Slot storage slot = _slots[s % 3];
        WorkerModel storage w = _wm[slot.id];
        if (w.status == IWorkerRegistry.WorkerStatus.Active) {
            if (_roll(s, 6) != 0) return; // pause less often than unpause
            vm.prank(slot.operator);
            workers.pause(slot.account);
            w.status = IWorkerRegistry.WorkerStatus.Paused;
        } else if (w.status == IWorkerRegistry.WorkerStatus.Paused) {
            vm.prank(slot.operator);
            workers.unpause(slot.account);
            w.status = IWorkerRegistry.WorkerStatus.Active;
        }
    }

    function requestExit(uint256 s) external {
        _count("requestExit");
        // Slot 1 never leaves, so that the market always has a worker; the others leave now and then.
        if (s % 3 == 1 || _roll(s, 4) != 0) return;
        Slot storage slot = _slots[s % 3];
        WorkerModel storage w = _wm[slot.id];
        bool ok = w.status == IWorkerRegistry.WorkerStatus.Active || w.status == IWorkerRegistry.WorkerStatus.Paused;
        vm.prank(slot.operator);
        try workers.requestExit(slot.account) {
            if (!ok) _unexpected("requestExit");
            ++succeeded["requestExit"];
            w.status = IWorkerRegistry.WorkerStatus.Exiting;
            w.unbondingEnd = block.timestamp + UNBONDING;
        } catch (bytes memory err) {
            if (ok) _bubble(err);
        }
    }

    function withdrawStake(uint256 s) external {
        _count("withdrawStake");
        Slot storage slot = _slots[s % 3];
        WorkerModel storage w = _wm[slot.id];
        bool ok = w.status == IWorkerRegistry.WorkerStatus.Exiting && block.timestamp >= w.unbondingEnd && w.active == 0;
        uint256 before = slot.operator.balance;
        vm.prank(slot.operator);
        try workers.withdrawStake(slot.account) {
            if (!ok) _unexpected("withdrawStake");
            ++succeeded["withdrawStake"];
            require(slot.operator.balance - before == w.stake, "withdrawStake paid a different amount");
            w.stake = 0;
            w.status = IWorkerRegistry.WorkerStatus.Exited;
        } catch (bytes memory err) {
            if (ok) _bubble(err);
        }
    }

    /// The same worker address registers again after leaving: a new id, old jobs keep the old one.
    function reregister(uint256 s, uint256 stake) external {
        _count("reregister");
        uint256 i = s % 3;
        if (_wm[_slots[i].id].status != IWorkerRegistry.WorkerStatus.Exited) return;
        uint32 old = _slots[i].id;
        _register(i, 0.05 ether + _roll(stake, 1 ether));
        require(_slots[i].id != old, "re-registration reused an id");
        ++succeeded["reregister"];
    }

    function addStake(uint256 s, uint256 amount) external {
        _count("addStake");
        Slot storage slot = _slots[s % 3];
        WorkerModel storage w = _wm[slot.id];
        if (w.status == IWorkerRegistry.WorkerStatus.Exited) return;
        amount = bound(amount, 0, 0.2 ether);
        vm.deal(slot.operator, slot.operator.balance + amount);
        vm.prank(slot.operator);
        workers.addStake{value: amount}(slot.account);
        w.stake += amount;
    }

    // ================================================================ model internals

    uint256 internal constant _Open = 1 << 1;
    uint256 internal constant _Assigned = 1 << 2;
    uint256 internal constant _Running = 1 << 3;
    uint256 internal constant _Submitted = 1 << 4;
    uint256 internal constant _FailureClaimed = 1 << 5;
    uint256 internal constant _Disputed = 1 << 6;
    uint256 internal constant _FailureDisputed = 1 << 7;
    uint256 internal constant _LIVE = 0xFE;

    /// @dev A job id from `seed`. Three times in four it walks to a job in one of the `wanted` states (half of
    ///      those walks start among the ten newest jobs, which are likelier to be still in time), so that most calls
    ///      are meaningful; otherwise (or when none is) it returns the raw pick, usually a call the rules forbid.
    ///      0 when there are no jobs yet.
    function _pick(uint256 seed, uint256 wanted) internal returns (uint256) {
        uint256 forced = _forced;
        if (forced != 0) {
            _forced = 0;
            return forced;
        }
        uint256 n = jobCount;
        if (n == 0) return 0;
        uint256 r = uint256(keccak256(abi.encode(seed, wanted)));
        uint256 start = seed % n;
        if (r % 4 == 0) return start + 1;
        if ((r >> 8) % 2 == 0) {
            // Newest first: n, n-1, ... from a start among the last ten.
            uint256 top = n - (r >> 16) % (n < 10 ? n : 10);
            for (uint256 k; k < n; ++k) {
                uint256 id = (top + n - 1 - k) % n + 1;
                if ((1 << uint256(_jm[id].state)) & wanted != 0) return id;
            }
            return top;
        }
        for (uint256 k; k < n; ++k) {
            uint256 id = (start + k) % n + 1;
            if ((1 << uint256(_jm[id].state)) & wanted != 0) return id;
        }
        return start + 1;
    }

    /// @dev Makes the call as `caller`. `ok`: the rules allow it, so it must succeed (a revert is bubbled and fails
    ///      the run). Not `ok`: it must revert; if it goes through, that is counted as unexpected. Also checks, for
    ///      every worker, that a stake only ever drops in a slash of a job that worker was granted.
    function _call(bool ok, address caller, uint256 value, bytes memory data, string memory what)
        internal
        returns (bool)
    {
        uint256 n = _ids.length;
        uint256[] memory stakes = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            stakes[i] = workers.getWorkerById(_ids[i]).stake;
        }
        vm.deal(caller, caller.balance + value);
        vm.prank(caller);
        (bool success, bytes memory ret) = address(market).call{value: value}(data);
        if (ok && !success) _bubble(ret);
        if (!ok && success) _unexpected(what);
        if (!success) return false;
        ++succeeded[what];
        uint256 jobId = data.length >= 36 ? uint256(bytes32(_slice(data, 4))) : 0;
        for (uint256 i; i < n; ++i) {
            if (workers.getWorkerById(_ids[i]).stake < stakes[i] && !everGranted[jobId][_ids[i]]) {
                ++slashesWithoutGrant;
            }
        }
        return true;
    }

    function _canAssign(uint256 jobId, uint32 id, address caller, uint256 extraLocked, uint256 extraJobs)
        internal
        view
        returns (bool)
    {
        JobModel storage m = _jm[jobId];
        IJobMarket.JobTerms storage t = _terms[jobId];
        WorkerModel storage w = _wm[id];
        (bool found, uint256 si) = _slotOf(id);
        if (m.state != IJobMarket.JobState.Open) return false;
        if (m.workerId == id && block.timestamp < uint256(m.since) + GRANT_TIMEOUT) return false;
        if (block.timestamp > uint256(t.deadline) - t.runTime) return false;
        if (caller != w.operator || w.status != IWorkerRegistry.WorkerStatus.Active || !found) return false;
        if (_slots[si].gpus < t.gpuCount || _slots[si].mem < t.gpuMemGiB) return false;
        if (w.stake < w.locked + extraLocked + _coll(t)) return false;
        if (w.active + extraJobs + 1 > type(uint8).max) return false;
        return true;
    }

    function _canAssignAll(uint256[] memory jobIds, uint32 id, address caller) internal view returns (bool) {
        uint256 locked;
        for (uint256 i; i < jobIds.length; ++i) {
            for (uint256 k; k < i; ++k) {
                if (jobIds[k] == jobIds[i]) return false;
            }
            if (!_canAssign(jobIds[i], id, caller, locked, i)) return false;
            locked += _coll(_terms[jobIds[i]]);
        }
        return true;
    }

    function _recordAssign(uint256 jobId, uint32 id, IJobMarket.JobTerms memory t) internal {
        _wm[id].locked += _coll(t);
        _wm[id].active += 1;
        _jm[jobId].workerId = id;
        _enter(jobId, IJobMarket.JobState.Assigned);
    }

    /// @dev Request fields from hashed seeds (uniform, since the fuzzer favours tiny values), with the edges kept:
    ///      one post in eight has no slack (latest start = now) and one in eight no challenge window.
    function _makeRequest(
        uint256 ds,
        uint256 kind,
        uint256 amount,
        uint256 gpus,
        uint256 run,
        uint256 slack,
        uint256 cw
    ) internal view returns (IJobMarket.JobRequest memory r) {
        uint256 h = uint256(keccak256(abi.encode(ds, kind, amount, gpus, run, slack, cw)));
        bool inToken = (h >> 8) % 2 == 1;
        uint32 runTime = uint32(1 + (h >> 16) % 3 hours);
        uint256 slackTime = (h >> 48) % 8 == 0 ? 0 : (h >> 56) % 6 hours;
        r = IJobMarket.JobRequest({
            datasetId: _datasetIds[h % 2],
            baseModelHash: keccak256("base"),
            recipeHash: keccak256("recipe"),
            recipeURI: "file:///recipe",
            gpuCount: uint8(1 + (h >> 96) % 4),
            gpuMemGiB: uint16(1 + (h >> 104) % 80),
            deadline: uint40(block.timestamp + runTime + slackTime),
            runTime: runTime,
            challengeWindow: (h >> 120) % 8 == 0 ? 0 : uint24((h >> 128) % 2 hours),
            token: inToken ? address(token) : address(0),
            amount: uint96(1 + (h >> 160) % (inToken ? 1e24 : 10 ether)),
            clientKeyId: _keyId
        });
    }

    function _recordPost(uint256 jobId, address c, IJobMarket.JobRequest memory r) internal {
        require(jobId == jobCount + 1, "job ids not consecutive");
        jobCount = jobId;
        _terms[jobId] = IJobMarket.JobTerms({
            client: c,
            datasetOwner: datasets.ownerOf(r.datasetId),
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
        _jm[jobId] = JobModel(IJobMarket.JobState.Open, uint40(block.timestamp), 0);
        if (r.token == address(0)) ethIn += r.amount;
        else tokenIn += r.amount;
    }

    function _enter(uint256 jobId, IJobMarket.JobState s) internal {
        _jm[jobId].state = s;
        _jm[jobId].since = uint40(block.timestamp);
    }

    function _reopen(uint256 jobId, IJobMarket.JobTerms memory t) internal {
        _unlock(_jm[jobId].workerId, _coll(t));
        _enter(jobId, IJobMarket.JobState.Open);
    }

    function _unlock(uint32 id, uint256 amount) internal {
        _wm[id].locked -= amount;
        _wm[id].active -= 1;
    }

    function _settle(uint256 jobId, IJobMarket.JobTerms memory t, uint256 bond) internal {
        uint32 id = _jm[jobId].workerId;
        _unlock(id, _coll(t));
        _credit(t.token, _wm[id].operator, t.amount);
        _credit(address(0), _wm[id].operator, bond);
        _enter(jobId, IJobMarket.JobState.Settled);
    }

    function _fail(uint256 jobId, IJobMarket.JobTerms memory t, uint256 bond) internal {
        uint32 id = _jm[jobId].workerId;
        _unlock(id, _coll(t));
        _credit(t.token, t.client, t.amount);
        _credit(address(0), _wm[id].operator, bond);
        _enter(jobId, IJobMarket.JobState.Failed);
    }

    function _slashRefund(uint256 jobId, IJobMarket.JobTerms memory t) internal {
        uint32 id = _jm[jobId].workerId;
        uint256 c = _coll(t);
        _unlock(id, c);
        _wm[id].stake -= c;
        ethIn += c; // the registry pays the slashed collateral to the market
        _credit(t.token, t.client, t.amount);
        _credit(address(0), t.client, c);
        _enter(jobId, IJobMarket.JobState.Refunded);
    }

    function _credit(address tk, address account, uint256 amount) internal {
        modelCredit[tk][account] += amount;
    }

    function _coll(IJobMarket.JobTerms memory t) internal pure returns (uint256) {
        return COLLATERAL * t.gpuCount;
    }

    function _slotOf(uint32 id) internal view returns (bool, uint256) {
        for (uint256 i; i < 3; ++i) {
            if (_slots[i].id == id) return (true, i);
        }
        return (false, 0);
    }

    function _register(uint256 i, uint256 stake) internal {
        Slot storage slot = _slots[i];
        _newSigner(slot);
        slot.stalePk = 0;
        vm.deal(slot.operator, slot.operator.balance + stake);
        vm.prank(slot.operator);
        uint32 id = workers.register{value: stake}(slot.account, _params(slot));
        slot.id = id;
        _ids.push(id);
        _wm[id] = WorkerModel(stake, 0, 0, IWorkerRegistry.WorkerStatus.Active, 0, slot.operator);
    }

    function _newSigner(Slot storage slot) internal {
        slot.pk = keyOf(string(abi.encode("signer", ++_pkNonce)));
        slot.signer = slot.wallet ? address(new TestSmartWallet(vm.addr(slot.pk))) : vm.addr(slot.pk);
    }

    function _params(Slot storage slot) internal view returns (IWorkerRegistry.WorkerParams memory) {
        return IWorkerRegistry.WorkerParams({
            signer: slot.signer,
            gpuModel: bytes32("GPU"),
            gpuCount: slot.gpus,
            gpuMemGiB: slot.mem,
            pricePerGpuHour: 1,
            keyKind: IWorkerRegistry.KeyKind.X25519,
            encryptionKey: abi.encodePacked(keccak256(abi.encode(slot.account)))
        });
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev A uniform pick in [0, n) from a fuzzed seed (the fuzzer favours small and edge values).
    function _roll(uint256 seed, uint256 n) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed, n))) % n;
    }

    function _count(string memory name) internal {
        if (calls[name]++ == 0) _actionNames.push(name);
    }

    function _unexpected(string memory what) internal {
        ++unexpected;
        lastUnexpected = what;
    }

    function _bubble(bytes memory err) internal pure {
        assembly ("memory-safe") {
            revert(add(err, 0x20), mload(err))
        }
    }

    function _slice(bytes memory data, uint256 offset) internal pure returns (bytes32 word) {
        assembly ("memory-safe") {
            word := mload(add(add(data, 0x20), offset))
        }
    }
}

