// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title TestSmartWallet
/// @notice Minimal contract account for tests: EIP-1271 signatures by its owner key, calls made on the
///         owner's behalf, and a switch to refuse incoming ETH (to exercise failed payouts).
contract TestSmartWallet is IERC1271 {
    address public immutable owner;
    bool public acceptsEther = true;

    error TestSmartWalletNotOwner(address caller);
    error TestSmartWalletRefusesEther();

    constructor(address owner_) {
        owner = owner_;
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32 digest, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        return err == ECDSA.RecoverError.NoError && recovered == owner ? this.isValidSignature.selector : bytes4(0);
    }

    /// @notice Owner makes this wallet call `target` with `value` and `data`; a revert bubbles up unchanged.
    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        if (msg.sender != owner) revert TestSmartWalletNotOwner(msg.sender);
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    /// @notice Owner switches whether plain ETH transfers to this wallet succeed.
    function setAcceptsEther(bool accepts) external {
        if (msg.sender != owner) revert TestSmartWalletNotOwner(msg.sender);
        acceptsEther = accepts;
    }

    receive() external payable {
        if (!acceptsEther) revert TestSmartWalletRefusesEther();
    }
}
