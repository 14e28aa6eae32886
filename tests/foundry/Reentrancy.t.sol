// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MarketFixture} from "./utils/Fixture.sol";
import {IJobMarket} from "../../contracts/interfaces/IJobMarket.sol";
import {IWorkerRegistry} from "../../contracts/interfaces/IWorkerRegistry.sol";

/// @notice A client or operator contract whose `receive` tries to re-enter the contract paying it, records how
///         that attempt ended, and then accepts the ETH.
contract ReentrantPayee {
    address public target;
    bytes public reentry;
    bytes4 public reentryError;
    bool public reentered;

    function arm(address target_, bytes calldata reentry_) external {
        target = target_;
        reentry = reentry_;
    }

    function call(address to, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        if (target == address(0) || reentered) return;
        reentered = true;
        (bool ok, bytes memory ret) = target.call(reentry);
        reentryError = ok ? bytes4(0) : bytes4(ret);
        if (ok) revert("re-entry went through");
    }
}

/// @notice An ERC-20 whose `transferFrom` tries to re-enter the market (a token is client-chosen).
contract ReentrantToken is ERC20 {
    address public target;
    bytes public reentry;
    bytes4 public reentryError;
    bool public attempted;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata reentry_) external {
        target = target_;
        reentry = reentry_;
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (target != address(0) && !attempted) {
            attempted = true;
            (bool ok, bytes memory ret) = target.call(reentry);
            reentryError = ok ? bytes4(0) : bytes4(ret);
        }
        return super.transferFrom(from, to, value);
    }
}

/// @notice The reentrancy guards slither cannot analyse (see contracts/slither-triage.md) hold.
contract ReentrancyTest is MarketFixture {
    bytes4 internal constant REENTRANT = ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector;

    function test_withdrawCannotBeReentered() public {
        ReentrantPayee payee = new ReentrantPayee();
        vm.deal(address(payee), AMOUNT);
        IJobMarket.JobRequest memory r = _request(address(0), AMOUNT);
        bytes memory ret = payee.call(address(market), AMOUNT, abi.encodeCall(market.postJob, (r)));
        uint256 jobId = abi.decode(ret, (uint256));
        IJobMarket.JobTerms memory t = _termsOf(address(payee), r);
        payee.call(address(market), 0, abi.encodeCall(market.cancel, (jobId, t)));
        vm.assertEq(market.credits(address(0), address(payee)), AMOUNT, "credited");

        payee.arm(address(market), abi.encodeCall(market.withdraw, (address(0))));
        payee.call(address(market), 0, abi.encodeCall(market.withdraw, (address(0))));
        vm.assertTrue(payee.reentered(), "re-entry attempted");
        vm.assertEq(payee.reentryError(), REENTRANT, "re-entry refused by the guard");
        vm.assertEq(address(payee).balance, AMOUNT, "paid exactly once");
        vm.assertEq(address(market).balance, 0, "nothing else left the market");
    }

    function test_postJobCannotBeReenteredByItsToken() public {
        ReentrantToken bad = new ReentrantToken();
        bad.mint(client, 10 ether);
        vm.prank(client);
        bad.approve(address(market), type(uint256).max);
        // During the escrow transfer the token tries to take the market's holdings in it out again.
        bad.arm(address(market), abi.encodeCall(market.withdraw, (address(bad))));
        (uint256 jobId,) = _post(client, _request(address(bad), 10 ether));
        vm.assertTrue(bad.attempted(), "re-entry attempted");
        vm.assertEq(bad.reentryError(), REENTRANT, "re-entry refused by the guard");
        vm.assertEq(bad.balanceOf(address(market)), 10 ether, "escrow held in full");
        _assertState(jobId, IJobMarket.JobState.Open, "posted");
    }

    function test_withdrawStakeCannotBeReentered() public {
        ReentrantPayee op = new ReentrantPayee();
        vm.deal(address(op), STAKE);
        address w = makeAddr("reentrantWorker");
        op.call(address(workers), STAKE, abi.encodeCall(workers.register, (w, _params(signer))));
        op.call(address(workers), 0, abi.encodeCall(workers.requestExit, (w)));
        vm.warp(block.timestamp + UNBONDING);

        op.arm(address(workers), abi.encodeCall(workers.withdrawStake, (w)));
        op.call(address(workers), 0, abi.encodeCall(workers.withdrawStake, (w)));
        vm.assertEq(op.reentryError(), REENTRANT, "re-entry refused by the guard");
        vm.assertEq(address(op).balance, STAKE, "stake paid exactly once");
        vm.assertEq(address(workers).balance, STAKE, "the fixture worker's stake is untouched");
        vm.assertEq(uint256(workers.getWorker(w).status), uint256(IWorkerRegistry.WorkerStatus.Exited), "worker exited");
    }
}
