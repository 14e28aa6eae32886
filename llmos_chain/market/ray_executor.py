"""The executor's second backend: each job's worker process trains over a Ray cluster instead of on its own host.

The coordinator drives it exactly as the local executor (start, poll, wait, cancel, adopt, live_pid, stop_stale,
the same Outcomes): it still starts one `python -m worker run` process per job on the coordinator's host, with
`--ray-address`. That process is the job's Ray driver: it unwraps the owner's grant and signs the attestation as
on one host, and runs one rank per slot of the job's demand on the cluster's nodes (`worker/distributed.py`).
Stopping the process (cancel, time limit, a stale run) ends its Ray job, and Ray kills the job's ranks with it.
Neither this module nor the coordinator imports Ray or torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llmos_chain.errors import ConfigError
from llmos_chain.market.executor import Executor, WorkerCommand


class RayExecutor(Executor):
    """Worker processes that train their job over the Ray cluster at `address`."""

    def __init__(self, command: WorkerCommand, logs: Path, address: str, time_limit_s: float = 3600.0, resource: str = "auto",
                 start_timeout_s: float = 180.0, collective_timeout_s: float = 300.0, threads_per_rank: int = 1) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("executor kind 'ray' needs Ray on this host: pip install -e '.[worker]' (it brings ray)")
        super().__init__(command, logs, time_limit_s, cpu_threads=1)
        self.address = address
        self.resource = resource
        self.start_timeout_s = start_timeout_s
        self.collective_timeout_s = collective_timeout_s
        self.threads_per_rank = threads_per_rank

    def backend_args(self) -> list[str]:
        return ["--ray-address", self.address, "--ray-resource", self.resource, "--ray-start-timeout", str(self.start_timeout_s),
                "--ray-collective-timeout", str(self.collective_timeout_s), "--ray-threads", str(self.threads_per_rank)]
