"""The dashboard in a real headless Chromium (Playwright driving Debian's `chromium`, which `make setup` installs): a
real fine-tuning job on the embedded chain moves Open → Settled on the page without a reload, its page plots a loss
curve with one point per trajectory record, and the resource chart is drawn. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmos_chain.chain.devchain import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"

try:
    import playwright.sync_api  # noqa: F401

    PLAYWRIGHT = True
except ImportError:
    PLAYWRIGHT = False

pytestmark = [
    pytest.mark.slow,  # ~1 min: a real fine-tuning run, watched in a browser
    pytest.mark.skipif(not CHROMIUM.exists(), reason="browser tests: no Chromium at /usr/bin/chromium; `make setup` installs "
                       "Debian's chromium package when run as root (apt-get install -y chromium)"),
    pytest.mark.skipif(not PLAYWRIGHT, reason="browser tests: the playwright package is missing (`pip install -e .[dev]`)"),
]

#: Records the states each job row of the jobs table has shown, in order, from the moment the page loaded.
WATCH_ROWS = """() => {
  window.__seen = {};
  window.__loadedOnce = window.__loadedOnce || Date.now();
  const record = () => document.querySelectorAll('tr[data-job]').forEach((row) => {
    const states = (window.__seen[row.dataset.job] = window.__seen[row.dataset.job] || []);
    if (states[states.length - 1] !== row.dataset.state) states.push(row.dataset.state);
  });
  record();
  new MutationObserver(record).observe(document.getElementById('jobs'), { childList: true, subtree: true });
}"""


@dataclass
class DemoRun:
    """`llmos demo --serve`'s machinery in a thread: the dashboard over both providers while one real job runs."""

    root: Path
    url: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    saw_open: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] = field(default_factory=dict)
    error: list[BaseException] = field(default_factory=list)
    gated: bool = False

    def on_ready(self, coordinators: list[tuple[str, Any]]) -> None:
        from llmos_chain.api import create_app
        from llmos_chain.dashboard import Provider
        from llmos_chain.dashboard.server import bind, serve_in_thread

        port = free_port()
        serve_in_thread(create_app(coordinators[0][1], dashboard=[Provider(n, c) for n, c in coordinators]), bind(port))
        self.url = f"http://127.0.0.1:{port}/"
        self.ready.set()

    def progress(self, message: str, rows: list[dict[str, Any]]) -> None:
        # After the coordinators' first step the job is Open in their stores (its assignment is read at the next step):
        # the demo waits there until the browser has seen it Open, so the test sees every state, not a lucky subset.
        if message.startswith("allocating, granting, fine-tuning, accepting") and not self.gated:
            self.gated = True
            self.saw_open.wait(120)

    def hold(self, result: dict[str, Any], step: Any) -> None:
        self.result.update(result)
        self.holding.set()
        while not self.release.wait(0.5):
            step()

    def run(self) -> None:
        from llmos_chain.demo import JOBS, run_demo

        try:
            # one job (tiny BERT, paid in the test token, so the cheap provider takes it): the dashboard shows both
            run_demo(workdir=self.root, progress=self.progress, on_ready=self.on_ready, hold=self.hold, jobs=(JOBS[2],),
                     time_limit_s=600)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error.append(exc)
            self.ready.set()
            self.holding.set()


@pytest.fixture()
def demo(tmp_path: Path) -> Iterator[DemoRun]:
    run = DemoRun(tmp_path / "demo")
    thread = threading.Thread(target=run.run, daemon=True)
    thread.start()
    try:
        assert run.ready.wait(300), "the demo's dashboard did not come up"
        assert not run.error, run.error
        yield run
    finally:
        run.saw_open.set()
        run.release.set()
        thread.join(600)


