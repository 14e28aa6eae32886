"""The job lifecycle's gas against the committed snapshot (gas-snapshot.json) and the v2 targets.

Regenerate the snapshot with `scripts/gas_snapshot.py` when a change is meant to cost more (or less).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmos_chain.bench.gas import SNAPSHOT, measure, snapshot_view

TOLERANCE = 0.02
#: The v2 targets: one job's five steps (post, assign, grant, submit, accept) in ETH and in an ERC-20 (with a
#: hybrid client key), and per job when 10 jobs go through each step as one batched transaction.
TARGET_ETH = 250_000
TARGET_ERC20 = 270_000
TARGET_BATCHED_PER_JOB = 120_000


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    return measure()


def _flatten(view: dict[str, Any], prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in view.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = int(value)
    return out


def test_no_call_regressed_beyond_tolerance(measured: dict[str, Any]) -> None:
    committed = _flatten(json.loads(SNAPSHOT.read_text()))
    now = _flatten(snapshot_view(measured))
    assert committed.keys() == now.keys(), "the snapshot's shape changed: run scripts/gas_snapshot.py"
    regressions = {k: (committed[k], now[k]) for k in now if now[k] > committed[k] * (1 + TOLERANCE)}
    assert not regressions, f"gas regressions over {TOLERANCE:.0%} (committed, now): {regressions}; if intended, run scripts/gas_snapshot.py"


def test_the_snapshot_covers_every_step(measured: dict[str, Any]) -> None:
    view = snapshot_view(measured)
    steps = {"postJob", "assign", "grantAccess", "submitResult", "accept", "withdraw"}
    assert set(view["calls"]) == steps and set(view["calls_erc20"]) == steps
    assert set(view["batched"]["steps"]) == {"postJobs", "assign", "grantAccess", "submitResult", "accept"}
    assert view["batched"]["size"] == 10
    assert set(view["total"]) == set(view["first_job_total"]) == {"eth", "erc20"}


def test_one_eth_job_is_under_target(measured: dict[str, Any]) -> None:
    assert measured["total"]["eth"] <= TARGET_ETH, f"one ETH job costs {measured['total']['eth']} gas (target {TARGET_ETH})"


def test_one_erc20_job_is_under_target(measured: dict[str, Any]) -> None:
    assert measured["total"]["erc20"] <= TARGET_ERC20, f"one ERC-20 job costs {measured['total']['erc20']} gas (target {TARGET_ERC20})"


def test_a_batched_job_is_under_target(measured: dict[str, Any]) -> None:
    per_job = measured["batched"]["per_job"]["eth"]
    assert per_job <= TARGET_BATCHED_PER_JOB, f"a job in a batch of 10 costs {per_job} gas (target {TARGET_BATCHED_PER_JOB})"


def test_the_bench_reports_the_same_targets(measured: dict[str, Any]) -> None:
    # `llmos bench gas` prints these next to the figures: they must not drift from what this test enforces.
    assert measured["targets"] == {"eth": TARGET_ETH, "erc20": TARGET_ERC20, "batched_per_job_eth": TARGET_BATCHED_PER_JOB}
