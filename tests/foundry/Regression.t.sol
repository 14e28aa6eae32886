// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MarketFixture} from "./utils/Fixture.sol";
import {Vm} from "./utils/Vm.sol";
import {FeeToken} from "./utils/FeeToken.sol";
import {SquatterOperator, RejectingWallet} from "./utils/Actors.sol";
import {JobMarket} from "../../contracts/JobMarket.sol";
import {WorkerRegistry} from "../../contracts/WorkerRegistry.sol";
import {TestToken} from "../../contracts/test/TestToken.sol";
import {TestSmartWallet} from "../../contracts/test/TestSmartWallet.sol";
import {IJobMarket} from "../../contracts/interfaces/IJobMarket.sol";
import {IWorkerRegistry} from "../../contracts/interfaces/IWorkerRegistry.sol";
import {Attestation} from "../../contracts/libraries/AttestationLib.sol";

/// @notice One test (or a few) per v1 exploit sequence: each replays the sequence against v2 and asserts that
///         the exploit is now impossible (the revert, by its custom error and arguments) or ends safely.
contract RegressionTest is MarketFixture {
    // ================================================================ 1. slashing an innocent worker

    /// v1: the client, who also owns the dataset, sat on the grant and granted when little time was left, then
    /// reclaimed and slashed the worker. v2: a grant that leaves less than `runTime` reverts; the job can only
    /// expire without a slash.
    function test_seq1_lateGrantRevertsAndExpiryDoesNotSlash() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _clientOwnedJob();
        _assign(jobId, t);
        uint256 latest = uint256(t.deadline) - t.runTime;

        vm.warp(latest + 1);
        vm.prank(client);
        vm.expectRevert(_err(IJobMarket.JobTooLateToStart.selector, jobId, latest));
        market.grantAccess(jobId, t, hex"01");

        market.reclaim(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Expired, "expired");
        vm.assertEq(_stake(workerId), STAKE, "worker not slashed");
        vm.assertEq(workers.lockedOf(workerId), 0, "collateral released");
        vm.assertEq(_active(workerId), 0, "job released");
        vm.assertEq(market.credits(address(0), client), AMOUNT, "client gets the escrow only, no collateral");
    }

    /// A grant at the last moment still gives the worker its whole run time: reclaim cannot fire before
    /// grant + runTime, and a result at exactly that second is accepted.
    function test_seq1_grantInTimeGivesFullRunTime() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _clientOwnedJob();
        _assign(jobId, t);
        uint256 latest = uint256(t.deadline) - t.runTime;
        vm.warp(latest);

        vm.recordLogs();
        vm.prank(client);
        market.grantAccess(jobId, t, hex"01");
        uint256 dueAt = _dueAtFromLogs();
        vm.assertEq(dueAt, latest + t.runTime, "run window = grant + runTime");
        vm.assertEq(dueAt, t.deadline, "which still fits the deadline");

        vm.warp(dueAt);
        vm.expectRevert(_err(IJobMarket.JobNotExpirable.selector, jobId, dueAt));
        market.reclaim(jobId, t);

        _submit(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Submitted, "result accepted on the last second");
        vm.assertEq(_stake(workerId), STAKE, "not slashed");
    }

    // ================================================================ 2. free data collection

    /// v1: a worker took the data and reported a failure late, walking away unslashed. v2: a failure report after
    /// the run window reverts and reclaim slashes.
    function test_seq2_lateFailureReportRevertsAndReclaimSlashes() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        uint256 dueAt = _since(jobId) + t.runTime;
        vm.warp(dueAt + 1);

        vm.prank(operator);
        vm.expectRevert(_err(IJobMarket.JobRunTimeOver.selector, jobId, dueAt));
        market.reportFailure(jobId, t, 1, bytes32(0));
        vm.prank(signer);
        vm.expectRevert(_err(IJobMarket.JobRunTimeOver.selector, jobId, dueAt));
        market.reportFailure(jobId, t, 1, bytes32(0));

        uint256 collateral = COLLATERAL * t.gpuCount;
        vm.prank(stranger);
        market.reclaim(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Expired, "expired");
        vm.assertEq(_stake(workerId), STAKE - collateral, "slashed by the job's collateral");
        vm.assertEq(workers.lockedOf(workerId), 0, "nothing left locked");
        vm.assertEq(market.credits(address(0), client), AMOUNT + collateral, "client gets escrow + collateral");
        vm.assertEq(address(market).balance, AMOUNT + collateral, "and the market holds it");
    }

    /// A failure report in time is not free either: the client disputes it (with the bond) and the arbiter can
    /// slash.
    function test_seq2_timelyFailureReportCanBeDisputedAndSlashed() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        vm.warp(_since(jobId) + t.runTime);
        vm.prank(signer);
        market.reportFailure(jobId, t, 2, keccak256("cuda"));
        _assertState(jobId, IJobMarket.JobState.FailureClaimed, "claim recorded");

        _dispute(jobId, t);
        _assertState(jobId, IJobMarket.JobState.FailureDisputed, "claim disputed");
        vm.prank(arbiter);
        market.resolveDispute(jobId, t, false);

        uint256 collateral = COLLATERAL * t.gpuCount;
        _assertState(jobId, IJobMarket.JobState.Refunded, "refunded");
        vm.assertEq(_stake(workerId), STAKE - collateral, "slashed");
        vm.assertEq(market.credits(address(0), client), AMOUNT + collateral + BOND, "escrow, collateral, bond back");
        vm.assertEq(market.credits(address(0), operator), 0, "operator gets nothing");
    }

    // ================================================================ 3. killing an open job

    /// v1: an assigned worker could end someone else's job by reporting a failure before the grant. v2: the job
    /// reopens and stays fundable and assignable.
    function test_seq3_failureBeforeGrantReopensTheJob() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.prank(operator);
        market.reportFailure(jobId, t, 7, keccak256("nope"));

        _assertState(jobId, IJobMarket.JobState.Open, "reopened, not ended");
        vm.assertEq(market.credits(address(0), client), 0, "escrow not refunded");
        vm.assertEq(address(market).balance, AMOUNT, "escrow still held");
        vm.assertEq(_active(workerId), 0, "worker released");
        vm.assertEq(workers.lockedOf(workerId), 0, "collateral released");

        // Another worker takes it at once and the job runs to the end.
        address op2 = makeAddr("operator2");
        uint32 other = _registerWorker(op2, makeAddr("worker2"), signer, STAKE);
        vm.prank(op2);
        market.assign(jobId, t, other);
        _grant(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Running, "runs with the new worker");
    }

    // ================================================================ 4. squatting

    /// v1: an operator contract timed out its own grant and retook the job in the same transaction, holding it
    /// forever. v2: the same worker is barred for one grant timeout.
    function test_seq4_timeoutAndRetakeInOneTxReverts() public {
        SquatterOperator squatter = new SquatterOperator(market, workers);
        uint32 sqId = squatter.register{value: STAKE}(makeAddr("sqWorker"), _params(signer));
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        squatter.assign(jobId, t, sqId);
        vm.warp(_since(jobId) + GRANT_TIMEOUT + 1);

        vm.expectRevert(_err(IJobMarket.JobRetakeTooSoon.selector, jobId, block.timestamp + GRANT_TIMEOUT));
        squatter.timeoutAndRetake(jobId, t, sqId);
        _assertState(jobId, IJobMarket.JobState.Assigned, "whole tx reverted");

        // Reopened on its own, the job goes to somebody else.
        market.timeoutGrant(jobId, t);
        _assign(jobId, t);
        vm.assertEq(market.getJob(jobId).workerId, workerId, "another worker took it");
    }

    function test_seq4_clientCancelsAnAssignedJob() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotClient.selector, jobId, operator));
        market.cancel(jobId, t);

        vm.prank(client);
        market.cancel(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Cancelled, "cancelled");
        vm.assertEq(market.credits(address(0), client), AMOUNT, "escrow back");
        vm.assertEq(_active(workerId), 0, "worker released");
        vm.assertEq(workers.lockedOf(workerId), 0, "collateral released");
        vm.assertEq(_stake(workerId), STAKE, "no slash");
    }

    function test_seq4_clientOrDatasetOwnerDropsAnAssignment() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotClientOrOwner.selector, jobId, stranger));
        market.dropAssignment(jobId, t);

        vm.prank(client);
        market.dropAssignment(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Open, "client dropped");
        vm.assertEq(_active(workerId), 0, "worker released");
        // The dropped worker cannot squat right back ...
        vm.prank(operator);
        vm.expectRevert(_err(IJobMarket.JobRetakeTooSoon.selector, jobId, block.timestamp + GRANT_TIMEOUT));
        market.assign(jobId, t, workerId);

        // ... another can, and the dataset owner may drop it too.
        address op2 = makeAddr("operator2");
        uint32 other = _registerWorker(op2, makeAddr("worker2"), signer, STAKE);
        vm.prank(op2);
        market.assign(jobId, t, other);
        vm.prank(dataOwner);
        market.dropAssignment(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Open, "owner dropped");
        vm.assertEq(_active(other), 0, "second worker released");
    }

    // ================================================================ 5. fee-on-transfer token

    /// v1 booked the requested amount while the market received less, so the last payee of the token went
    /// unpaid. v2 refuses a token whose transfer arrives short.
    function test_seq5_feeOnTransferTokenIsRefused() public {
        FeeToken fee = new FeeToken();
        fee.mint(client, 1_000 ether);
        vm.prank(client);
        fee.approve(address(market), type(uint256).max);

        IJobMarket.JobRequest memory r = _request(address(fee), 100 ether);
        vm.prank(client);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.JobTokenShortfall.selector, address(fee), 100 ether, 99 ether)
        );
        market.postJob(r);
        vm.assertEq(market.jobCount(), 0, "no job");
        vm.assertEq(fee.balanceOf(address(market)), 0, "no tokens kept");
    }

    function test_seq5_normalTokenWorksAndStaysSolvent() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _post(client, _request(address(token), 100 ether));
        vm.assertEq(token.balanceOf(address(market)), 100 ether, "escrow arrived in full");
        _assign(jobId, t);
        _grant(jobId, t);
        _submit(jobId, t);
        vm.warp(block.timestamp + CHALLENGE + 1);
        market.finalize(jobId, t);
        vm.assertEq(market.credits(address(token), operator), 100 ether, "operator credited in the token");
        vm.assertEq(token.balanceOf(address(market)), market.credits(address(token), operator), "backed");
        vm.prank(operator);
        market.withdraw(address(token));
        vm.assertEq(token.balanceOf(operator), 100 ether, "paid");
        vm.assertEq(token.balanceOf(address(market)), 0, "nothing owed, nothing held");
    }

    // ================================================================ 6. token-id exhaustion

    /// v1 gave every token a small id in a registry that anyone could fill. v2 names tokens by address: a
    /// thousand fresh tokens post fine, and a real token still works after them.
    function test_seq6_thousandFreshTokensThenARealOne() public {
        bytes memory code = address(token).code;
        for (uint256 i; i < 1_000; ++i) {
            TestToken fresh = TestToken(address(uint160(0xF00D0000 + i)));
            vm.etch(address(fresh), code);
            fresh.mint(client, 1 ether);
            vm.prank(client);
            fresh.approve(address(market), 1 ether);
            (uint256 id,) = _post(client, _request(address(fresh), 1 ether));
            vm.assertEq(id, i + 1, "sequential ids");
            vm.assertEq(fresh.balanceOf(address(market)), 1 ether, "escrow held per token");
        }
        (uint256 jobId, IJobMarket.JobTerms memory t) = _post(client, _request(address(token), 5 ether));
        vm.assertEq(jobId, 1_001, "1001st job");
        _assign(jobId, t);
        _grant(jobId, t);
        _submit(jobId, t);
        vm.prank(client);
        market.accept(jobId, t);
        vm.prank(operator);
        market.withdraw(address(token));
        vm.assertEq(token.balanceOf(operator), 5 ether, "real token paid out");
    }

    // ================================================================ 7. disputes that end

    /// v1: a dispute with a silent arbiter locked the escrow forever. v2: after the dispute window anyone applies
    /// the default (worker paid, bond to its operator) and the arbiter can no longer decide.
    function test_seq7_silentArbiterDefaultsToTheWorker() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _submitted();
        _dispute(jobId, t);
        uint256 resolveBy = _since(jobId) + DISPUTE_WINDOW;

        vm.warp(resolveBy);
        vm.expectRevert(_err(IJobMarket.JobDisputeDeadlineNotPassed.selector, jobId, resolveBy));
        market.finalize(jobId, t);

        vm.warp(resolveBy + 1);
        vm.prank(arbiter);
        vm.expectRevert(_err(IJobMarket.JobDisputeDeadlinePassed.selector, jobId, resolveBy));
        market.resolveDispute(jobId, t, false);

        vm.prank(stranger);
        market.finalize(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Settled, "settled by default");
        vm.assertEq(market.credits(address(0), operator), AMOUNT + BOND, "worker paid, bond to operator");
        vm.assertEq(market.credits(address(0), client), 0, "client gets nothing back");
        vm.assertEq(_stake(workerId), STAKE, "no slash");
        vm.assertEq(address(market).balance, AMOUNT + BOND, "backed");
    }

    function test_seq7_silentArbiterOnAFailureClaimDefaultsToFailed() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _failureClaimed();
        _dispute(jobId, t);
        vm.warp(_since(jobId) + DISPUTE_WINDOW + 1);
        market.finalize(jobId, t);
        _assertState(jobId, IJobMarket.JobState.Failed, "failure claim stands");
        vm.assertEq(market.credits(address(0), client), AMOUNT, "client refunded");
        vm.assertEq(market.credits(address(0), operator), BOND, "bond to the operator");
        vm.assertEq(_stake(workerId), STAKE, "no slash");
    }

    function test_seq7_disputeNeedsTheExactBond() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _submitted();
        vm.prank(client);
        vm.expectRevert(_err(IJobMarket.JobWrongPayment.selector, BOND, 0));
        market.dispute(jobId, t, bytes32(0));
        vm.prank(client);
        vm.expectRevert(_err(IJobMarket.JobWrongPayment.selector, BOND, BOND - 1));
        market.dispute{value: BOND - 1}(jobId, t, bytes32(0));
        _assertState(jobId, IJobMarket.JobState.Submitted, "not disputed");
    }

    // ================================================================ 8. leaving mid-job

    /// v1 inferred "holds jobs" from locked collateral, so with zero collateral a worker could take its stake and
    /// leave mid-job. v2 counts jobs.
    function test_seq8_zeroCollateralWorkerCannotLeaveMidJob() public {
        _deployZeroCollateral();
        (uint256 jobId, IJobMarket.JobTerms memory t) = _postDefault();
        _assign(jobId, t);
        vm.assertEq(workers.lockedOf(workerId), 0, "nothing locked");
        vm.assertEq(_active(workerId), 1, "but one job held");

        vm.prank(operator);
        workers.requestExit(workerAddr);
        vm.warp(block.timestamp + UNBONDING + 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IWorkerRegistry.WorkerHoldsJobs.selector, workerAddr, 1));
        workers.withdrawStake(workerAddr);

        // Still Running after the exit request: the worker must finish.
        _grant(jobId, t);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IWorkerRegistry.WorkerHoldsJobs.selector, workerAddr, 1));
        workers.withdrawStake(workerAddr);
        _submit(jobId, t);
        vm.prank(client);
        market.accept(jobId, t);

        uint256 before = operator.balance;
        vm.prank(operator);
        workers.withdrawStake(workerAddr);
        vm.assertEq(operator.balance - before, 1 ether, "stake paid once no job is held");
    }

    function test_seq8_reRegistrationGetsANewIdAndOldJobsKeepTheOldRecord() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _submitted();
        vm.prank(client);
        market.accept(jobId, t);
        vm.prank(operator);
        workers.requestExit(workerAddr);
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(operator);
        workers.withdrawStake(workerAddr);

        address newSigner = makeAddr("newSigner");
        uint32 newId = _registerWorker(operator, workerAddr, newSigner, 2 ether);
        vm.assertNotEq(newId, workerId, "new id");
        vm.assertEq(workers.idOf(workerAddr), newId, "address now maps to the new id");
        vm.assertEq(market.getJob(jobId).workerId, workerId, "old job names the old id");
        IWorkerRegistry.Worker memory old = workers.getWorkerById(workerId);
        vm.assertEq(uint256(old.status), uint256(IWorkerRegistry.WorkerStatus.Exited), "old record exited");
        vm.assertEq(old.signer, signer, "old record keeps its signer");
        vm.assertEq(old.stake, 0, "old record has no stake");
        vm.assertEq(_stake(newId), 2 ether, "new record has the new stake");
        vm.assertEq(old.activeJobs, 0, "no job inherited");
    }

    function test_seq8_zeroCollateralNeedsExplicitOptIn() public {
        address predicted = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 1);
        WorkerRegistry reg = new WorkerRegistry(predicted, UNBONDING);
        vm.expectRevert(IJobMarket.JobMarketZeroCollateral.selector);
        new JobMarket(admin, arbiter, reg, datasets, 0, GRANT_TIMEOUT, DISPUTE_WINDOW, BOND, false);
        // The same deployment with the opt-in goes through (the revert above is about the zero alone). The failed
        // CREATE used up a nonce, so predict again for a fresh registry.
        predicted = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 1);
        reg = new WorkerRegistry(predicted, UNBONDING);
        JobMarket ok = new JobMarket(admin, arbiter, reg, datasets, 0, GRANT_TIMEOUT, DISPUTE_WINDOW, BOND, true);
        vm.assertEq(address(ok), predicted, "deployed where the registry expects it");
        vm.assertEq(ok.collateralPerGpu(), 0, "zero collateral");
    }

    // ================================================================ 9. signer rotation

    /// v1 checked the signer at settlement time, so a rotation voided (or revived) results inconsistently. v2:
    /// the signer at submission counts and `ResultSubmitted` logs it.
    function test_seq9_oldSignerIsVoidAfterRotation() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        vm.warp(block.timestamp + 1 hours);
        Attestation memory a = _attestation(jobId, workerAddr);
        bytes32 digest = market.attestationDigest(a);
        bytes memory oldSig = _sign(signerPk, digest);

        uint256 newPk = keyOf("rotated");
        address newSigner = makeAddr("rotated");
        vm.prank(operator);
        workers.update(workerAddr, _params(newSigner));

        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidAttestationSignature.selector, jobId, newSigner));
        market.submitResult(jobId, t, a, oldSig);

        vm.recordLogs();
        market.submitResult(jobId, t, a, _sign(newPk, digest));
        (address logged, bytes32 loggedDigest) = _resultSignerFromLogs();
        vm.assertEq(logged, newSigner, "ResultSubmitted logs the signer that counted");
        vm.assertEq(loggedDigest, digest, "and the digest");
    }

    /// Only the registered signer counts: not the worker address's own key, not the operator's.
    function test_seq9_onlyTheRegisteredSignerCounts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _running();
        vm.warp(block.timestamp + 1 hours);
        Attestation memory a = _attestation(jobId, workerAddr);
        bytes32 digest = market.attestationDigest(a);
        bytes memory err = abi.encodeWithSelector(IJobMarket.JobInvalidAttestationSignature.selector, jobId, signer);
        vm.expectRevert(err);
        market.submitResult(jobId, t, a, _sign(keyOf("worker"), digest));
        vm.expectRevert(err);
        market.submitResult(jobId, t, a, _sign(keyOf("operator"), digest));
        market.submitResult(jobId, t, a, _sign(signerPk, digest));
        _assertState(jobId, IJobMarket.JobState.Submitted, "the signer's attestation is accepted");
    }

    function test_seq9_eip1271SignerThatAccepts() public {
        uint256 ownerPk = keyOf("walletOwner");
        TestSmartWallet wallet = new TestSmartWallet(vm.addr(ownerPk));
        (uint256 jobId, IJobMarket.JobTerms memory t, address w) = _runningWithSigner(address(wallet));
        Attestation memory a = _attestation(jobId, w);
        bytes32 digest = market.attestationDigest(a);

        // The wallet says no to a key that is not its owner's.
        bytes memory wrong = _sign(signerPk, digest);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.JobInvalidAttestationSignature.selector, jobId, address(wallet))
        );
        market.submitResult(jobId, t, a, wrong);

        vm.recordLogs();
        market.submitResult(jobId, t, a, _sign(ownerPk, digest));
        (address logged,) = _resultSignerFromLogs();
        vm.assertEq(logged, address(wallet), "contract signer logged");
        _assertState(jobId, IJobMarket.JobState.Submitted, "accepted via EIP-1271");
    }

    function test_seq9_eip1271SignerThatSaysNo() public {
        RejectingWallet wallet = new RejectingWallet();
        (uint256 jobId, IJobMarket.JobTerms memory t, address w) = _runningWithSigner(address(wallet));
        Attestation memory a = _attestation(jobId, w);
        bytes memory sig = _sign(signerPk, market.attestationDigest(a));
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.JobInvalidAttestationSignature.selector, jobId, address(wallet))
        );
        market.submitResult(jobId, t, a, sig);
        _assertState(jobId, IJobMarket.JobState.Running, "still running");
    }

    // ================================================================ helpers

    function _clientOwnedJob() internal returns (uint256 jobId, IJobMarket.JobTerms memory t) {
        IJobMarket.JobRequest memory r = _request(address(0), AMOUNT);
        r.datasetId = _registerDataset(client);
        (jobId, t) = _post(client, r);
        vm.assertEq(t.datasetOwner, t.client, "client owns the dataset");
    }

    function _deployZeroCollateral() internal {
        _deploy(0, true);
        datasetId = _registerDataset(dataOwner);
        keyId = _registerKey(client);
        workerId = _registerWorker(operator, workerAddr, signer, 1 ether);
    }

    function _runningWithSigner(address signer_)
        internal
        returns (uint256 jobId, IJobMarket.JobTerms memory t, address w)
    {
        address op = makeAddr("walletOperator");
        w = makeAddr("walletWorker");
        uint32 id = _registerWorker(op, w, signer_, STAKE);
        (jobId, t) = _postDefault();
        vm.prank(op);
        market.assign(jobId, t, id);
        _grant(jobId, t);
        vm.warp(block.timestamp + 1 hours);
    }

    function _dueAtFromLogs() internal returns (uint256) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(market) && logs[i].topics[0] == IJobMarket.AccessGranted.selector) {
                (uint40 dueAt,) = abi.decode(logs[i].data, (uint40, bytes));
                return dueAt;
            }
        }
        revert("no AccessGranted");
    }

    function _resultSignerFromLogs() internal returns (address signer_, bytes32 digest) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(market) && logs[i].topics[0] == IJobMarket.ResultSubmitted.selector) {
                (signer_,,,,,) = abi.decode(logs[i].data, (address, bytes32, bytes32, bytes32, uint64, uint64));
                return (signer_, logs[i].topics[3]);
            }
        }
        revert("no ResultSubmitted");
    }
}
