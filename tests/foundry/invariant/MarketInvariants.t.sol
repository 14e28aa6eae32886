// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "../utils/Vm.sol";
import {MarketHandler} from "./MarketHandler.sol";
import {JobMarket} from "../../../contracts/JobMarket.sol";
import {WorkerRegistry} from "../../../contracts/WorkerRegistry.sol";
import {TestToken} from "../../../contracts/test/TestToken.sol";
import {IJobMarket} from "../../../contracts/interfaces/IJobMarket.sol";
import {IWorkerRegistry} from "../../../contracts/interfaces/IWorkerRegistry.sol";

/// @notice Stateful fuzzing of the market through {MarketHandler}. See docs/contracts-testing.md for what each
///         invariant means.
contract MarketInvariantsTest is TestBase {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    MarketHandler internal h;
    JobMarket internal market;
    WorkerRegistry internal workers;
    TestToken internal token;

    error ProbeMoved();

    function setUp() public {
        vm.warp(1_700_000_000);
        h = new MarketHandler();
        market = h.market();
        workers = h.workers();
        token = h.token();
    }

    /// @dev Read by forge (forge-std's StdInvariant has the same shape): fuzz only the handler's actions.
    function targetContracts() public view returns (address[] memory a) {
        a = new address[](1);
        a[0] = address(h);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory s) {
        bytes4[] memory sel = new bytes4[](29);
        sel[0] = MarketHandler.post.selector;
        sel[1] = MarketHandler.postBatch.selector;
        sel[2] = MarketHandler.cancel.selector;
        sel[3] = MarketHandler.drop.selector;
        sel[4] = MarketHandler.accept.selector;
        sel[5] = MarketHandler.dispute.selector;
        sel[6] = MarketHandler.assign.selector;
        sel[7] = MarketHandler.assignMany.selector;
        sel[8] = MarketHandler.multicallAssign.selector;
        sel[9] = MarketHandler.timeoutGrant.selector;
        sel[10] = MarketHandler.submit.selector;
        sel[11] = MarketHandler.reportFailure.selector;
        sel[12] = MarketHandler.grant.selector;
        sel[13] = MarketHandler.resolve.selector;
        sel[14] = MarketHandler.finalize.selector;
        sel[15] = MarketHandler.reclaim.selector;
        sel[16] = MarketHandler.withdraw.selector;
        sel[17] = MarketHandler.warpToLimit.selector;
        sel[18] = MarketHandler.step4.selector;
        sel[19] = MarketHandler.warpBy.selector;
        sel[20] = MarketHandler.rotateSigner.selector;
        sel[21] = MarketHandler.pauseToggle.selector;
        sel[22] = MarketHandler.requestExit.selector;
        sel[23] = MarketHandler.withdrawStake.selector;
        sel[24] = MarketHandler.reregister.selector;
        sel[25] = MarketHandler.addStake.selector;
        sel[26] = MarketHandler.step1.selector;
        sel[27] = MarketHandler.step2.selector;
        sel[28] = MarketHandler.step3.selector;
        s = new FuzzSelector[](1);
        s[0] = FuzzSelector(address(h), sel);
    }

    // ================================================================ invariants

    /// @notice What every check reads, gathered once per check round (a few calls instead of a few per job).
    struct Scan {
        uint256 n;
        IJobMarket.JobView[] jobs; // the market's records, index jobId - 1
        IJobMarket.JobTerms[] terms; // the model's terms
        MarketHandler.JobModel[] model; // the model's states
        bool[] granted; // the job's worker was granted it at some point
        address[] accounts;
        uint256[] ethCredits; // market.credits per account
        uint256[] tokenCredits;
    }

    /// @dev One campaign checks every invariant after every call (forge runs one campaign per `invariant_`
    ///      function and checks only that function in it; seven functions would replay the same sequences seven
    ///      times). A failure names the invariant in its message.
    function invariant_marketRules() public {
        Scan memory s = _scan();
        _checkForbiddenCallsRevert();
        _checkSolvency(s);
        _checkCreditsMatchModel(s);
        _checkWorkerAccounting(s);
        _checkJobsMatchModel(s);
        _checkNoSlashWithoutGrant(s);
        _checkEveryLiveJobCanBeMoved(s);
    }

    /// Every call the rules forbid reverted.
    function _checkForbiddenCallsRevert() internal view {
        if (h.unexpected() != 0) {
            revert(string.concat("forbiddenCallsRevert: a forbidden call went through: ", h.lastUnexpected()));
        }
    }

    /// Solvency: per asset, the market holds at least open escrows + unwithdrawn credits + dispute bonds held.
    /// With no stray transfers in this world it holds exactly that, and exactly what came in minus what went out.
    function _checkSolvency(Scan memory s) internal view {
        uint256 ethOwed;
        uint256 tokenOwed;
        for (uint256 i; i < s.n; ++i) {
            IJobMarket.JobState st = s.jobs[i].state;
            if (st == IJobMarket.JobState.Open || _holds(st)) {
                if (s.terms[i].token == address(0)) ethOwed += s.terms[i].amount;
                else tokenOwed += s.terms[i].amount;
            }
            if (st == IJobMarket.JobState.Disputed || st == IJobMarket.JobState.FailureDisputed) ethOwed += h.BOND();
        }
        for (uint256 i; i < s.accounts.length; ++i) {
            ethOwed += s.ethCredits[i];
            tokenOwed += s.tokenCredits[i];
        }
        uint256 ethHeld = address(market).balance;
        uint256 tokenHeld = token.balanceOf(address(market));
        vm.assertGe(ethHeld, ethOwed, "solvency: ETH held >= escrows + credits + bonds");
        vm.assertGe(tokenHeld, tokenOwed, "solvency: token held >= escrows + credits");
        vm.assertEq(ethHeld, ethOwed, "solvency: ETH has no unaccounted surplus");
        vm.assertEq(tokenHeld, tokenOwed, "solvency: token has no unaccounted surplus");
        vm.assertEq(ethHeld, h.ethIn() - h.ethOut(), "solvency: ETH held = ghost in - out");
        vm.assertEq(tokenHeld, h.tokenIn() - h.tokenOut(), "solvency: token held = ghost in - out");
    }

    /// Every credit is the one the rules give (who gets paid what).
    function _checkCreditsMatchModel(Scan memory s) internal view {
        for (uint256 i; i < s.accounts.length; ++i) {
            vm.assertEq(s.ethCredits[i], h.modelCredit(address(0), s.accounts[i]), "creditsMatchModel: ETH credit");
            vm.assertEq(
                s.tokenCredits[i], h.modelCredit(address(token), s.accounts[i]), "creditsMatchModel: token credit"
            );
        }
    }

    /// Per worker: locked collateral never exceeds the stake, equals the collateral of the jobs it holds, and
    /// activeJobs counts exactly its jobs in Assigned..FailureDisputed. The registry holds every stake.
    function _checkWorkerAccounting(Scan memory s) internal view {
        uint32[] memory ids = h.ids();
        uint256 perGpu = h.COLLATERAL();
        uint256 stakes;
        for (uint256 k; k < ids.length; ++k) {
            uint32 id = ids[k];
            uint256 held;
            uint256 collateral;
            for (uint256 i; i < s.n; ++i) {
                if (s.jobs[i].workerId == id && _holds(s.jobs[i].state)) {
                    ++held;
                    collateral += perGpu * s.terms[i].gpuCount;
                }
            }
            IWorkerRegistry.Worker memory w = workers.getWorkerById(id);
            uint256 locked = uint256(w.lockedGwei) * 1 gwei;
            vm.assertLe(locked, w.stake, "workerAccounting: locked <= stake");
            vm.assertEq(locked, collateral, "workerAccounting: locked = collateral of the jobs held");
            vm.assertEq(w.activeJobs, held, "workerAccounting: activeJobs = its jobs in Assigned..FailureDisputed");
            MarketHandler.WorkerModel memory m = h.workerModel(id);
            vm.assertEq(w.stake, m.stake, "workerAccounting: stake = deposits - slashes - withdrawals");
            vm.assertEq(uint256(w.status), uint256(m.status), "workerAccounting: status as modelled");
            stakes += w.stake;
        }
        vm.assertEq(address(workers).balance, stakes, "workerAccounting: registry holds exactly the stakes");
    }

    /// The market's job records are what the rules say (state, since, worker, terms).
    function _checkJobsMatchModel(Scan memory s) internal view {
        vm.assertEq(market.jobCount(), s.n, "jobsMatchModel: job count");
        for (uint256 i; i < s.n; ++i) {
            vm.assertEq(uint256(s.jobs[i].state), uint256(s.model[i].state), "jobsMatchModel: state");
            vm.assertEq(s.jobs[i].since, s.model[i].since, "jobsMatchModel: since");
            vm.assertEq(s.jobs[i].workerId, s.model[i].workerId, "jobsMatchModel: worker");
            // The documented terms hash: the first 22 bytes of keccak256(abi.encode(terms)).
            vm.assertTrue(
                s.jobs[i].termsHash == bytes22(keccak256(abi.encode(s.terms[i]))), "jobsMatchModel: terms hash"
            );
        }
    }

    /// No worker's stake ever dropped in a call about a job it was never granted; the slashing end state
    /// (Refunded) is only ever reached by a worker that was granted the job.
    function _checkNoSlashWithoutGrant(Scan memory s) internal view {
        vm.assertEq(h.slashesWithoutGrant(), 0, "noSlashWithoutGrant: a worker that never got a grant was slashed");
        for (uint256 i; i < s.n; ++i) {
            if (s.jobs[i].state == IJobMarket.JobState.Refunded) {
                vm.assertTrue(s.granted[i], "noSlashWithoutGrant: refunded (slashed) without a grant");
            }
        }
    }

    /// Every live job has a way out that needs no silent party: a Disputed/FailureDisputed job is moved by
    /// finalize once its deadline passed; Submitted/FailureClaimed by finalize after the challenge window;
    /// Running by reclaim after the run window; Assigned by timeoutGrant after the grant timeout; Open by the
    /// client's cancel. Each is tried at the first second it is allowed, by a stranger, and rolled back.
    function _checkEveryLiveJobCanBeMoved(Scan memory s) internal {
        address stranger = h.stranger();
        uint256 disputeWindow = market.disputeWindow();
        uint256 grantTimeout = market.grantTimeout();
        for (uint256 i; i < s.n; ++i) {
            uint256 jobId = i + 1;
            IJobMarket.JobView memory v = s.jobs[i];
            IJobMarket.JobTerms memory t = s.terms[i];
            address caller = stranger;
            uint256 when;
            bytes memory data;
            if (v.state == IJobMarket.JobState.Disputed || v.state == IJobMarket.JobState.FailureDisputed) {
                when = uint256(v.since) + disputeWindow + 1;
                data = abi.encodeCall(market.finalize, (jobId, t));
            } else if (v.state == IJobMarket.JobState.Submitted || v.state == IJobMarket.JobState.FailureClaimed) {
                when = uint256(v.since) + t.challengeWindow + 1;
                data = abi.encodeCall(market.finalize, (jobId, t));
            } else if (v.state == IJobMarket.JobState.Running) {
                when = uint256(v.since) + t.runTime + 1;
                data = abi.encodeCall(market.reclaim, (jobId, t));
            } else if (v.state == IJobMarket.JobState.Assigned) {
                when = uint256(v.since) + grantTimeout + 1;
                data = abi.encodeCall(market.timeoutGrant, (jobId, t));
            } else if (v.state == IJobMarket.JobState.Open) {
                caller = t.client;
                data = abi.encodeCall(market.cancel, (jobId, t));
            } else {
                continue;
            }
            if (when < block.timestamp) when = block.timestamp;
            try this.probe(caller, when, data) {
                revert("probe returned");
            } catch (bytes memory err) {
                if (bytes4(err) != ProbeMoved.selector) {
                    _fail(jobId, v.state, err);
                }
            }
        }
    }

    /// @dev Reads the market's job records and credits in one multicall, and the model in one call.
    function _scan() internal returns (Scan memory s) {
        (s.terms, s.model, s.granted) = h.jobsSnapshot();
        s.n = s.terms.length;
        s.accounts = h.accounts();
        uint256 a = s.accounts.length;
        bytes[] memory calls = new bytes[](s.n + 2 * a);
        for (uint256 i; i < s.n; ++i) {
            calls[i] = abi.encodeCall(market.getJob, (i + 1));
        }
        for (uint256 i; i < a; ++i) {
            calls[s.n + i] = abi.encodeCall(market.credits, (address(0), s.accounts[i]));
            calls[s.n + a + i] = abi.encodeCall(market.credits, (address(token), s.accounts[i]));
        }
        bytes[] memory ret = market.multicall(calls);
        s.jobs = new IJobMarket.JobView[](s.n);
        s.ethCredits = new uint256[](a);
        s.tokenCredits = new uint256[](a);
        for (uint256 i; i < s.n; ++i) {
            s.jobs[i] = abi.decode(ret[i], (IJobMarket.JobView));
        }
        for (uint256 i; i < a; ++i) {
            s.ethCredits[i] = abi.decode(ret[s.n + i], (uint256));
            s.tokenCredits[i] = abi.decode(ret[s.n + a + i], (uint256));
        }
    }

    // ================================================================ helpers

    /// @dev Makes one call at time `when` and always reverts, so nothing it did stays: with {ProbeMoved} when the
    ///      call went through, else with the call's own revert data.
    function probe(address caller, uint256 when, bytes calldata data) external {
        require(msg.sender == address(this), "probe is internal");
        uint256 before = block.timestamp;
        vm.warp(when);
        vm.prank(caller);
        (bool ok, bytes memory ret) = address(market).call(data);
        vm.warp(before);
        if (ok) revert ProbeMoved();
        assembly ("memory-safe") {
            revert(add(ret, 0x20), mload(ret))
        }
    }

    function _fail(uint256 jobId, IJobMarket.JobState s, bytes memory err) internal pure {
        revert(
            string.concat(
                "everyLiveJobCanBeMoved: job ",
                _str(jobId),
                " in state ",
                _str(uint256(s)),
                " cannot be moved: ",
                _hex(err)
            )
        );
    }

    function _holds(IJobMarket.JobState s) internal pure returns (bool) {
        return s >= IJobMarket.JobState.Assigned && s <= IJobMarket.JobState.FailureDisputed;
    }

    function _str(uint256 v) internal pure returns (string memory) {
        if (v == 0) return "0";
        bytes memory b;
        while (v != 0) {
            b = abi.encodePacked(bytes1(uint8(48 + v % 10)), b);
            v /= 10;
        }
        return string(b);
    }

    function _hex(bytes memory data) internal pure returns (string memory) {
        bytes memory out = new bytes(2 + data.length * 2);
        out[0] = "0";
        out[1] = "x";
        bytes16 digits = "0123456789abcdef";
        for (uint256 i; i < data.length; ++i) {
            out[2 + 2 * i] = digits[uint8(data[i]) >> 4];
            out[3 + 2 * i] = digits[uint8(data[i]) & 15];
        }
        return string(out);
    }
}
