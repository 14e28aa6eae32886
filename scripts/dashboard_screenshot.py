"""Take the README's dashboard screenshot: `llmos demo --serve` in the background, headless Chromium on its
dashboard once every job settled, then Ctrl-C. Usage: python scripts/dashboard_screenshot.py [OUT.png]"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from llmos_chain.chain.devchain import free_port

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="llmos-shot-") as tmp:
        log = open(Path(tmp) / "demo.log", "w+")
        demo = subprocess.Popen([sys.executable, "-m", "llmos_chain.cli.main", "demo", "--serve", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 900
            while "Ctrl-C stops" not in (Path(tmp) / "demo.log").read_text():
                if demo.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the demo ended early:\n{(Path(tmp) / 'demo.log').read_text()[-3000:]}")
                time.sleep(1)
            time.sleep(12)  # a few more resource samples, and every fragment refreshed
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("#resource-chart canvas")
                time.sleep(3)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), full_page=True)
                page.goto(f"http://127.0.0.1:{port}/job/1")
                page.wait_for_selector("#loss-chart canvas")
                page.screenshot(path=str(out.with_name(out.stem + "-job.png")), full_page=True)
                browser.close()
        finally:
            os.killpg(demo.pid, signal.SIGINT)
            demo.wait(60)
    print(out)


if __name__ == "__main__":
    main()
