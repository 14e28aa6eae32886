"""`llmos bench scale --json`: the interface other checks read (its shape, not its speed: the README shows that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ENTRY = [sys.executable, "-m", "llmos_chain.cli.main"]


@pytest.mark.slow
def test_bench_scale_json_interface() -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([*ENTRY, "bench", "scale", "--json", "--steps", "6", "--ranks", "2"], capture_output=True, text=True,
                          timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    runs = {run["ranks"]: run for run in result["runs"]}
    assert set(runs) == {1, 2}  # the 1-rank baseline is always run
    for run in runs.values():
        assert {"ranks", "nodes", "tokens_per_s", "efficiency", "startup_s", "placement"} <= set(run)
        assert run["tokens_per_s"] > 0 and run["startup_s"] > 0 and len(run["placement"]) == run["ranks"]
    assert runs[1]["efficiency"] == 1.0 and runs[1]["nodes"] == 1
    assert runs[2]["nodes"] == 2  # two local nodes of one slot each: the 2-rank job spans both
    assert runs[2]["efficiency"] == pytest.approx(runs[2]["tokens_per_s"] / (2 * runs[1]["tokens_per_s"]))
    assert result["threads_per_rank"] == 1
