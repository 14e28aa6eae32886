"""The demo as CI runs it: every job settles and audits, the MiniLM job's accuracy rises, the client uses its model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # ~1-2 min: three real fine-tuning runs


def test_demo_json_summary() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "demo", "--json"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    jobs = result["jobs"]
    assert len(jobs) == 3
    assert [j["state"] for j in jobs] == ["settled"] * 3
    assert [j["audit"] for j in jobs] == ["pass"] * 3
    for job in jobs:
        assert all(job["audit_checks"].values()), job["audit_checks"]
        assert set(job["gas"]) == {"post", "assign", "grant", "submit", "accept"} and all(g > 0 for g in job["gas"].values())
        improved = job["metric_after"] > job["metric_before"] if job["higher_is_better"] else job["metric_after"] < job["metric_before"]
        assert improved, job
    minilm = jobs[0]
    assert "MiniLM" in minilm["title"] and minilm["metric"] == "accuracy"
    assert minilm["metric_after"] >= minilm["metric_before"] + 0.3
    # the 4-GPU job only fits the big node; the cheap node takes the rest (and is the only one accepting LTT)
    assert [j["worker"] for j in jobs] == ["l4-node", "a100-node", "l4-node"]
    assert {(w["provider"], w["token"]) for w in result["withdrawals"]} == {("a100-node", "ETH"), ("l4-node", "ETH"), ("l4-node", "LTT")}
    assert result["predictions"]["served_at"].startswith("http://127.0.0.1:")  # asked over HTTP, not in-process
    answers = result["predictions"]["answers"]
    assert [a["label"] for a in answers][:3] == ["order_status", "refund", "technical_issue"]
