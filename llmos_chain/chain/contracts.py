"""Bindings for the shipped contract artifacts: load ABIs, send transactions, decode custom errors by name."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from llmos_chain.errors import ChainError, ContractRevertError, ToolchainError

CONTRACT_NAMES = ("WorkerRegistry", "DatasetRegistry", "JobMarket", "TestToken", "TestSmartWallet")


@cache
def artifact(name: str) -> dict[str, Any]:
    """The committed artifact (abi, bytecode, …) of contract `name`."""
    if name not in CONTRACT_NAMES:
        raise ToolchainError(f"unknown contract {name!r}; shipped: {', '.join(CONTRACT_NAMES)}")
    text = resources.files("llmos_chain.chain").joinpath("artifacts", f"{name}.json").read_text()
    return json.loads(text)


def abi(name: str) -> list[dict[str, Any]]:
    return artifact(name)["abi"]


def _signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + param["type"][5:]
    return str(param["type"])


@cache
def error_table() -> dict[bytes, dict[str, Any]]:
    """Selector → ABI error entry, over every shipped contract plus Solidity's Error and Panic."""
    table: dict[bytes, dict[str, Any]] = {
        keccak(text="Error(string)")[:4]: {"name": "Error", "inputs": [{"name": "message", "type": "string"}]},
        keccak(text="Panic(uint256)")[:4]: {"name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
    }
    for name in CONTRACT_NAMES:
        for item in abi(name):
            if item["type"] == "error":
                table[keccak(text=_signature(item))[:4]] = item
    return table


def decode_revert(function: str, data: bytes | str | None) -> ContractRevertError:
    """Turn raw revert data into a ContractRevertError naming the custom error and its arguments."""
    if isinstance(data, str):
        data = bytes.fromhex(data.removeprefix("0x"))
    if not data:
        return ContractRevertError(function, "UnknownRevert", raw="0x")
    entry = error_table().get(data[:4])
    if entry is None:
        return ContractRevertError(function, "UnknownError", raw="0x" + data.hex())
    types = [_abi_type(i) for i in entry["inputs"]]
    try:
        values = abi_decode(types, data[4:])
    except Exception:  # malformed payload: still report the name
        return ContractRevertError(function, entry["name"], raw="0x" + data.hex())
    args = {i["name"] or f"arg{n}": v for n, (i, v) in enumerate(zip(entry["inputs"], values, strict=True))}
    return ContractRevertError(function, entry["name"], args, raw="0x" + data.hex())


def _revert_data(exc: BaseException) -> bytes | str | None:
    """Dig the revert payload out of whichever exception the provider raised (following its causes)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        data = getattr(current, "data", None)
        if isinstance(data, (bytes, str)) and data:
            return data
        for arg in getattr(current, "args", ()):
            if isinstance(arg, bytes):
                return arg
            if isinstance(arg, str):
                text = arg.removeprefix("execution reverted: ").strip()
                if text.startswith("0x"):
                    return text
                if text.startswith(("b'", 'b"')):  # eth-tester's call path stringifies the revert bytes
                    try:
                        value = ast.literal_eval(text)
                    except (ValueError, SyntaxError):
                        value = None
                    if isinstance(value, bytes):
                        return value
            if isinstance(arg, dict) and isinstance(arg.get("data"), (str, bytes)):
                return arg["data"]
        current = current.__cause__ or current.__context__
    return None


def _is_revert(exc: BaseException) -> bool:
    from eth_tester.exceptions import TransactionFailed
    from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

    return isinstance(exc, (TransactionFailed, ContractCustomError, ContractLogicError, ContractPanicError))


@dataclass
class Sender:
    """Sends transactions for one account, signing locally (no node-held keys are assumed)."""

    w3: Web3
    account: LocalAccount
    gas_margin: float = 1.2

    @property
    def address(self) -> str:
        return str(self.account.address)

    def transact(self, fn: ContractFunction, value: int = 0, gas: int | None = None) -> TxReceipt:
        """Estimate, sign, send and wait for `fn`; a revert becomes a ContractRevertError with its name."""
        label = fn.fn_name
        tx: dict[str, Any] = {"from": self.address, "value": value}
        try:
            if gas is None:
                gas = int(fn.estimate_gas(tx) * self.gas_margin)
            built = fn.build_transaction({**tx, "gas": gas, "nonce": self.w3.eth.get_transaction_count(self.address, "pending")})
        except Exception as exc:
            if _is_revert(exc):
                raise decode_revert(label, _revert_data(exc)) from exc
            raise ChainError(f"{label}: could not prepare the transaction: {exc}") from exc
        return self.send_raw(built, label)

    def send_raw(self, tx: dict[str, Any], label: str) -> TxReceipt:
        signed = self.account.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except Exception as exc:
            if _is_revert(exc):
                raise decode_revert(label, _revert_data(exc)) from exc
            raise ChainError(f"{label}: sending the transaction failed: {exc}") from exc
        if receipt["status"] != 1:
            raise self._explain_failure(tx, receipt, label)
        return receipt

    def _explain_failure(self, tx: dict[str, Any], receipt: TxReceipt, label: str) -> ContractRevertError:
        """Replay a mined, failed transaction as a call on its parent block to recover the custom error."""
        replay = {k: tx[k] for k in ("to", "data", "value", "gas") if k in tx}
        replay["from"] = self.address
        try:
            self.w3.eth.call(replay, int(receipt["blockNumber"]) - 1)  # type: ignore[arg-type]
        except Exception as exc:
            if _is_revert(exc):
                error = decode_revert(label, _revert_data(exc))
                error.fields.setdefault("tx", "0x" + bytes(receipt["transactionHash"]).hex())
                return error
        return ContractRevertError(label, "Reverted", {"tx": "0x" + bytes(receipt["transactionHash"]).hex()})

    def deploy(self, name: str, *args: Any, value: int = 0) -> tuple[Contract, TxReceipt]:
        art = artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        ctor = factory.constructor(*args)
        tx: dict[str, Any] = {"from": self.address, "value": value}
        try:
            gas = int(ctor.estimate_gas(tx) * self.gas_margin)
            built = ctor.build_transaction({**tx, "gas": gas, "nonce": self.w3.eth.get_transaction_count(self.address, "pending")})
        except Exception as exc:
            if _is_revert(exc):
                raise decode_revert(f"deploy {name}", _revert_data(exc)) from exc
            raise ChainError(f"deploy {name}: {exc}") from exc
        receipt = self.send_raw(built, f"deploy {name}")
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"]), receipt


def call(fn: ContractFunction, **tx: Any) -> Any:
    """A read-only call whose revert is decoded by name like a transaction's."""
    try:
        return fn.call(tx or None)
    except Exception as exc:
        if _is_revert(exc):
            raise decode_revert(fn.fn_name, _revert_data(exc)) from exc
        raise ChainError(f"{fn.fn_name}: call failed: {exc}") from exc


def bind(w3: Web3, name: str, address: str) -> Contract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi(name))
