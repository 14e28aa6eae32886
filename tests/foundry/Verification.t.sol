// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MarketFixture} from "./utils/Fixture.sol";
import {Vm} from "./utils/Vm.sol";
import {IJobMarket} from "../../contracts/interfaces/IJobMarket.sol";

/// @notice Verification by re-execution: the arbiter's key, the owner's verifier grant, and a decision with evidence.
contract VerificationTest is MarketFixture {
    bytes internal constant X25519_KEY = hex"0101010101010101010101010101010101010101010101010101010101010101";

    function _arbiterKey() internal returns (uint32 keyId) {
        vm.prank(arbiter);
        keyId = market.registerClientKey(0, X25519_KEY);
        vm.prank(arbiter);
        market.setArbiterKey(keyId);
    }

    function _disputedResult() internal returns (uint256 jobId, IJobMarket.JobTerms memory t) {
        (jobId, t) = _submitted();
        _dispute(jobId, t);
    }

    function _evidence() internal pure returns (IJobMarket.ReplayEvidence memory e) {
        e = IJobMarket.ReplayEvidence({interval: 3, expected: bytes32(uint256(1)), replayed: bytes32(uint256(2)), reportHash: bytes32(uint256(3))});
    }

    // ---------------------------------------------------------------- the arbiter's key

    function test_setArbiterKey_onlyArbiter() public {
        vm.prank(arbiter);
        uint32 keyId = market.registerClientKey(0, X25519_KEY);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotArbiter.selector, stranger));
        market.setArbiterKey(keyId);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotArbiter.selector, admin));
        market.setArbiterKey(keyId);
        vm.assertEq(market.arbiterKeyId(), 0, "unchanged");
    }

    function test_setArbiterKey_unknownKeyReverts() public {
        uint32 next = market.clientKeyCount() + 1;
        vm.prank(arbiter);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobUnknownClientKey.selector, next));
        market.setArbiterKey(next);
    }

    function test_setArbiterKey_emitsAndStores() public {
        vm.prank(arbiter);
        uint32 keyId = market.registerClientKey(0, X25519_KEY);
        vm.expectEmit(true, false, false, true, address(market));
        emit IJobMarket.ArbiterKeySet(arbiter, keyId);
        vm.prank(arbiter);
        market.setArbiterKey(keyId);
        vm.assertEq(market.arbiterKeyId(), keyId, "stored");
    }

    function test_newArbiterStartsWithoutTheOldKey() public {
        _arbiterKey();
        vm.prank(admin);
        market.setArbiter(stranger);
        vm.assertEq(market.arbiterKeyId(), 0, "the old arbiter's key is cleared");
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        vm.prank(t.datasetOwner);
        vm.expectRevert(IJobMarket.JobNoArbiterKey.selector);
        market.grantVerifier(jobId, t, hex"01");
    }

    // ---------------------------------------------------------------- the verifier grant

    function test_grantVerifier_ownerOfADisputedJob() public {
        uint32 keyId = _arbiterKey();
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        vm.expectEmit(true, true, false, true, address(market));
        emit IJobMarket.VerifierGranted(jobId, arbiter, keyId, hex"0102");
        vm.prank(t.datasetOwner);
        market.grantVerifier(jobId, t, hex"0102");
        _assertState(jobId, IJobMarket.JobState.Disputed, "a grant changes no state");
    }

    function test_grantVerifier_onlyTheDatasetOwner() public {
        _arbiterKey();
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        for (uint256 i; i < 3; ++i) {
            address who = i == 0 ? t.client : i == 1 ? arbiter : operator;
            vm.prank(who);
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotDatasetOwner.selector, jobId, who));
            market.grantVerifier(jobId, t, hex"01");
        }
    }

    function test_grantVerifier_onlyWhileDisputed() public {
        _arbiterKey();
        (uint256 jobId, IJobMarket.JobTerms memory t) = _submitted();
        vm.prank(t.datasetOwner);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidState.selector, jobId, IJobMarket.JobState.Submitted));
        market.grantVerifier(jobId, t, hex"01");
        // a disputed failure claim has no training to replay
        (uint256 failed, IJobMarket.JobTerms memory ft) = _failureClaimed();
        _dispute(failed, ft);
        vm.prank(ft.datasetOwner);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidState.selector, failed, IJobMarket.JobState.FailureDisputed));
        market.grantVerifier(failed, ft, hex"01");
    }

    function test_grantVerifier_emptyKeyReverts() public {
        _arbiterKey();
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        vm.prank(t.datasetOwner);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidRequest.selector, "wrappedKey"));
        market.grantVerifier(jobId, t, "");
    }

    function test_grantVerifier_withoutArbiterKeyReverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        vm.prank(t.datasetOwner);
        vm.expectRevert(IJobMarket.JobNoArbiterKey.selector);
        market.grantVerifier(jobId, t, hex"01");
    }

    // ---------------------------------------------------------------- a decision with evidence

    function test_resolveWithEvidence_againstTheWorker_slashesAndRefunds() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        uint256 stakeBefore = _stake(workerId);
        vm.expectEmit(true, false, false, true, address(market));
        emit IJobMarket.DisputeEvidence(jobId, 3, bytes32(uint256(1)), bytes32(uint256(2)), bytes32(uint256(3)));
        vm.prank(arbiter);
        market.resolveDisputeWithEvidence(jobId, t, false, _evidence());
        _assertState(jobId, IJobMarket.JobState.Refunded, "refunded");
        uint256 slashed = stakeBefore - _stake(workerId);
        vm.assertTrue(slashed > 0, "worker slashed");
        vm.assertEq(market.credits(address(0), t.client), AMOUNT + BOND + slashed, "escrow, bond and the slash to the client");
    }

    function test_resolveWithEvidence_forTheWorker_settles() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        vm.prank(arbiter);
        market.resolveDisputeWithEvidence(jobId, t, true, _evidence());
        _assertState(jobId, IJobMarket.JobState.Settled, "settled");
        vm.assertEq(market.credits(address(0), t.client), 0, "the client gets nothing back");
    }

    function test_resolveWithEvidence_sameRulesAsResolve() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotArbiter.selector, stranger));
        market.resolveDisputeWithEvidence(jobId, t, false, _evidence());
        uint256 by = _since(jobId) + DISPUTE_WINDOW;
        vm.warp(by);
        vm.prank(arbiter);
        market.resolveDisputeWithEvidence(jobId, t, false, _evidence());
        _assertState(jobId, IJobMarket.JobState.Refunded, "on the last second");
    }

    function test_resolveWithEvidence_afterDeadlineReverts() public {
        (uint256 jobId, IJobMarket.JobTerms memory t) = _disputedResult();
        uint256 by = _since(jobId) + DISPUTE_WINDOW;
        vm.warp(by + 1);
        vm.prank(arbiter);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobDisputeDeadlinePassed.selector, jobId, by));
        market.resolveDisputeWithEvidence(jobId, t, false, _evidence());
    }
}