@pytest.fixture()
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_a_job_moves_open_to_settled_live_and_its_page_plots_every_trajectory_record(demo: DemoRun, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(demo.url)
    page.evaluate(WATCH_ROWS)
    page.evaluate("() => { window.__sameDocument = 'not reloaded'; }")

    row = page.locator("tr[data-job]").first
    row.wait_for(timeout=120_000)
    page.wait_for_selector('tr[data-job][data-state="open"]', timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "01-open.png"), full_page=True)
    demo.saw_open.set()

    page.wait_for_selector('tr[data-job][data-state="settled"]', timeout=600_000)
    assert not demo.error, demo.error
    job_id = int(page.locator('tr[data-job][data-state="settled"]').first.get_attribute("data-job") or 0)
    assert page.evaluate("() => window.__sameDocument") == "not reloaded"  # the page moved by itself
    seen = page.evaluate("() => window.__seen")[str(job_id)]
    assert seen[0] == "open" and seen[-1] == "settled", seen
    assert seen.index("open") < seen.index("settled")
    # the timeline of the row lists each transition with its block
    timeline = page.locator(f'tr[data-job="{job_id}"] .timeline li').all_inner_texts()
    assert [t.split()[0] for t in timeline] == ["open", "assigned", "running", "submitted", "settled"], timeline
    assert "pass" in page.locator(f'tr[data-job="{job_id}"] td[data-label="audit"]').inner_text()

    # the filter by state, applied in place
    page.select_option("#state-filter", "open")
    page.wait_for_selector("#jobs .empty", timeout=10_000)
    assert page.locator("tr[data-job]").count() == 0 and page.url.endswith("/?state=open")
    page.select_option("#state-filter", "settled")
    page.wait_for_selector(f'tr[data-job="{job_id}"][data-state="settled"]', timeout=10_000)
    page.select_option("#state-filter", "all")
    assert page.evaluate("() => window.__sameDocument") == "not reloaded"

    # the resource chart: drawn (a canvas) from the coordinator's samples
    chart = page.locator("#resource-chart")
    page.wait_for_selector("#resource-chart canvas", timeout=30_000)
    assert int(chart.get_attribute("data-points") or 0) >= 1 and int(chart.get_attribute("data-series") or 0) >= 1
    page.screenshot(path=str(ARTIFACTS / "02-settled.png"), full_page=True)

    # the job's page: its history and a loss curve with one point per trajectory record
    page.click(f'tr[data-job="{job_id}"] a[href="/job/{job_id}"]')
    page.wait_for_url(f"**/job/{job_id}")
    records = [line for line in (demo.root / "results" / str(job_id) / "trajectory.jsonl").read_text().splitlines() if line.strip()]
    assert len(records) >= 2
    page.wait_for_selector("#loss-chart canvas", timeout=30_000)
    page.wait_for_function(f"() => document.getElementById('loss-chart').dataset.points === '{len(records)}'", timeout=30_000)
    assert page.locator("#job-state").inner_text() == "settled"
    history = page.locator("table.history tr[data-event]").evaluate_all("rows => rows.map(r => r.dataset.event)")
    assert history[0] == "JobPosted" and "ResultSubmitted" in history and history[-1] == "JobSettled", history
    for name in ("trajectory.jsonl", "metrics.json", "attestation.json"):
        assert page.locator(f'a[href="/jobs/{job_id}/result/{name}"]').count() == 1
    page.screenshot(path=str(ARTIFACTS / "03-job.png"), full_page=True)

    # a phone's width: no sideways scrolling, the tables become cards
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(demo.url)
    page.wait_for_selector("#resource-chart canvas", timeout=30_000)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(ARTIFACTS / "04-phone.png"), full_page=True)
    shutil.copy(ARTIFACTS / "02-settled.png", ARTIFACTS / "dashboard.png")

    # held up like `llmos demo --serve`: the client's model stays served beside the dashboard
    assert demo.holding.wait(300) and not demo.error, demo.error
    from llmos_chain.serving import ask

    served = demo.result["serving"]
    assert served["job"] == job_id and str(served["url"]).startswith("http://127.0.0.1:")
    answer = ask(served["url"], "/v1/classify", {"text": "please refund order #55501"})
    assert isinstance(answer["label"], str) and 0.0 <= answer["score"] <= 1.0
