"""The coordinator's read-only API: answers for what a user can type, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmos_chain.api import create_app
from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.store import Store
from tests.helpers import World


@pytest.fixture()
def coordinator(world: World, tmp_path: Path) -> Coordinator:
    command = WorkerCommand("http://127.0.0.1:9", tmp_path / "d.json", tmp_path, "none", tmp_path / "results", tmp_path / "work")
    return Coordinator(world.suite, Store(tmp_path / "c.db"), world.operator, [WorkerConfig(world.worker, 8, 80, 10**15)],
                       Executor(command, tmp_path / "logs"))


@pytest.mark.parametrize("job_id", ["0", "7", str(2**63 - 1), str(2**63), str(2**64), str(2**256)])
def test_unknown_and_huge_job_ids_are_404(coordinator: Coordinator, job_id: str) -> None:
    api = TestClient(create_app(coordinator))
    assert api.get(f"/jobs/{job_id}").status_code == 404
    assert api.get(f"/jobs/{job_id}/result/metrics.json").status_code == 404


def test_a_job_is_served_once_followed(world: World, coordinator: Coordinator) -> None:
    api = TestClient(create_app(coordinator))
    job = world.post()
    assert api.get(f"/jobs/{job}").status_code == 404  # not followed yet
    coordinator.follower.poll()
    body = api.get(f"/jobs/{job}").json()
    assert body["state"] == "open" and body["escrow"] == str(world.job(job).escrow)
    assert [h["event"] for h in body["history"]] == ["JobPosted"]
