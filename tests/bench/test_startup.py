"""`llmos bench startup --json`: the interface other checks read (its shape, not its speed: the benchmark shows that)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llmos_chain.bench import startup

ENTRY = [sys.executable, "-m", "llmos_chain.cli.main"]


def _medians_ok(result: dict) -> None:
    assert set(result["commands"]) == set(startup.COMMANDS) >= {"--help", "job --help", "job post --help", "--version"}
    assert all(isinstance(v, float) and v > 0 for v in result["commands"].values()), result["commands"]
    assert result["max_median_s"] == max(result["commands"].values())


def test_bench_startup_json_interface() -> None:
    proc = subprocess.run([*ENTRY, "bench", "startup", "--json", "--runs", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    _medians_ok(result)
    assert result["runs"] == 2 and result["python"] == sys.executable
    assert any(args[-1] != "--help" and rc == 2 for args, rc in startup.COMMANDS.values())  # an argument error is timed
    assert "baseline" not in result


def test_a_baseline_checkout_is_timed_beside_this_one() -> None:
    # This checkout against itself: the same shape twice, the baseline named.
    result = startup.measure(runs=1, baseline=startup.SOURCE)
    _medians_ok(result)
    _medians_ok(result["baseline"])
    assert Path(result["baseline"]["source"]) == startup.SOURCE
