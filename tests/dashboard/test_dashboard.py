"""The dashboard's pages and fragments, served by the coordinator's API: what they show, live, and that bad input is a
4xx, never a 500. (The browser tests are in test_browser.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmos_chain.api import create_app
from llmos_chain.dashboard import Provider, mount_dashboard
from llmos_chain.dashboard.sampler import ResourceSampler
from llmos_chain.dashboard.views import timeline
from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.store import Store
from tests.helpers import World

REPO = Path(__file__).resolve().parents[2]
SECRET = "0x" + "ab" * 32


@pytest.fixture()
def coordinator(world: World, tmp_path: Path) -> Coordinator:
    command = WorkerCommand("http://127.0.0.1:9", tmp_path / "d.json", tmp_path, "none", tmp_path / "results", tmp_path / "work",
                            {"LLMOS_PRIVATE_KEY": SECRET})
    return Coordinator(world.suite, Store(tmp_path / "c.db"), world.operator,
                       [WorkerConfig(world.worker, 8, 80, 10**15, gpu_slots=tuple(range(8)))], Executor(command, tmp_path / "logs"))


@pytest.fixture()
def api(coordinator: Coordinator) -> TestClient:
    return TestClient(create_app(coordinator, name="prov-a"))


def _rows(html: str) -> dict[int, str]:
    return {int(j): s for j, s in re.findall(r'<tr data-job="(\d+)" data-state="([a-z_]+)"', html)}


def test_jobs_appear_and_move_in_the_polled_fragment(world: World, coordinator: Coordinator, api: TestClient) -> None:
    job = world.post(gpu_count=2)
    assert job not in _rows(api.get("/").text)  # not followed yet
    coordinator.follower.poll()
    assert _rows(api.get("/").text)[job] == "open"
    world.assign(job)
    coordinator.follower.poll()
    fragment = api.get("/ui/jobs").text
    assert _rows(fragment)[job] == "assigned"
    assert "slots 0,1" in fragment  # the 2 GPUs it holds on the worker's slots
    assert _rows(api.get("/ui/jobs?state=open").text) == {}
    assert _rows(api.get("/ui/jobs?state=assigned").text) == {job: "assigned"}
    assert _rows(api.get("/?state=assigned").text) == {job: "assigned"}


def test_the_timeline_has_each_transition_with_block_time_tx_and_gas(world: World, coordinator: Coordinator) -> None:
    job = world.post()
    receipt = world.assign(job)
    coordinator.follower.poll()
    steps = timeline(Provider("p", coordinator), job)
    assert [(s["event"], s["state"]) for s in steps] == [("JobPosted", "open"), ("JobAssigned", "assigned")]
    assigned = steps[1]
    assert assigned["block"] == receipt["blockNumber"] and assigned["tx"] == "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x")
    assert assigned["gas"] == receipt["gasUsed"]
    assert assigned["time"] == world.w3.eth.get_block(receipt["blockNumber"])["timestamp"]


def test_job_page_shows_history_loss_points_bundle_and_log_without_secrets(world: World, coordinator: Coordinator,
                                                                          api: TestClient) -> None:
    job = world.post()
    world.assign(job)
    coordinator.follower.poll()
    assert coordinator.results_dir is not None
    bundle = coordinator.results_dir / str(job)
    bundle.mkdir(parents=True)
    records = [{"step": s, "loss": 2.0 / s, "lr": 1e-3, "weights_hash": "0x" + "00" * 32} for s in (1, 5, 10, 15, 20)]
    (bundle / "trajectory.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (bundle / "metrics.json").write_text(json.dumps({"metric": "accuracy", "before": 0.25, "after": 0.875, "higher_is_better": True}))
    (coordinator.executor.logs / f"job-{job}.log").write_text(f"step 1\nenv LLMOS_PRIVATE_KEY={SECRET}\nraw {SECRET[2:]}\ndone\n")

    loss = api.get(f"/ui/job/{job}/loss.json").json()
    assert loss["step"] == [1, 5, 10, 15, 20] and len(loss["loss"]) == len(records) and loss["final"] is False
    page = api.get(f"/job/{job}").text
    assert 'data-loss="/ui/job/%d/loss.json"' % job in page
    assert "JobPosted" in page and "JobAssigned" in page
    assert f'href="/jobs/{job}/result/trajectory.jsonl"' in page and f'href="/jobs/{job}/result/metrics.json"' in page
    assert "accuracy 0.250 → 0.875" in page
    assert "done" in page and "[redacted]" in page
    assert SECRET[2:] not in page and SECRET[2:] not in api.get(f"/ui/job/{job}").text


@pytest.mark.parametrize("path", ["/job/{id}", "/ui/job/{id}", "/ui/job/{id}/loss.json"])
@pytest.mark.parametrize("job_id", ["7", "-1", str(2**63), str(2**256)])
def test_unknown_jobs_are_404(api: TestClient, path: str, job_id: str) -> None:
    assert api.get(path.format(id=job_id)).status_code == 404


@pytest.mark.parametrize("url", ["/?state=bogus", "/ui/jobs?state=RUNNING", "/ui/jobs?state=" + "x" * 100, "/job/abc",
                                 "/ui/job/1.5/loss.json"])
def test_bad_input_is_a_4xx(api: TestClient, url: str) -> None:
    assert 400 <= api.get(url).status_code < 500


def test_chain_and_last_solve_figures(world: World, coordinator: Coordinator, api: TestClient) -> None:
    world.post()
    coordinator.follower.poll()
    coordinator.last_solve = {"at": 0.0, "considered": 3, "workers": 1, "assigned": 2, "objective": 1.5, "bound": 1.2,
                              "gap": 0.2, "status": "optimal", "solve_s": 0.042}
    health = coordinator.health()
    chain = api.get("/ui/chain").text
    assert f"<dt>node head</dt><dd>{health['node_head']}</dd>" in chain
    assert "<dt>outbox depth</dt><dd>0</dd>" in chain and "<dt>stuck intents</dt><dd>0</dd>" in chain
    assert "open 1" in chain and "<dt>last reorg</dt><dd>—</dd>" in chain
    coordinator.follower.status.last_reorg = {"at": 0.0, "from": 12, "to": 9, "depth": 3, "node_head": 14}
    assert "3 block(s) deep, back from 12 to 9" in api.get("/ui/chain").text
    resources = api.get("/ui/resources").text
    for text in ("3 <small>on 1 worker(s)</small>", ">2<", "20.00 %", "optimal", "0.042 s"):
        assert text in resources
    assert resources.count('class="slot free"') == 8


def test_resource_series_come_from_the_sampler(coordinator: Coordinator) -> None:
    readings = iter([{"cpu util %": 10.0, "cpu mem %": 50.0}, {"cpu util %": 30.0, "cpu mem %": 51.0}])
    sampler = ResourceSampler(interval_s=3600, reader=lambda: next(readings))
    from fastapi import FastAPI

    app = FastAPI()
    mount_dashboard(app, [Provider("p", coordinator)], sampler)
    with TestClient(app) as client:  # startup takes the first sample
        sampler.sample()
        body = client.get("/ui/resources.json").json()
    assert [s["label"] for s in body["series"]] == ["cpu mem %", "cpu util %"]
    assert body["series"][1]["values"] == [10.0, 30.0] and len(body["x"]) == 2


def test_psutil_sampling_on_a_cpu_host() -> None:
    sampler = ResourceSampler(interval_s=1)
    sampler.sample()
    (_, values), = sampler.series()
    if sampler.source == "psutil":
        assert set(values) == {"cpu util %", "cpu mem %"}
    assert all(0.0 <= v <= 100.0 for v in values.values())


def test_assets_are_local_and_the_vendored_uplot_is_the_pinned_one(api: TestClient) -> None:
    page = api.get("/").text
    sources = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert sources and all(s.startswith("/") for s in sources), sources  # nothing from a CDN
    for asset in ("/static/vendor/uPlot.iife.min.js", "/static/vendor/uPlot.min.css", "/static/dashboard.js", "/static/dashboard.css"):
        assert api.get(asset).status_code == 200
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]["uplot"]
    assert f"uPlot (v{pinned})" in api.get("/static/vendor/uPlot.iife.min.js").text
    installed = REPO / "node_modules" / "uplot" / "dist" / "uPlot.iife.min.js"
    if installed.is_file():  # after `npm ci`: the vendored copy is byte for byte the npm package's
        assert installed.read_bytes() == api.get("/static/vendor/uPlot.iife.min.js").content


def test_demo_serve_stops_before_anything_when_its_port_is_taken(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "demo", "--serve", "--port", str(port),
                               "--workdir", str(tmp_path / "demo")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "in use" in proc.stderr, proc.stderr
    assert not (tmp_path / "demo").exists()


def test_nvml_sampling_reads_each_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where nvidia-ml-py answers, each GPU's utilisation and memory are sampled (a stand-in NVML here)."""
    import sys
    from types import SimpleNamespace

    fake = SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=[35, 90][h]),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=[4, 60][h] * 2**30, total=80 * 2**30))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = ResourceSampler(interval_s=1)
    sampler.sample()
    (_, values), = sampler.series()
    assert sampler.source == "nvml"
    assert values == {"gpu0 util %": 35.0, "gpu0 mem %": 5.0, "gpu1 util %": 90.0, "gpu1 mem %": 75.0}


def test_the_table_shows_the_latest_jobs_when_there_are_many(world: World, coordinator: Coordinator) -> None:
    from llmos_chain.dashboard.views import table

    for _ in range(4):
        world.post()
    coordinator.follower.poll()
    rows, total = table([Provider("p", coordinator)], limit=3)
    assert total == 4 and [r["id"] for r in rows] == [2, 3, 4]
