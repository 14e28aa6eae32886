"""`llmos bench soak`: two good jobs, no faults, through the real daemons behind the (idle) fault proxy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmos_chain.bench.soak import missing_requirements, percentile


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([5.0], 99) == 5.0


@pytest.mark.slow
@pytest.mark.anvil
@pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements()))
def test_soak_without_faults_settles_every_job() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "soak", "--jobs", "2", "--json", "--timeout-s", "240"],
                          capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    for key in ("jobs", "settled", "lost", "duplicate_txs", "infra_failures", "wasted_gas", "latency", "proxy", "faults", "wall_s"):
        assert key in result, key
    assert result["jobs"] == 2
    assert (result["settled"], result["lost"], result["duplicate_txs"], result["infra_failures"]) == (2, 0, 0, 0), result.get("logs")
    assert result["wasted_gas"] == 0 and result["reverted_txs"] == 0 and not result["timed_out"]
    assert result["txs"]["assign"] == result["txs"]["grantAccess"] == result["txs"]["submitResult"] == result["txs"]["accept"] == 2
    for state in ("assigned", "running", "submitted", "settled"):
        lat = result["latency"][state]
        assert lat["n"] == 2 and 0 < lat["p50_s"] <= lat["p99_s"], (state, lat)
    assert result["latency"]["assigned"]["p50_s"] < result["latency"]["settled"]["p50_s"]
    # the daemons talked through the proxy; without faults it injected none
    assert result["proxy"]["requests"] > 0 and result["proxy"]["faults"] == {}
    assert result["proxy"]["raw_txs"] >= 8  # assign, grant, submit, accept per job, all through the proxy
    assert result["faults"]["error_rate"] == 0.0


def test_soak_exits_2_with_one_line_when_anvil_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import llmos_chain.bench.soak as soak_module
    from llmos_chain.cli.main import app

    monkeypatch.setattr(soak_module, "missing_requirements", lambda: "anvil not found: run `make setup`")
    result = CliRunner().invoke(app, ["bench", "soak", "--jobs", "1", "--json"])
    assert result.exit_code == 2
    assert "anvil not found" in result.output and "Traceback" not in result.output
