"""`llmos bench alloc` on the cluster family: the split allocation beside today's packed MILP and greedy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmos_chain.bench.alloc import ALL_FAMILIES, DEFAULT_RUNS, SPLIT_FAMILIES, instance


def test_cluster_instances_have_jobs_larger_than_a_node() -> None:
    jobs, nodes = instance(400, 40, seed=0, family="cluster")
    assert all(n.free_gpus <= 8 for n in nodes) and max(n.free_gpus for n in nodes) == 8
    big = [j for j in jobs if j.gpus > 8]
    assert 0.05 <= len(big) / len(jobs) <= 0.15  # about a tenth
    assert instance(400, 40, seed=0, family="cluster") == (jobs, nodes)  # seeded
    assert "cluster" in SPLIT_FAMILIES and "cluster" in ALL_FAMILIES and ("cluster", 2000, 200) in DEFAULT_RUNS


def test_bench_alloc_json_cluster_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "alloc", "--json", "--sizes", "60x6",
                           "--families", "random,cluster"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert [(r["family"], r["jobs"], r["workers"]) for r in runs] == [("random", 60, 6), ("cluster", 60, 6)]
    r = runs[1]
    fields = {"family", "jobs", "workers", "seed", "solve_s", "packed_s", "greedy_s", "gap", "packed_gap", "greedy_gap",
              "vs_greedy", "vs_packed", "status", "cost", "bound", "packed_cost", "greedy_cost", "assigned", "packed_assigned",
              "greedy_assigned", "split_jobs", "oversize_jobs", "oversize_placed", "gpus_requested", "gpus_free", "gpus_used",
              "packed_gpus_used", "time_limit_s", "notes"}
    assert fields <= set(r) and r["time_limit_s"] == 2.0
    assert r["bound"] <= r["cost"] <= r["packed_cost"] * 1.005 and r["packed_cost"] <= r["greedy_cost"] * 1.005
    assert r["gap"] == pytest.approx((r["cost"] - r["bound"]) / r["cost"])
    assert r["packed_gap"] == pytest.approx((r["packed_cost"] - r["bound"]) / r["packed_cost"])
    assert r["gpus_used"] <= r["gpus_free"] <= r["gpus_requested"] and r["oversize_placed"] <= r["oversize_jobs"]
    assert r["split_jobs"] <= r["assigned"] and r["gap"] <= 0.01
    jobs, nodes = instance(60, 6, seed=0, family="cluster")
    assert r["gpus_requested"] == sum(j.gpus for j in jobs) and r["gpus_free"] == sum(n.free_gpus for n in nodes)


def test_bench_alloc_human_output_shows_the_split_table() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "alloc", "--sizes", "40x4", "--families", "cluster"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    assert "Split allocation" in proc.stdout and "split jobs" in proc.stdout and "MILP (HiGHS) vs greedy" not in proc.stdout
