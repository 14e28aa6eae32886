// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {JobMarket} from "../../../contracts/JobMarket.sol";
import {WorkerRegistry} from "../../../contracts/WorkerRegistry.sol";
import {DatasetRegistry} from "../../../contracts/DatasetRegistry.sol";
import {TestToken} from "../../../contracts/test/TestToken.sol";
import {IJobMarket} from "../../../contracts/interfaces/IJobMarket.sol";
import {IWorkerRegistry} from "../../../contracts/interfaces/IWorkerRegistry.sol";
import {Attestation} from "../../../contracts/libraries/AttestationLib.sol";

/// @notice Deploys the suite the way production does (registry first, with the market's predicted address)
///         and gives the tests one client, one dataset owner, one registered worker and helpers for every step.
abstract contract MarketFixture is TestBase {
    uint256 internal constant COLLATERAL = 0.01 ether; // per GPU, a whole number of gwei
    uint40 internal constant GRANT_TIMEOUT = 1 days;
    uint40 internal constant DISPUTE_WINDOW = 3 days;
    uint256 internal constant BOND = 0.05 ether;
    uint40 internal constant UNBONDING = 7 days;
    uint256 internal constant STAKE = 10 ether;
    uint256 internal constant T0 = 1_700_000_000;

    // Default job terms.
    uint96 internal constant AMOUNT = 1 ether;
    uint8 internal constant GPUS = 2;
    uint16 internal constant MEM = 40;
    uint32 internal constant RUN = 2 days;
    uint40 internal constant HORIZON = 10 days; // deadline - post time
    uint24 internal constant CHALLENGE = 1 days;

    JobMarket internal market;
    WorkerRegistry internal workers;
    DatasetRegistry internal datasets;
    TestToken internal token;

    address internal admin;
    address internal arbiter;
    address internal client;
    address internal dataOwner;
    address internal operator;
    address internal workerAddr;
    address internal stranger;
    uint256 internal signerPk;
    address internal signer;

    uint256 internal datasetId;
    uint32 internal keyId;
    uint32 internal workerId;

    function setUp() public virtual {
        vm.warp(T0);
        admin = makeAddr("admin");
        arbiter = makeAddr("arbiter");
        client = makeAddr("client");
        dataOwner = makeAddr("dataOwner");
        operator = makeAddr("operator");
        workerAddr = makeAddr("worker");
        stranger = makeAddr("stranger");
        signerPk = keyOf("signer");
        signer = makeAddr("signer");
        _deploy(COLLATERAL, false);
        token = new TestToken();
        datasetId = _registerDataset(dataOwner);
        keyId = _registerKey(client);
        workerId = _registerWorker(operator, workerAddr, signer, STAKE);
        vm.deal(client, 1_000 ether);
        vm.deal(stranger, 1_000 ether);
        token.mint(client, 1_000_000 ether);
        vm.prank(client);
        token.approve(address(market), type(uint256).max);
    }

    // ------------------------------------------------------------------ deployment and registration

    function _deploy(uint256 collateralPerGpu, bool allowZero) internal {
        datasets = new DatasetRegistry();
        address predicted = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 1);
        workers = new WorkerRegistry(predicted, UNBONDING);
        market = new JobMarket(
            admin, arbiter, workers, datasets, collateralPerGpu, GRANT_TIMEOUT, DISPUTE_WINDOW, BOND, allowZero
        );
        vm.assertEq(address(market), predicted, "market at the predicted address");
    }

    function _registerDataset(address owner_) internal returns (uint256 id) {
        vm.prank(owner_);
        id = datasets.registerDataset(keccak256("root"), keccak256("cipher"), 1_000, "file:///data");
    }

    function _registerKey(address who) internal returns (uint32 id) {
        vm.prank(who);
        id = market.registerClientKey(0, abi.encodePacked(keccak256(abi.encode("x25519", who))));
    }

    function _params(address signer_) internal pure returns (IWorkerRegistry.WorkerParams memory p) {
        p = IWorkerRegistry.WorkerParams({
            signer: signer_,
            gpuModel: bytes32("H100"),
            gpuCount: 8,
            gpuMemGiB: 80,
            pricePerGpuHour: 1e15,
            keyKind: IWorkerRegistry.KeyKind.X25519,
            encryptionKey: abi.encodePacked(keccak256("hpke"))
        });
    }

    function _registerWorker(address operator_, address worker_, address signer_, uint256 stake)
        internal
        returns (uint32 id)
    {
        vm.deal(operator_, operator_.balance + stake);
        vm.prank(operator_);
        id = workers.register{value: stake}(worker_, _params(signer_));
    }

    // ------------------------------------------------------------------ jobs

    function _request(address token_, uint96 amount) internal view returns (IJobMarket.JobRequest memory r) {
        r = IJobMarket.JobRequest({
            datasetId: datasetId,
            baseModelHash: keccak256("base"),
            recipeHash: keccak256("recipe"),
            recipeURI: "file:///recipe",
            gpuCount: GPUS,
            gpuMemGiB: MEM,
            deadline: uint40(block.timestamp + HORIZON),
            runTime: RUN,
            challengeWindow: CHALLENGE,
            token: token_,
            amount: amount,
            clientKeyId: keyId
        });
    }

    /// @dev The terms a post of `r` by `client_` stores (what `JobPosted` carries).
    function _termsOf(address client_, IJobMarket.JobRequest memory r)
        internal
        view
        returns (IJobMarket.JobTerms memory)
    {
        return IJobMarket.JobTerms({
            client: client_,
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
    }

    function _post(address client_, IJobMarket.JobRequest memory r)
        internal
        returns (uint256 jobId, IJobMarket.JobTerms memory t)
    {
        vm.prank(client_);
        jobId = market.postJob{value: r.token == address(0) ? r.amount : 0}(r);
        t = _termsOf(client_, r);
        vm.assertEq(market.hashTerms(t), market.getJob(jobId).termsHash, "terms rebuilt as posted");
    }

    function _postDefault() internal returns (uint256 jobId, IJobMarket.JobTerms memory t) {
        return _post(client, _request(address(0), AMOUNT));
    }

    function _assign(uint256 jobId, IJobMarket.JobTerms memory t) internal {
        vm.prank(operator);
        market.assign(jobId, t, workerId);
    }

    function _grant(uint256 jobId, IJobMarket.JobTerms memory t) internal {
        vm.prank(t.datasetOwner);
        market.grantAccess(jobId, t, hex"c0ffee");
    }

    function _attestation(uint256 jobId, address worker_) internal view returns (Attestation memory a) {
        uint40 since = market.getJob(jobId).since;
        a = Attestation({
            jobId: jobId,
            worker: worker_,
            datasetRoot: keccak256("root"),
            baseModelHash: keccak256("base"),
            recipeHash: keccak256("recipe"),
            outputHash: keccak256("output"),
            metricsHash: keccak256("metrics"),
            trajectoryRoot: keccak256("trajectory"),
            startTime: since,
            endTime: uint64(block.timestamp)
        });
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    function _submit(uint256 jobId, IJobMarket.JobTerms memory t) internal {
        Attestation memory a = _attestation(jobId, workerAddr);
        bytes memory sig = _sign(signerPk, market.attestationDigest(a));
        vm.prank(stranger); // anyone may relay
        market.submitResult(jobId, t, a, sig);
    }

    function _running() internal returns (uint256 jobId, IJobMarket.JobTerms memory t) {
        (jobId, t) = _postDefault();
        _assign(jobId, t);
        _grant(jobId, t);
    }

    function _submitted() internal returns (uint256 jobId, IJobMarket.JobTerms memory t) {
        (jobId, t) = _running();
        vm.warp(block.timestamp + 1 hours);
        _submit(jobId, t);
    }

    function _failureClaimed() internal returns (uint256 jobId, IJobMarket.JobTerms memory t) {
        (jobId, t) = _running();
        vm.warp(block.timestamp + 1 hours);
        vm.prank(operator);
        market.reportFailure(jobId, t, 1, keccak256("oom"));
    }

    function _dispute(uint256 jobId, IJobMarket.JobTerms memory t) internal {
        vm.prank(t.client);
        market.dispute{value: BOND}(jobId, t, keccak256("bad"));
    }

    // ------------------------------------------------------------------ reading

    function _state(uint256 jobId) internal view returns (IJobMarket.JobState) {
        return market.getJob(jobId).state;
    }

    function _assertState(uint256 jobId, IJobMarket.JobState want, string memory what) internal view {
        vm.assertEq(uint256(_state(jobId)), uint256(want), what);
    }

    function _since(uint256 jobId) internal view returns (uint256) {
        return market.getJob(jobId).since;
    }

    function _stake(uint32 id) internal view returns (uint256) {
        return workers.getWorkerById(id).stake;
    }

    function _active(uint32 id) internal view returns (uint256) {
        return workers.getWorkerById(id).activeJobs;
    }

    function _err(bytes4 selector, uint256 a, uint256 b) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(selector, a, b);
    }
}
