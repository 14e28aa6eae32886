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


def test_no_generated_request_gets_a_server_error(world: World, coordinator: Coordinator, tmp_path: Path) -> None:
    """Schemathesis against the coordinator's API, served over HTTP with a followed job in its store: every request it
    generates from the OpenAPI schema (ids of any size, unknown files, odd filters) gets an answer, never a 5xx."""
    import shutil
    import subprocess
    import sys

    from llmos_chain.chain.devchain import free_port
    from llmos_chain.dashboard.server import bind, serve_in_thread

    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    world.post()
    coordinator.follower.poll()
    port = free_port()
    server = serve_in_thread(create_app(coordinator), bind(port))
    try:
        proc = subprocess.run([cli, "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "not_a_server_error",
                               "--max-examples", "30", "--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-color"],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        server.should_exit = True
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "/jobs/{job_id}" in proc.stdout  # the job routes were exercised, not an empty schema
