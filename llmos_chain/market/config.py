"""The coordinator's configuration file (JSON): this provider's workers and the daemon's settings."""

from __future__ import annotations

from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmos_chain.settings import load_json_config


class WorkerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str
    gpus: int = Field(ge=1)
    mem_gib: int = Field(ge=1)
    price_per_gpu_hour_wei: int = Field(ge=0)
    speed: float = Field(default=1.0, gt=0)
    worker_class: str = "default"
    gpu_slots: list[int] = []
    enc_key: str  # the worker's HPKE key name in the keystore
    signer_key_env: str | None = None  # environment variable holding the worker's signing key
    dev_account: int | None = None  # on dev chains: which funded account signs for this worker


class ExecutorEntry(BaseModel):
    """Where jobs run: `local` (default) trains each job in a process on this host; `ray` trains it data-parallel over
    a Ray cluster, one rank per slot of the job's demand (`address`: "auto" for the cluster this host belongs to,
    "ray://head:10001" through Ray Client, "local" for a private one-host cluster)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    address: str = Field(default="auto", pattern=r"^(auto|local|ray://[^\s]+|[A-Za-z0-9.\-]+:\d+)$")
    resource: Literal["auto", "CPU", "GPU"] = "auto"  # what one rank takes (auto: GPU when the cluster has any)
    start_timeout_s: float = Field(default=180.0, gt=0)  # every rank started, or the run is retried later
    collective_timeout_s: float = Field(default=300.0, gt=0)  # one gloo/NCCL collective at most (a lost peer)
    threads_per_rank: int = Field(default=1, ge=1)  # torch threads of a rank on CPU


class CoordinatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: list[WorkerEntry]
    executor: ExecutorEntry = ExecutorEntry()
    state: Path = Path("coordinator.db")
    results: Path = Path("results")
    logs: Path = Path("logs")
    work_dir: Path = Path("work")
    keystore: Path | None = None
    #: Blocks to wait before acting on an event or calling our own transaction final. Unset: 0 on dev chains, 6 on
    #: Ethereum's test networks, 12 on mainnet and any other chain (`llmos_chain.chain.connect.default_confirmations`).
    confirmations: int | None = Field(default=None, ge=0)
    poll_interval_s: float = Field(default=2.0, gt=0)
    #: A transaction still pending after this many seconds is replaced with the node's current fee (or +25 %).
    fee_bump_after_s: float = Field(default=60.0, gt=0)
    #: A reorg deeper than this is logged as an error (the node's identity is checked on every reorg).
    max_reorg_depth: int = Field(default=64, ge=1)
    #: Seconds one JSON-RPC call may take before it is abandoned and asked again (5 attempts, with backoff).
    rpc_timeout_s: float = Field(default=10.0, gt=0)
    solver: str = Field(default="highs", pattern="^(highs|cbc)$")
    solve_time_limit_s: float = Field(default=2.0, gt=0)
    job_time_limit_s: float = Field(default=3600.0, gt=0)
    token_prices: dict[str, float] = {}  # ERC-20 address → ETH wei per token base unit (jobs in other tokens are skipped)
    withdraw: bool = True  # pull the operator's credits after each settled job
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8700, ge=1, le=65535)
    #: Directories whose files a job's file:// URIs may name (recipes, datasets). Jobs are posted by strangers: by
    #: default no local file may be read for them; list the directories you serve job inputs from.
    file_roots: list[Path] = []

    @classmethod
    def load(cls, path: Path) -> CoordinatorConfig:
        return load_json_config(cls, path, "coordinator config")
