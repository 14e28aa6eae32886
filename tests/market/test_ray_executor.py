"""The Ray executor as the coordinator builds it from coordinator.json: the one config line, checked; the worker
process it starts is the local executor's with the Ray arguments (the end-to-end runs are in
tests/worker/test_distributed.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmos_chain.errors import ConfigError
from llmos_chain.market.config import CoordinatorConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.market.ray_executor import RayExecutor

WORKER = {"address": "0x" + "11" * 20, "gpus": 16, "mem_gib": 80, "price_per_gpu_hour_wei": 1, "enc_key": "w"}


def _config(tmp_path: Path, **extra: object) -> CoordinatorConfig:
    path = tmp_path / "coordinator.json"
    path.write_text(json.dumps({"workers": [WORKER], **extra}))
    return CoordinatorConfig.load(path)


def test_the_local_executor_stays_the_default(tmp_path: Path) -> None:
    assert _config(tmp_path).executor.kind == "local"


def test_the_one_config_line_selects_ray(tmp_path: Path) -> None:
    cfg = _config(tmp_path, executor={"kind": "ray", "address": "ray://head.internal:10001"})
    assert (cfg.executor.kind, cfg.executor.address, cfg.executor.resource) == ("ray", "ray://head.internal:10001", "auto")
    assert _config(tmp_path, executor={"kind": "ray"}).executor.address == "auto"


@pytest.mark.parametrize("executor, field", [({"kind": "slurm"}, "kind"), ({"kind": "ray", "address": "http://x"}, "address"),
                                             ({"kind": "ray", "resource": "TPU"}, "resource"),
                                             ({"kind": "ray", "start_timeout_s": 0}, "start_timeout_s")])
def test_a_bad_executor_entry_is_refused_by_name(tmp_path: Path, executor: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        _config(tmp_path, executor=executor)


def test_the_worker_process_gets_the_ray_arguments(tmp_path: Path) -> None:
    command = WorkerCommand("http://127.0.0.1:8545", tmp_path / "d.json", tmp_path / "ks", "w", tmp_path / "r", tmp_path / "work")
    ray = RayExecutor(command, tmp_path / "logs", "auto", resource="CPU", start_timeout_s=30)
    assert Executor(command, tmp_path / "logs").backend_args() == []
    args = ray.backend_args()
    assert args[args.index("--ray-address") + 1] == "auto" and args[args.index("--ray-resource") + 1] == "CPU"
    assert args[args.index("--ray-start-timeout") + 1] == "30"
