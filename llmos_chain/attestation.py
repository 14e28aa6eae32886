"""The one definition of the EIP-712 result attestation: build, hash, sign, recover, verify.

Mirrors `contracts/libraries/AttestationLib.sol`; the domain is ("LlmosJobMarket", "1", chain id, market).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from llmos_chain.errors import AttestationError

DOMAIN_NAME = "LlmosJobMarket"
DOMAIN_VERSION = "1"

ATTESTATION_TYPE: list[dict[str, str]] = [
    {"name": "jobId", "type": "uint256"},
    {"name": "worker", "type": "address"},
    {"name": "datasetRoot", "type": "bytes32"},
    {"name": "baseModelHash", "type": "bytes32"},
    {"name": "recipeHash", "type": "bytes32"},
    {"name": "outputHash", "type": "bytes32"},
    {"name": "metricsHash", "type": "bytes32"},
    {"name": "trajectoryRoot", "type": "bytes32"},
    {"name": "startTime", "type": "uint64"},
    {"name": "endTime", "type": "uint64"},
]

EIP712_DOMAIN_TYPE: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


@dataclass(frozen=True)
class Attestation:
    """What a worker signs about one finished job. Hashes are 32 raw bytes."""

    job_id: int
    worker: str
    dataset_root: bytes
    base_model_hash: bytes
    recipe_hash: bytes
    output_hash: bytes
    metrics_hash: bytes
    trajectory_root: bytes
    start_time: int
    end_time: int

    def __post_init__(self) -> None:
        for name in ("dataset_root", "base_model_hash", "recipe_hash", "output_hash", "metrics_hash", "trajectory_root"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise AttestationError(f"attestation field {name} must be 32 bytes, got {value!r}")
        if not (0 <= self.start_time <= self.end_time < 2**64):
            raise AttestationError(f"attestation times must satisfy 0 <= start <= end < 2**64, got {self.start_time}, {self.end_time}")
        if self.job_id < 0 or self.job_id >= 2**256:
            raise AttestationError(f"job id out of range: {self.job_id}")

    def message(self) -> dict[str, Any]:
        """The EIP-712 message (camelCase members, as the contract names them)."""
        return {
            "jobId": self.job_id,
            "worker": to_checksum_address(self.worker),
            "datasetRoot": self.dataset_root,
            "baseModelHash": self.base_model_hash,
            "recipeHash": self.recipe_hash,
            "outputHash": self.output_hash,
            "metricsHash": self.metrics_hash,
            "trajectoryRoot": self.trajectory_root,
            "startTime": self.start_time,
            "endTime": self.end_time,
        }

    def as_tuple(self) -> tuple[Any, ...]:
        """The value to pass for the contract's `Attestation` struct argument."""
        return tuple(self.message().values())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, bytes):
                out[key] = "0x" + value.hex()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attestation:
        try:
            fields = dict(data)
            for key in ("dataset_root", "base_model_hash", "recipe_hash", "output_hash", "metrics_hash", "trajectory_root"):
                fields[key] = bytes.fromhex(str(fields[key]).removeprefix("0x"))
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise AttestationError(f"malformed attestation JSON: {exc}") from None


def typed_data(att: Attestation, chain_id: int, market: str) -> dict[str, Any]:
    """The full EIP-712 typed-data document (what a wallet's eth_signTypedData_v4 takes)."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "Attestation": ATTESTATION_TYPE},
        "primaryType": "Attestation",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(market),
        },
        "message": att.message(),
    }


def digest(att: Attestation, chain_id: int, market: str) -> bytes:
    """The 32-byte EIP-712 digest the signature covers."""
    return bytes(_hash_eip191_message(encode_typed_data(full_message=typed_data(att, chain_id, market))))


def sign(att: Attestation, signer: LocalAccount, chain_id: int, market: str) -> bytes:
    """Sign as an EOA; a contract signer (EIP-1271) signs `digest(...)` its own way."""
    signed = signer.sign_typed_data(full_message=typed_data(att, chain_id, market))
    return bytes(signed.signature)


def recover(att: Attestation, signature: bytes, chain_id: int, market: str) -> str:
    """The EOA that produced `signature`."""
    try:
        return str(Account._recover_hash(digest(att, chain_id, market), signature=signature))
    except Exception as exc:  # eth-keys raises several types for malformed signatures
        raise AttestationError(f"unrecoverable attestation signature: {exc}") from None


def verify(att: Attestation, signature: bytes, expected_signer: str, chain_id: int, market: str) -> None:
    """Raise AttestationError unless `expected_signer` (an EOA) signed `att` for this chain and market."""
    signer = recover(att, signature, chain_id, market)
    if signer.lower() != expected_signer.lower():
        raise AttestationError(f"attestation signed by {signer}, expected {to_checksum_address(expected_signer)}")
