"""The agent's config file (`llmos agent run --config`), apart from the command so that the CLI starts without pydantic."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llmos_chain.errors import ConfigError
from llmos_chain.settings import load_json_config


class RoleKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_env: str | None = None  # environment variable holding the account's private key
    dev_account: int | None = None  # on dev chains: which funded account


class GrantSection(RoleKey):
    datasets: dict[int, str]  # dataset id → data key id in the keystore
    workers: list[str] = []  # allowed worker addresses (empty: any)
    operators: list[str] = []  # allowed operator addresses (empty: any)
    max_jobs: int | None = Field(default=None, ge=0)  # grants per dataset


class AcceptSection(RoleKey):
    results: str  # the coordinator's API URL or results directory
    client_key: str  # the client's encryption key (name in the keystore): the client audit decrypts and runs the output
    dispute_failed: bool = False


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Path = Path("agent.db")
    keystore: Path | None = None
    poll_interval_s: float = Field(default=2.0, gt=0)
    #: Unset: 0 on dev chains, 6 on Ethereum's test networks, 12 elsewhere (as for the coordinator).
    confirmations: int | None = Field(default=None, ge=0)
    grants: GrantSection | None = None
    accepts: AcceptSection | None = None

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        config = load_json_config(cls, path, "agent config")
        if config.grants is None and config.accepts is None:
            raise ConfigError(f"agent config {path}: give `grants`, `accepts` or both")
        return config
