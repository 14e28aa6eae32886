"""The demo as CI runs it: every job settles and the client reads back the worker's sealed result."""

from __future__ import annotations

import json
import subprocess
import sys

from llmos_chain.demo import sample_dataset


def test_demo_json_summary() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "demo", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [j["state"] for j in result["jobs"]] == ["settled"] * 3
    assert {j["worker_name"] for j in result["jobs"]} == {"l4-node", "h100-node"}  # the 4-GPU job needs the H100 node
    assert all(set(j["gas"]) == {"post", "assign", "grant", "submit", "accept"} for j in result["jobs"])
    rows = [json.loads(line) for line in sample_dataset().read_text().splitlines()]
    report = result["client_opened"]["report"]
    assert report["examples"] == len(rows) == sum(report["labels"].values())
