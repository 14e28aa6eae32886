"""`llmos bench pipeline --json`: the interface other checks read and what each part measures (not its speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES

pytestmark = [pytest.mark.anvil, pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")]


def test_bench_pipeline_json_interface() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "pipeline", "--json", "--jobs", "12",
                           "--latency-jobs", "6"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    node = result["node_ceiling"]
    assert result["node_tx_per_s"] == node["tx_per_s"] > 0 and node["transfers"] >= 100
    for part, batch in (("batched", "all"), ("one_tx_per_job", "all"), ("baseline_one_per_cycle", 1)):
        run = result[part]
        assert run["assigned"] == run["jobs"] == 12 and run["batch"] == batch and run["jobs_per_s"] > 0
    assert result["baseline_one_per_cycle"]["cycles"] >= 12 > result["batched"]["cycles"]  # one job a cycle vs all at once
    # the default coordinator puts a worker's jobs in assignMany transactions; the others send one per job
    assert result["batched"]["transactions"] < 12 == result["one_tx_per_job"]["transactions"] == result["baseline_one_per_cycle"]["transactions"]
    assert result["jobs_per_s"] == result["batched"]["jobs_per_s"]
    assert result["vs_node"] == pytest.approx(result["jobs_per_s"] / result["node_tx_per_s"])
    assert result["target_jobs_per_s"] == pytest.approx(min(40.0, 0.8 * result["node_tx_per_s"]))
    assert result["meets_target"] == (result["jobs_per_s"] >= result["target_jobs_per_s"])
    live = result["latency_1s_blocks"]
    assert live["assigned"] == live["jobs"] == 6 and live["block_time_s"] == 1.0
    # a job is assigned in a later block than the one it was posted in: at least 1 block, never 0
    assert 1 <= live["median_latency_blocks"] <= live["max_latency_blocks"]
    assert result["median_latency_blocks"] == live["median_latency_blocks"]
