"""The job lifecycle's gas against the committed snapshot (gas-snapshot.json) and the 350k target."""

from __future__ import annotations

import json

import pytest

from llmos_chain.bench.gas import SNAPSHOT, measure, snapshot_view

TOLERANCE = 0.02
TARGET = 350_000


@pytest.fixture(scope="module")
def measured() -> dict:
    return snapshot_view(measure())


def _flatten(view: dict, prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in view.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = int(value)
    return out


def test_no_call_regressed_beyond_tolerance(measured: dict) -> None:
    committed = _flatten(json.loads(SNAPSHOT.read_text()))
    now = _flatten(measured)
    assert committed.keys() == now.keys(), "the snapshot's shape changed: run scripts/gas_snapshot.py"
    regressions = {k: (committed[k], now[k]) for k in now if now[k] > committed[k] * (1 + TOLERANCE)}
    assert not regressions, f"gas regressions over {TOLERANCE:.0%} (committed, now): {regressions}; if intended, run scripts/gas_snapshot.py"


def test_full_eth_lifecycle_is_under_target(measured: dict) -> None:
    assert measured["total"]["eth"] < TARGET
    assert sum(measured["calls"].values()) == measured["total"]["eth"]
