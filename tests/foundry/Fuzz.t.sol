// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MarketFixture} from "./utils/Fixture.sol";
import {JobMarket} from "../../contracts/JobMarket.sol";
import {WorkerRegistry} from "../../contracts/WorkerRegistry.sol";
import {IJobMarket} from "../../contracts/interfaces/IJobMarket.sol";
import {IWorkerRegistry} from "../../contracts/interfaces/IWorkerRegistry.sol";

/// @notice Arithmetic under fuzzed amounts: escrow round trips, collateral in gwei, stake sums, batch sums.
contract FuzzTest is MarketFixture {
    // ------------------------------------------------------------------ escrow

    function testFuzz_ethEscrowRoundTrip(uint96 amount) public {
        amount = uint96(bound(amount, 1, type(uint96).max));
        vm.deal(client, amount);
        (uint256 jobId, IJobMarket.JobTerms memory t) = _post(client, _request(address(0), amount));
        vm.assertEq(address(market).balance, amount, "escrow held");
        vm.prank(client);
        market.cancel(jobId, t);
        vm.assertEq(market.credits(address(0), client), amount, "credit = escrow");
        vm.prank(client);
        market.withdraw(address(0));
        vm.assertEq(client.balance, amount, "paid back in full");
        vm.assertEq(address(market).balance, 0, "nothing left");
        vm.assertEq(market.credits(address(0), client), 0, "credit spent");
    }

    function testFuzz_tokenEscrowSettlesExactly(uint96 amount) public {
        amount = uint96(bound(amount, 1, type(uint96).max));
        token.mint(client, amount);
        uint256 before = token.balanceOf(client);
        (uint256 jobId, IJobMarket.JobTerms memory t) = _post(client, _request(address(token), amount));
        vm.assertEq(token.balanceOf(client), before - amount, "client paid exactly");
        _assign(jobId, t);
        _grant(jobId, t);
        _submit(jobId, t);
        vm.prank(client);
        market.accept(jobId, t);
        vm.prank(operator);
        market.withdraw(address(token));
        vm.assertEq(token.balanceOf(operator), amount, "operator paid exactly");
        vm.assertEq(token.balanceOf(address(market)), 0, "nothing left");
    }

    function testFuzz_postJobsNeedsTheSumOfEthAmounts(uint96[3] memory amounts, uint8 tokenMask, bool under) public {
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](3);
        uint256 eth;
        uint256 tok;
        for (uint256 i; i < 3; ++i) {
            uint96 a = uint96(bound(amounts[i], 1, type(uint96).max / 4));
            bool isToken = (tokenMask >> i) & 1 == 1;
            rs[i] = _request(isToken ? address(token) : address(0), a);
            if (isToken) tok += a;
            else eth += a;
        }
        token.mint(client, tok);
        vm.deal(client, eth + 1);
        if (eth != 0 || !under) {
            uint256 wrong = under ? eth - 1 : eth + 1;
            vm.prank(client);
            vm.expectRevert(_err(IJobMarket.JobWrongPayment.selector, eth, wrong));
            market.postJobs{value: wrong}(rs);
        }
        uint256 tokBefore = token.balanceOf(address(market));
        vm.prank(client);
        uint256 first = market.postJobs{value: eth}(rs);
        vm.assertEq(first, 1, "first id");
        vm.assertEq(market.jobCount(), 3, "three jobs");
        vm.assertEq(address(market).balance, eth, "ETH escrow = sum of ETH amounts");
        vm.assertEq(token.balanceOf(address(market)) - tokBefore, tok, "token escrow = sum of token amounts");
    }

    // ------------------------------------------------------------------ collateral

    function testFuzz_collateralMustBeWholeGwei(uint256 perGpu) public {
        address predicted = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 1);
        WorkerRegistry reg = new WorkerRegistry(predicted, UNBONDING);
        if (perGpu == 0) {
            vm.expectRevert(IJobMarket.JobMarketZeroCollateral.selector);
        } else if (perGpu % 1 gwei != 0) {
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketCollateralNotGwei.selector, perGpu));
        }
        JobMarket m = new JobMarket(admin, arbiter, reg, datasets, perGpu, GRANT_TIMEOUT, DISPUTE_WINDOW, BOND, false);
        if (perGpu != 0 && perGpu % 1 gwei == 0) vm.assertEq(m.collateralPerGpu(), perGpu, "stored");
    }

    /// Locks exactly perGpu * gpuCount, refuses what the free stake cannot cover, and a slash moves exactly
    /// that amount from the stake to the client's credit.
    function testFuzz_collateralLockAndSlash(uint8 gpuCount, uint64 perGpuGwei, uint96 stake) public {
        gpuCount = uint8(bound(gpuCount, 1, type(uint8).max));
        // lockedGwei is a uint56: one job's collateral always fits (255 * 2^47 < 2^56).
        uint256 perGpu = bound(perGpuGwei, 1, 2 ** 47) * 1 gwei;
        stake = uint96(bound(stake, 0, type(uint96).max));
        _deploy(perGpu, false);
        datasetId = _registerDataset(dataOwner);
        keyId = _registerKey(client);
        address op = makeAddr("bigOperator");
        address w = makeAddr("bigWorker");
        IWorkerRegistry.WorkerParams memory p = _params(signer);
        p.gpuCount = type(uint8).max;
        vm.deal(op, stake);
        vm.prank(op);
        uint32 id = workers.register{value: stake}(w, p);

        IJobMarket.JobRequest memory r = _request(address(0), AMOUNT);
        r.gpuCount = gpuCount;
        (uint256 jobId, IJobMarket.JobTerms memory t) = _post(client, r);
        uint256 collateral = perGpu * gpuCount;

        if (stake < collateral) {
            vm.prank(op);
            vm.expectRevert(
                abi.encodeWithSelector(IWorkerRegistry.WorkerInsufficientFreeStake.selector, w, stake, collateral)
            );
            market.assign(jobId, t, id);
            return;
        }
        vm.prank(op);
        market.assign(jobId, t, id);
        vm.assertEq(workers.lockedOf(id), collateral, "locked = perGpu * gpuCount");
        _grant(jobId, t);
        vm.warp(_since(jobId) + t.runTime + 1);
        market.reclaim(jobId, t);
        vm.assertEq(_stake(id), stake - collateral, "stake cut by the collateral");
        vm.assertEq(workers.lockedOf(id), 0, "nothing locked");
        vm.assertEq(address(workers).balance, stake - collateral, "registry holds the rest");
        vm.assertEq(market.credits(address(0), client), AMOUNT + collateral, "client credited escrow + collateral");
        vm.assertEq(address(market).balance, AMOUNT + collateral, "market holds it");
    }

    /// assignMany locks the sum of the jobs' collateral and counts every job; each ending releases its own share.
    function testFuzz_assignManyLocksTheSum(uint8 n, uint256 seed) public {
        n = uint8(bound(n, 1, 24));
        uint256[] memory ids = new uint256[](n);
        IJobMarket.JobTerms[] memory ts = new IJobMarket.JobTerms[](n);
        uint256 sum;
        for (uint256 i; i < n; ++i) {
            IJobMarket.JobRequest memory r = _request(address(0), AMOUNT);
            r.gpuCount = uint8(1 + uint256(keccak256(abi.encode(seed, i))) % 8);
            (ids[i], ts[i]) = _post(client, r);
            sum += COLLATERAL * r.gpuCount;
        }
        vm.prank(operator);
        market.assignMany(ids, ts, workerId);
        vm.assertEq(workers.lockedOf(workerId), sum, "locked = sum");
        vm.assertEq(_active(workerId), n, "counted");
        for (uint256 i; i < n; ++i) {
            uint256 kind = uint256(keccak256(abi.encode(seed, i, "end"))) % 3;
            if (kind == 0) {
                vm.prank(client);
                market.cancel(ids[i], ts[i]);
            } else if (kind == 1) {
                vm.prank(client);
                market.dropAssignment(ids[i], ts[i]);
            } else {
                vm.prank(operator);
                market.reportFailure(ids[i], ts[i], 0, bytes32(0));
            }
            sum -= COLLATERAL * ts[i].gpuCount;
            vm.assertEq(workers.lockedOf(workerId), sum, "each ending releases its share");
        }
        vm.assertEq(_active(workerId), 0, "none held");
        vm.assertEq(_stake(workerId), STAKE, "stake untouched");
    }

    function testFuzz_assignManyRefusesWhatTheStakeCannotCover(uint8 n, uint96 stake) public {
        n = uint8(bound(n, 1, 12));
        uint256 need = COLLATERAL * GPUS * n;
        stake = uint96(bound(stake, 0, need - 1));
        address op = makeAddr("smallOperator");
        address w = makeAddr("smallWorker");
        uint32 id = _registerWorker(op, w, signer, stake);
        uint256[] memory ids = new uint256[](n);
        IJobMarket.JobTerms[] memory ts = new IJobMarket.JobTerms[](n);
        for (uint256 i; i < n; ++i) {
            (ids[i], ts[i]) = _postDefault();
        }
        vm.prank(op);
        vm.expectRevert(abi.encodeWithSelector(IWorkerRegistry.WorkerInsufficientFreeStake.selector, w, stake, need));
        market.assignMany(ids, ts, id);
    }

    // ------------------------------------------------------------------ stake sums

    function testFuzz_stakeSums(uint96 initial, uint96[3] memory adds) public {
        address op = makeAddr("stakeOperator");
        address w = makeAddr("stakeWorker");
        vm.deal(op, type(uint256).max / 2);
        vm.prank(op);
        workers.register{value: initial}(w, _params(signer));
        uint256 sum = initial;
        for (uint256 i; i < 3; ++i) {
            uint256 next = sum + adds[i];
            vm.prank(op);
            if (next > type(uint96).max) {
                vm.expectRevert(abi.encodeWithSelector(IWorkerRegistry.WorkerStakeTooLarge.selector, next));
                workers.addStake{value: adds[i]}(w);
            } else {
                workers.addStake{value: adds[i]}(w);
                sum = next;
            }
            vm.assertEq(workers.getWorker(w).stake, sum, "stake = sum of deposits");
        }
        vm.prank(op);
        workers.requestExit(w);
        vm.warp(block.timestamp + UNBONDING);
        uint256 before = op.balance;
        vm.prank(op);
        workers.withdrawStake(w);
        vm.assertEq(op.balance - before, sum, "whole stake paid out");
    }

    function testFuzz_registerRefusesStakeAboveUint96(uint256 stake) public {
        stake = bound(stake, uint256(type(uint96).max) + 1, type(uint128).max);
        address op = makeAddr("hugeOperator");
        vm.deal(op, stake);
        vm.prank(op);
        vm.expectRevert(abi.encodeWithSelector(IWorkerRegistry.WorkerStakeTooLarge.selector, stake));
        workers.register{value: stake}(makeAddr("hugeWorker"), _params(signer));
    }

    // ------------------------------------------------------------------ time arithmetic and payouts

    /// Any runTime/horizon pair: a post is valid iff a first fair window fits, and a grant on the last second gives
    /// exactly runTime, ending at the deadline.
    function testFuzz_runWindowFitsTheDeadline(uint32 runTime, uint40 horizon) public {
        runTime = uint32(bound(runTime, 1, type(uint32).max));
        horizon = uint40(bound(horizon, 0, uint256(type(uint32).max) * 2));
        IJobMarket.JobRequest memory r = _request(address(0), AMOUNT);
        r.runTime = runTime;
        r.deadline = uint40(block.timestamp + horizon);
        if (horizon < runTime) {
            vm.prank(client);
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobInvalidRequest.selector, "deadline"));
            market.postJob{value: AMOUNT}(r);
            return;
        }
        (uint256 jobId, IJobMarket.JobTerms memory t) = _post(client, r);
        _assign(jobId, t);
        vm.warp(uint256(t.deadline) - runTime);
        _grant(jobId, t);
        vm.assertEq(_since(jobId) + runTime, t.deadline, "window = [grant, grant + runTime], ends at the deadline");
        vm.warp(t.deadline);
        _submit(jobId, t);
    }

    /// Several settlements to one operator add up, and one withdrawal pays the sum.
    function testFuzz_creditsAddUp(uint96[4] memory amounts, bool withBond) public {
        uint256 sum;
        for (uint256 i; i < 4; ++i) {
            uint96 a = uint96(bound(amounts[i], 1, 100 ether));
            vm.deal(client, client.balance + a + BOND);
            (uint256 jobId, IJobMarket.JobTerms memory t) = _post(client, _request(address(0), a));
            _assign(jobId, t);
            _grant(jobId, t);
            _submit(jobId, t);
            if (withBond) {
                _dispute(jobId, t);
                vm.prank(arbiter);
                market.resolveDispute(jobId, t, true);
                sum += BOND;
            } else {
                vm.prank(client);
                market.accept(jobId, t);
            }
            sum += a;
        }
        vm.assertEq(market.credits(address(0), operator), sum, "credits add up");
        uint256 before = operator.balance;
        vm.prank(operator);
        market.withdraw(address(0));
        vm.assertEq(operator.balance - before, sum, "one withdrawal pays them all");
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNothingToWithdraw.selector, address(0), operator));
        market.withdraw(address(0));
    }
}
