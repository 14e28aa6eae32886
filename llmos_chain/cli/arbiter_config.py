"""The arbiter's config file (`llmos arbiter run --config`), apart from the command so that the CLI starts without pydantic."""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field

from llmos_chain.cli.agent_config import RoleKey


class ArbiterConfig(RoleKey):
    """`arbiter.json`: the arbiter's account (key_env, or dev_account on a dev chain), its encryption key, where bundles
    come from, and how close to the dispute deadline it stops waiting."""

    model_config = ConfigDict(extra="forbid")

    encryption_key: str  # name in the keystore; registered with the market and named by setArbiterKey at start
    results: list[str] = Field(min_length=1)  # providers' API URLs or results directories
    state: Path = Path("arbiter.db")
    reports: Path = Path("arbiter-reports")
    keystore: Path | None = None
    margin_s: int = Field(default=600, ge=0)
    replay_timeout_s: float = Field(default=3600.0, gt=0)
    threads: int | None = Field(default=None, ge=1)
    every: bool = True  # every interval within the time left; false: the ends and a bisection only
    poll_interval_s: float = Field(default=5.0, gt=0)
    confirmations: int | None = Field(default=None, ge=0)
