"""Verification by re-execution, end to end on the embedded chain: a worker's result is disputed, the owner's agent
grants the data to the arbiter, and the arbiter's daemon replays the training and decides.

Honest jobs verify and the worker is paid. Each cheat (fewer steps than attested, other data, swapped final weights,
fabricated records, another base model) is caught at the interval where it began, the dispute goes against the
worker, the worker is slashed and the client refunded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import pytest
import torch

from llmos_chain.agent import Agent, GrantPolicy
from llmos_chain.arbiter import Arbiter, ArbiterPolicy
from llmos_chain.audit import audit_job
from llmos_chain.chain.market import JobState, get_job
from llmos_chain.crypto.keys import EncryptionKey
from llmos_chain.datasets import Manifest, manifest_path
from llmos_chain.recipe import Recipe
from llmos_chain.store import Store
from llmos_chain.verification import verify_job
from tests.worker.test_runner import Setup
from worker import cheats, train

STEPS, EVERY = 40, 5  # 8 intervals of 5 steps


def _recipe(task: str = "sequence-classification", method: str = "lora", config: str = "tiny-bert") -> Recipe:
    return Recipe.parse(json.dumps({
        "task": task, "method": method, "base_model": {"kind": "config", "name": config},
        "hyper": {"steps": STEPS, "learning_rate": 2e-2 if method == "lora" else 3e-3, "batch_size": 16, "max_length": 32,
                  "trajectory_every": EVERY},
    }))


CHEATS = {name: (trainer, began(STEPS // EVERY)) for name, (trainer, began) in cheats.CHEATS.items()}


# ------------------------------------------------------------------------------------------ the flow


class Market:
    """The parties around one worker: its jobs are disputed, the owner's agent grants, the arbiter decides."""

    def __init__(self, setup: Setup, tmp: Path) -> None:
        self.setup, self.w, self.tmp = setup, setup.world, tmp
        self.arbiter_key = EncryptionKey.generate()
        self.policy = ArbiterPolicy(results=(str(tmp / "results"),), margin_s=60)
        self.arbiter = Arbiter(self.w.suite, Store(tmp / "arbiter.db"), self.w.arbiter, self.arbiter_key, self.policy, tmp / "reports")
        self.arbiter.ensure_key()  # before any job runs: workers seal checkpoints to it

    def run(self, raw: bytes, recipe: Recipe, trainer: type[train.Trainer] | None, monkeypatch: pytest.MonkeyPatch) -> int:
        job_id = self.setup.job(raw, recipe)
        with monkeypatch.context() as m:
            if trainer is not None:
                m.setattr(train, "Trainer", trainer)
            result = self.setup.run(job_id)
        self.w.act(self.w.operator).submit(job_id, result.attestation, result.signature)
        return job_id

    def dispute_and_decide(self, job_id: int) -> Any:
        w = self.w
        w.act(w.client).dispute(job_id, b"\x01" * 32)
        view = get_job(w.suite, job_id)
        sealed = sorted(self.tmp.glob("job*/data.sealed"))[-1]
        key_id = Manifest.load(manifest_path(sealed)).key_id
        agent = Agent(w.suite, Store(self.tmp / f"agent{job_id}.db"), owner=w.owner, keystore=self.setup.store,
                      grants=GrantPolicy({view.dataset_id: key_id}))
        for _ in range(3):
            agent.step()
        return self.arbiter.step()


def _worker_stake(w: Any, job_id: int) -> int:
    from llmos_chain.chain.market import worker_record

    return int(worker_record(w.suite, w.job(job_id).worker_id).stake)


def _evidence(w: Any, job_id: int) -> dict[str, Any]:
    logs = w.suite.market.events.DisputeEvidence().get_logs(from_block=0, argument_filters={"jobId": job_id})
    assert len(logs) == 1
    return dict(logs[0]["args"])


@pytest.fixture
def market(setup: Setup, tmp_path: Path) -> Market:
    return Market(setup, tmp_path)


