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


class NodeIdentityError(DeploymentError):
    """The node is not the chain this daemon has followed (another chain id or genesis, the deployment's code gone):
    e.g. a node restarted empty. Nothing is sent and nothing recorded is forgotten until the right node is back."""


class NodeLaggingError(ChainError):
    """The node (or the backend a load balancer picked) is behind what was already read from it."""


class AllocationError(LlmosError):
    """An allocation broke a constraint, or no allocation could be computed."""


class AttestationError(LlmosError):
    """An attestation is malformed or its signature does not verify."""


class SealedDataError(LlmosError):
    """A sealed file or key grant failed to verify; no plaintext of the failing part is released."""


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


class WorkerError(LlmosError):
    """A worker run failed. `reason` is the code a failure report carries on-chain; `data_fault` says whether
    the data (not the worker) is to blame, which refunds the client without slashing."""

    reason: int = 6
    data_fault: bool = False
    #: True when the failure is the infrastructure's (a node error, a source that timed out): the coordinator runs
    #: the job again later and never reports it on chain.
    transient: bool = False


class TransientError(WorkerError):
    """The run could not proceed for a reason outside the job (node trouble, a timed-out fetch): retry, never report."""

    reason = 0
    transient = True


class RecipeError(WorkerError):
    """The recipe is malformed or asks for something this runtime cannot do."""

    reason = 4


class DataError(WorkerError):
    """The decrypted dataset cannot be used: unparsable rows, missing fields or labels."""

    reason = 1
    data_fault = True


class IntegrityError(WorkerError):
    """A hash did not match: cipher hash, content root, or base-model hash."""

    reason = 2
    data_fault = True


class ModelError(WorkerError):
    """The base model cannot be loaded, or its hash differs from the one the job names."""

    reason = 5


class VerificationError(LlmosError):
    """A verification by replay could not be carried out (no grant, no bundle, the wrong key): says nothing about the
    worker's honesty. Evidence the worker had to publish and did not is a finding, not this error."""


class CheckpointError(VerificationError):
    """A training checkpoint cannot be read or does not belong to the job it is replayed for."""
