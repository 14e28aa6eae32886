"""The one exception hierarchy of llmos-chain.

Every error a user can cause derives from :class:`LlmosError`; the CLI prints its message and exits
non-zero instead of showing a traceback. Subclasses carry structured fields so callers can act on them.
"""

from __future__ import annotations

from typing import Any


class LlmosError(Exception):
    """Root of every llmos-chain error."""

    exit_code: int = 1


class ConfigError(LlmosError):
    """A setting, deployment file or argument is missing or malformed."""


class ToolchainError(LlmosError):
    """The Solidity compiler or the contract artifacts are unavailable or inconsistent."""


class ChainError(LlmosError):
    """Talking to the chain failed."""


class NodeUnreachableError(ChainError):
    """The JSON-RPC node did not answer."""


class ContractRevertError(ChainError):
    """A call or transaction reverted; `name` and `fields` decode the contract's custom error."""

    def __init__(self, function: str, name: str, args: dict[str, Any] | None = None, raw: str | None = None) -> None:
        self.function = function
        self.name = name
        self.fields = dict(args or {})
        self.raw = raw
        detail = ", ".join(f"{k}={_fmt(v)}" for k, v in self.fields.items())
        super().__init__(f"{function} reverted: {name}({detail})")


class DeploymentError(ChainError):
    """The deployment file does not match the chain it is used with."""


class AttestationError(LlmosError):
    """An attestation is malformed or its signature does not verify."""


class SealedDataError(LlmosError):
    """A sealed file or key grant failed to verify; no plaintext of the failing part is released."""


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