def test_an_honest_lora_job_verifies_and_the_worker_is_paid(market: Market, intents_jsonl: bytes,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    w = market.w
    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)
    bundle = market.tmp / "results" / str(job_id)
    assert len(list((bundle / "checkpoints").glob("*.sealed"))) == STEPS // EVERY  # one per record, sealed
    audit = audit_job(w.suite, job_id, bundle)
    assert next(c for c in audit.checks if c.name == "checkpoints published").ok
    report = market.dispute_and_decide(job_id)
    assert report.resolved == {job_id: True}
    for _ in range(3):
        market.arbiter.step()
    assert w.job(job_id).state is JobState.SETTLED
    assert next(c for c in audit_job(w.suite, job_id).checks if c.name == "dispute outcome matches its replay").ok
    ev = _evidence(w, job_id)
    assert ev["interval"] == STEPS // EVERY - 1  # the last interval checked
    assert ev["expected"] == ev["replayed"] != bytes(32)
    decided = json.loads((market.tmp / "reports" / f"{job_id}.json").read_text())
    # the arbiter replays every interval (one replay each: a checkpoint at every record), the first and the last first
    assert decided["agrees"] and decided["complete"] and decided["replay_count"] == STEPS // EVERY
    assert [r["interval"] for r in decided["replays"]] == [0, STEPS // EVERY - 1, *range(1, STEPS // EVERY - 1)]
    assert blake3.blake3((market.tmp / "reports" / f"{job_id}.json").read_bytes().rstrip(b"\n")).digest() == ev["reportHash"]


def test_an_honest_full_causal_lm_job_verifies_every_interval(market: Market, intents_jsonl: bytes,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    w = market.w
    job_id = market.run(intents_jsonl, _recipe("causal-lm", "full", "tiny-gpt2"), None, monkeypatch)
    w.act(w.client).dispute(job_id, b"\x02" * 32)
    view = get_job(w.suite, job_id)
    sealed = sorted(market.tmp.glob("job*/data.sealed"))[-1]
    agent = Agent(w.suite, Store(market.tmp / "agent.db"), owner=w.owner, keystore=market.setup.store,
                  grants=GrantPolicy({view.dataset_id: Manifest.load(manifest_path(sealed)).key_id}))
    agent.step()
    agent.step()
    finding = verify_job(w.suite, job_id, market.tmp / "results" / str(job_id), market.arbiter_key, market.tmp / "v", every=True)
    assert finding.agrees, finding.detail
    assert len(finding.replays) == STEPS // EVERY


@pytest.mark.slow
@pytest.mark.parametrize("cheat", list(CHEATS))
def test_a_cheat_is_caught_at_its_interval_and_the_worker_slashed(cheat: str, market: Market, intents_jsonl: bytes,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    w = market.w
    trainer, began = CHEATS[cheat]
    job_id = market.run(intents_jsonl, _recipe(), trainer, monkeypatch)
    stake = _worker_stake(w, job_id)
    escrow = w.job(job_id).escrow
    report = market.dispute_and_decide(job_id)
    assert report.resolved == {job_id: False}, market.arbiter.decisions()
    for _ in range(3):
        market.arbiter.step()
    assert w.job(job_id).state is JobState.REFUNDED
    audit = audit_job(w.suite, job_id)
    assert next(c for c in audit.checks if c.name == "dispute outcome matches its replay").ok
    ev = _evidence(w, job_id)
    assert ev["interval"] == began, json.loads((market.tmp / "reports" / f"{job_id}.json").read_text())["detail"]
    assert ev["expected"] != ev["replayed"]
    slashed = stake - _worker_stake(w, job_id)
    assert slashed > 0
    bond = int(w.suite.market.functions.disputeBond().call())
    assert int(w.suite.market.functions.credits("0x" + "00" * 20, w.client.address).call()) == escrow + bond + slashed
    decided = json.loads((market.tmp / "reports" / f"{job_id}.json").read_text())
    assert decided["replay_count"] <= 2 + 3  # the ends, then at most ceil(log2(7)) bisection steps for 8 intervals


def test_the_fewer_steps_cheat_is_caught(market: Market, intents_jsonl: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast suite's representative of the cheats above: caught at interval 3 by bisection, worker slashed."""
    test_a_cheat_is_caught_at_its_interval_and_the_worker_slashed("fewer_steps", market, intents_jsonl, monkeypatch)


def test_without_the_owners_grant_the_arbiter_waits_then_leaves_the_default(market: Market, intents_jsonl: bytes,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    w = market.w
    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)
    w.act(w.client).dispute(job_id, b"\x03" * 32)
    report = market.arbiter.step()
    assert report.waiting == [job_id] and not report.resolved
    window = int(w.suite.market.functions.disputeWindow().call())
    w.advance(window - market.policy.margin_s)  # inside the margin before the deadline: stop waiting
    report = market.arbiter.step()
    assert report.left_to_default == [job_id] and not report.resolved
    assert w.job(job_id).state is JobState.DISPUTED  # nothing sent: the market's default outcome will apply



@pytest.mark.slow
def test_bench_verify_reports_the_ratio_and_catches_every_cheat() -> None:
    """`llmos bench verify --json` on a small job: its fields, an honest job agreeing, every cheat found where it began."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "verify", "--json", "--model", "tiny-bert",
                          "--interval-steps", "5", "--intervals", "8"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    for name in ("replay_s", "train_s", "ratio", "intervals", "bisection_replays", "caught"):
        assert name in result
    assert result["ratio"] == pytest.approx(result["replay_s"] / result["train_s"], rel=1e-2)
    assert result["honest_agrees"] is True
    assert result["caught"] == {name: began(8) for name, (_, began) in cheats.CHEATS.items()}
    assert result["bisection_replays"] <= result["max_bisection_replays"] == 5


def test_the_audit_flags_an_outcome_its_evidence_contradicts(market: Market, intents_jsonl: bytes,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An arbiter that records agreeing hashes and still rules against the worker is visible to anyone."""
    from llmos_chain.chain.market import ReplayEvidence

    w = market.w
    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)
    w.act(w.client).dispute(job_id, b"\x04" * 32)
    same = b"\x11" * 32
    w.act(w.arbiter).resolve_with_evidence(job_id, False, ReplayEvidence(2, same, same, b"\x22" * 32))
    check = next(c for c in audit_job(w.suite, job_id).checks if c.name == "dispute outcome matches its replay")
    assert not check.ok and "interval 2" in check.detail


def test_after_the_deadline_the_arbiter_sends_nothing(market: Market, intents_jsonl: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A granted dispute found only after its deadline: the market's default applies, the arbiter sends nothing."""
    w = market.w
    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)
    w.act(w.client).dispute(job_id, b"\x05" * 32)
    window = int(w.suite.market.functions.disputeWindow().call())
    w.advance(window + 1)
    report = market.arbiter.step()
    assert report.left_to_default == [job_id] and not report.resolved
    assert "deadline passed" in market.arbiter.decisions()[0]["detail"]
    assert market.arbiter.store.db.execute("SELECT COUNT(*) AS n FROM outbox").fetchone()["n"] == 0
