// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MarketFixture} from "./utils/Fixture.sol";
import {IJobMarket} from "../../contracts/interfaces/IJobMarket.sol";

/// @notice Both sides of every time limit. The rule (IJobMarket): `t <= limit` is in time for the party that
///         acts in time, `t > limit` is late for the party that acts on lateness. Each pair pins one limit: the
///         "at" test is the last second of one side, the "after" (or "before") test the first of the other.
contract BoundariesTest is MarketFixture {
    // ================================================================ post: deadline >= now + runTime

    function test_post_deadlineExactlyOneRunAway_succeeds() public {
        IJobMarket.JobRequest memory r = _request(address(0), AMOUNT);
        r.deadline = uint40(block.timestamp + r.runTime);
        (uint256 jobId,) = _post(client, r);
        _assertState(jobId, IJobMarket.JobState.Open, "posted");
    }

    function test_post_deadlineOneSecondShort_reverts() public {
        IJobMarket.JobRequest memory r = _request(address(0), AMOUNT);
        r.deadline = uint40(block.timestamp + r.runTime - 1);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidRequest.selector, "deadline"));
        market.postJob{value: AMOUNT}(r);
    }

    // ================================================================ deadline - runTime: assign, grant, reclaim(Assigned)

    function test_assign_atLatestStart_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        vm.warp(_latestStart(t));
        _assign(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Assigned, "assigned on the last second");
    }

    function test_assign_afterLatestStart_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        vm.warp(_latestStart(t) + 1);
        vm.prank(operator);
        vm.expectRevert(_err(IJobMarket.JobTooLateToStart.selector, jobId, _latestStart(t)));
        market.assign(jobId, t, workerId);
    }

    function test_grant_atLatestStart_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.warp(_latestStart(t));
        _grant(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Running, "granted on the last second");
        vm.assertEq(_since(jobId) + t.runTime, t.deadline, "full run window, ending at the deadline");
    }

    function test_grant_afterLatestStart_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.warp(_latestStart(t) + 1);
        vm.prank(dataOwner);
        vm.expectRevert(_err(IJobMarket.JobTooLateToStart.selector, jobId, _latestStart(t)));
        market.grantAccess(jobId, t, hex"01");
    }

    function test_reclaimAssigned_atLatestStart_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.warp(_latestStart(t));
        vm.expectRevert(_err(IJobMarket.JobNotExpirable.selector, jobId, _latestStart(t)));
        market.reclaim(jobId, t);
    }

    function test_reclaimAssigned_afterLatestStart_expiresWithoutSlash() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.warp(_latestStart(t) + 1);
        market.reclaim(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Expired, "expired");
        vm.assertEq(_stake(workerId), STAKE, "no slash");
        vm.assertEq(_active(workerId), 0, "released");
        vm.assertEq(market.credits(address(0), client), AMOUNT, "escrow back");
    }

    // ================================================================ grant + runTime: submit, reportFailure, reclaim(Running)

    function test_submit_atDue_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        vm.warp(_due(jobId, t));
        _submit(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Submitted, "submitted on the last second");
    }

    function test_submit_afterDue_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        uint256 due = _due(jobId, t);
        vm.warp(due + 1);
        vm.expectRevert(_err(IJobMarket.JobRunTimeOver.selector, jobId, due));
        this.submitAsRelayer(jobId, t);
    }

    function test_reportFailure_atDue_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        vm.warp(_due(jobId, t));
        vm.prank(operator);
        market.reportFailure(jobId, t, 1, bytes32(0));
        _assertState(jobId, IJobMarket.JobState.FailureClaimed, "claimed on the last second");
    }

    function test_reportFailure_afterDue_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        uint256 due = _due(jobId, t);
        vm.warp(due + 1);
        vm.prank(operator);
        vm.expectRevert(_err(IJobMarket.JobRunTimeOver.selector, jobId, due));
        market.reportFailure(jobId, t, 1, bytes32(0));
    }

    function test_reclaimRunning_atDue_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        uint256 due = _due(jobId, t);
        vm.warp(due);
        vm.expectRevert(_err(IJobMarket.JobNotExpirable.selector, jobId, due));
        market.reclaim(jobId, t);
    }

    function test_reclaimRunning_afterDue_slashes() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        vm.warp(_due(jobId, t) + 1);
        market.reclaim(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Expired, "expired");
        vm.assertEq(_stake(workerId), STAKE - COLLATERAL * t.gpuCount, "slashed");
    }

    // ================================================================ since + grantTimeout: timeoutGrant, retake

    function test_timeoutGrant_atTimeout_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        uint256 timeoutAt = _since(jobId) + GRANT_TIMEOUT;
        vm.warp(timeoutAt);
        vm.expectRevert(_err(IJobMarket.JobGrantTimeoutNotReached.selector, jobId, timeoutAt));
        market.timeoutGrant(jobId, t);
    }

    function test_timeoutGrant_afterTimeout_reopens() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.warp(_since(jobId) + GRANT_TIMEOUT + 1);
        vm.prank(stranger);
        market.timeoutGrant(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Open, "reopened");
        vm.assertEq(_active(workerId), 0, "worker released");
    }

    /// The bar lasts `grantTimeout` seconds from the reopening: retaking one second before its end reverts ...
    function test_retake_beforeBarEnds_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _reopenedByTimeout();
        uint256 until = _since(jobId) + GRANT_TIMEOUT;
        vm.warp(until - 1);
        vm.prank(operator);
        vm.expectRevert(_err(IJobMarket.JobRetakeTooSoon.selector, jobId, until));
        market.assign(jobId, t, workerId);
    }

    /// ... and at `since + grantTimeout` the same worker may take it again.
    function test_retake_atBarEnd_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _reopenedByTimeout();
        vm.warp(_since(jobId) + GRANT_TIMEOUT);
        _assign(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Assigned, "retaken");
    }

    function test_retake_byAnotherWorker_isNotBarred() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _reopenedByTimeout();
        address op2 = makeAddr("operator2");
        uint32 other = _registerWorker(op2, makeAddr("worker2"), signer, STAKE);
        vm.prank(op2);
        market.assign(jobId, t, other);
        _assertState(jobId, IJobMarket.JobState.Assigned, "another worker takes it at once");
    }

    // ================================================================ since + challengeWindow: dispute, finalize

    function test_disputeResult_atWindowEnd_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _submitted();
        vm.warp(_since(jobId) + t.challengeWindow);
        _dispute(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Disputed, "disputed on the last second");
    }

    function test_disputeResult_afterWindow_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _submitted();
        uint256 closes = _since(jobId) + t.challengeWindow;
        vm.warp(closes + 1);
        vm.prank(client);
        vm.expectRevert(_err(IJobMarket.JobChallengeWindowClosed.selector, jobId, closes));
        market.dispute{value: BOND}(jobId, t, bytes32(0));
    }

    function test_disputeFailure_atWindowEnd_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _failureClaimed();
        vm.warp(_since(jobId) + t.challengeWindow);
        _dispute(jobId, t);
        _assertState(jobId, IJobMarket.JobState.FailureDisputed, "disputed on the last second");
    }

    function test_disputeFailure_afterWindow_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _failureClaimed();
        uint256 closes = _since(jobId) + t.challengeWindow;
        vm.warp(closes + 1);
        vm.prank(client);
        vm.expectRevert(_err(IJobMarket.JobChallengeWindowClosed.selector, jobId, closes));
        market.dispute{value: BOND}(jobId, t, bytes32(0));
    }

    function test_finalizeResult_atWindowEnd_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _submitted();
        uint256 closes = _since(jobId) + t.challengeWindow;
        vm.warp(closes);
        vm.expectRevert(_err(IJobMarket.JobChallengeWindowOpen.selector, jobId, closes));
        market.finalize(jobId, t);
    }

    function test_finalizeResult_afterWindow_settles() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _submitted();
        vm.warp(_since(jobId) + t.challengeWindow + 1);
        market.finalize(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Settled, "settled");
        vm.assertEq(market.credits(address(0), operator), AMOUNT, "worker paid");
    }

    function test_finalizeFailure_atWindowEnd_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _failureClaimed();
        uint256 closes = _since(jobId) + t.challengeWindow;
        vm.warp(closes);
        vm.expectRevert(_err(IJobMarket.JobChallengeWindowOpen.selector, jobId, closes));
        market.finalize(jobId, t);
    }

    function test_finalizeFailure_afterWindow_fails() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _failureClaimed();
        vm.warp(_since(jobId) + t.challengeWindow + 1);
        market.finalize(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Failed, "failed");
        vm.assertEq(market.credits(address(0), client), AMOUNT, "client refunded");
        vm.assertEq(_stake(workerId), STAKE, "no slash");
    }

    // ================================================================ since + disputeWindow: resolveDispute, finalize

    function test_resolve_atDeadline_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputed(false);
        vm.warp(_since(jobId) + DISPUTE_WINDOW);
        vm.prank(arbiter);
        market.resolveDispute(jobId, t, true);
        _assertState(jobId, IJobMarket.JobState.Settled, "resolved on the last second");
    }

    function test_resolve_afterDeadline_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputed(false);
        uint256 by = _since(jobId) + DISPUTE_WINDOW;
        vm.warp(by + 1);
        vm.prank(arbiter);
        vm.expectRevert(_err(IJobMarket.JobDisputeDeadlinePassed.selector, jobId, by));
        market.resolveDispute(jobId, t, true);
    }

    function test_resolveFailureDispute_atDeadline_succeeds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputed(true);
        vm.warp(_since(jobId) + DISPUTE_WINDOW);
        vm.prank(arbiter);
        market.resolveDispute(jobId, t, false);
        _assertState(jobId, IJobMarket.JobState.Refunded, "resolved on the last second");
    }

    function test_resolveFailureDispute_afterDeadline_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputed(true);
        uint256 by = _since(jobId) + DISPUTE_WINDOW;
        vm.warp(by + 1);
        vm.prank(arbiter);
        vm.expectRevert(_err(IJobMarket.JobDisputeDeadlinePassed.selector, jobId, by));
        market.resolveDispute(jobId, t, false);
    }

    function test_finalizeDispute_atDeadline_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputed(false);
        uint256 by = _since(jobId) + DISPUTE_WINDOW;
        vm.warp(by);
        vm.expectRevert(_err(IJobMarket.JobDisputeDeadlineNotPassed.selector, jobId, by));
        market.finalize(jobId, t);
    }

    function test_finalizeDispute_afterDeadline_settles() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputed(false);
        vm.warp(_since(jobId) + DISPUTE_WINDOW + 1);
        market.finalize(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Settled, "default outcome");
    }

    function test_finalizeFailureDispute_atDeadline_reverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputed(true);
        uint256 by = _since(jobId) + DISPUTE_WINDOW;
        vm.warp(by);
        vm.expectRevert(_err(IJobMarket.JobDisputeDeadlineNotPassed.selector, jobId, by));
        market.finalize(jobId, t);
    }

    function test_finalizeFailureDispute_afterDeadline_fails() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputed(true);
        vm.warp(_since(jobId) + DISPUTE_WINDOW + 1);
        market.finalize(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Failed, "default outcome");
    }

    // ================================================================ helpers

    /// @dev External so that `expectRevert` applies to the market call inside, not to the helper's own calls.
    function submitAsRelayer(uint256 jobId, IJobMarket.JobTerms calldata t) external {
        _submit(jobId, t);
    }

    function _latestStart(IJobMarket.JobTerms memory t) internal pure returns (uint256) {
        return uint256(t.deadline) - t.runTime;
    }

    function _due(uint256 jobId, IJobMarket.JobTerms memory t) internal view returns (uint256) {
        return _since(jobId) + t.runTime;
    }

    function _reopenedByTimeout() internal returns (uint256 jobId, IJobMarket.JobTerms memory t) {
        (jobId, t) = _postDefault();
        _assign(jobId, t);
        vm.warp(_since(jobId) + GRANT_TIMEOUT + 1);
        market.timeoutGrant(jobId, t);
    }

    function _disputed(bool failure) internal returns (uint256 jobId, IJobMarket.JobTerms memory t) {
        (jobId, t) = failure ? _failureClaimed() : _submitted();
        _dispute(jobId, t);
    }
}

