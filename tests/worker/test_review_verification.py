"""Adversarial review of verification by re-execution (issue 15): each test shows one finding."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from llmos_chain.chain.market import JobState
from tests.worker.test_verification import Market, _recipe, market  # noqa: F401  (fixture)
from worker import train, verify


class MiddlePoison(train.Trainer):
    """Trains honestly except for one tampering inside interval 3 (step 17), then honestly again from the tampered
    weights: the first and the last interval both replay correctly from their own checkpoints."""

    def train_step(self) -> tuple[float, int]:
        out = super().train_step()
        if self.step == 17:
            with torch.no_grad():
                for _, p in self.named:
                    p.add_(0.05)
        return out


def test_a_worker_who_tampers_only_in_a_middle_interval_is_not_paid(market: Market, intents_jsonl: bytes,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = market.run(intents_jsonl, _recipe(), MiddlePoison, monkeypatch)
    report = market.dispute_and_decide(job_id)
    # the trajectory does not follow from the recipe on the data (interval 3 disagrees), yet only the ends are replayed
    assert report.resolved == {job_id: False}, market.arbiter.decisions()


def test_a_result_source_that_does_not_answer_is_waited_for_then_counts_as_not_published(
        market: Market, intents_jsonl: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The result sources are the provider's: one that does not answer is waited for while there is time, and near the
    deadline the bundle counts as not published (else a cheating worker would dodge every dispute by letting its API
    hang)."""
    from llmos_chain import arbiter as arbiter_mod
    from llmos_chain.errors import LlmosError

    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)

    def lagging(source: str, job: int, dest: Path) -> Path:
        raise LlmosError("connection timed out")

    monkeypatch.setattr(arbiter_mod, "fetch_bundle", lagging)
    report = market.dispute_and_decide(job_id)
    assert report.waiting == [job_id] and not report.resolved  # time left: wait
    market.arbiter.policy = arbiter_mod.ArbiterPolicy(results=market.policy.results, margin_s=10**9)  # always "late"
    report = market.arbiter.step()
    assert report.resolved == {job_id: False}, market.arbiter.decisions()


@pytest.mark.parametrize("line", [b'{"step": "x", "weights_hash": "00"}', b'[1, 2]', b'7', b'{"step": null}', b'not json', b'{"step": 5}'])
def test_verify_serves_an_error_not_a_traceback_for_a_malformed_trajectory(tmp_path: Path, line: bytes) -> None:
    records = verify.record_list(line + b"\n")
    try:
        verdict = verify.check(_session(records))
    except verify.CheckpointError:  # an LlmosError: serve_request reports it as {"event": "error"}, exit 2
        return
    assert not verdict.agrees


def _session(records: list) -> verify.Session:
    s = verify.Session.__new__(verify.Session)
    s.records, s.steps, s.setup_s = records, [5], 0.0
    s.checkpoints = lambda k: b""
    return s


def test_a_worker_whose_checkpoint_endpoint_fails_cannot_run_out_the_dispute_clock(
        market: Market, intents_jsonl: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's API serves the bundle but answers HTTP 500 for its checkpoints: `fetch_checkpoints` raises
    LlmosError, which `Arbiter.step` swallows as node trouble every step, even when late, so the deadline passes and the
    market's default (the worker's claim stands) applies. A bundle that does not come when late is decided against the
    worker; checkpoints that do not come should be too (or at least decided)."""
    from llmos_chain import arbiter as arbiter_mod
    from llmos_chain import results
    from llmos_chain.errors import LlmosError

    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)

    def failing(source: str, job: int, bundle: Path, timeout: float = 60.0) -> int:
        raise LlmosError(f"fetching {source}/jobs/{job}/checkpoint/3 failed: HTTP 500 Internal Server Error")

    monkeypatch.setattr(results, "fetch_checkpoints", failing)
    market.arbiter.policy = arbiter_mod.ArbiterPolicy(results=market.policy.results, margin_s=10**9)  # always "late"
    report = market.dispute_and_decide(job_id)
    assert job_id in report.resolved, market.arbiter.decisions()


def test_an_arbiter_key_rotated_after_the_run_does_not_slash_an_honest_worker(market: Market, intents_jsonl: bytes,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker sealed its checkpoints to the arbiter key of the time; the arbiter then names a new key (or the
    owner names a new arbiter: `setArbiter` clears the key). `checkpoints.key` no longer unwraps, `prepare` passes no
    checkpoint key, and the first replay that needs a checkpoint is a finding against the honest worker."""
    from llmos_chain.arbiter import Arbiter
    from llmos_chain.crypto.keys import EncryptionKey
    from llmos_chain.store import Store

    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)
    market.arbiter_key = EncryptionKey.generate()
    market.arbiter = Arbiter(market.w.suite, Store(market.tmp / "arbiter2.db"), market.w.arbiter, market.arbiter_key,
                             market.policy, market.tmp / "reports")
    market.arbiter.ensure_key()
    report = market.dispute_and_decide(job_id)
    assert report.resolved.get(job_id) is not False, market.arbiter.decisions()


def test_the_replay_timeout_holds_while_the_replay_process_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    """`verification.replay` checks its deadline only when a line arrives on stdout: a replay (or a setup on a huge
    crafted checkpoint) that prints nothing runs past the budget the arbiter gave it, and so past the dispute deadline."""
    import subprocess
    import sys
    import time

    from llmos_chain import verification
    from llmos_chain.errors import VerificationError

    real = subprocess.Popen

    def silent(args: list[str], **kw: object) -> subprocess.Popen:
        return real([sys.executable, "-c", "import sys, time; sys.stdin.read(); time.sleep(20)"], **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(verification.subprocess, "Popen", silent)
    t0 = time.monotonic()
    with pytest.raises(VerificationError):
        verification.replay(1, {}, timeout_s=1.0)
    assert time.monotonic() - t0 < 10


def test_an_empty_interval_list_is_not_an_agreement() -> None:
    """`check(session, [])` replayed nothing and said "0 interval(s) replayed, all agree" (exit 0 of `worker verify`
    for a request with "intervals": [])."""
    session = _session([{"step": 5, "weights_hash": "ab"}])
    session.replay = lambda i: verify.Replay(i, 0, False, 0, "ab", "cd", "differs", 5, 0.0)  # type: ignore[method-assign]
    assert not verify.check(session, []).agrees


def test_the_owners_agent_grants_once_the_arbiter_names_its_key(market: Market, intents_jsonl: bytes,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A dispute opened while the market has no arbiter key (a new arbiter after `setArbiter`, not yet keyed): the
    agent records "refused" for that dispute for good, so it never grants once the key is named, and the dispute goes
    to the default outcome (the worker's claim stands) however the replay would have gone."""
    from llmos_chain.agent import Agent, GrantPolicy
    from llmos_chain.chain.contracts import Sender
    from llmos_chain.chain.market import MarketClient, get_job
    from llmos_chain.datasets import Manifest, manifest_path
    from llmos_chain.store import Store
    from llmos_chain.verification import verifier_grant

    w = market.w
    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)
    MarketClient(w.suite, Sender(w.suite.w3, w.arbiter)).set_arbiter_key(0)
    w.act(w.client).dispute(job_id, b"\x01" * 32)
    sealed = sorted(market.tmp.glob("job*/data.sealed"))[-1]
    agent = Agent(w.suite, Store(market.tmp / "agent.db"), owner=w.owner, keystore=market.setup.store,
                  grants=GrantPolicy({get_job(w.suite, job_id).dataset_id: Manifest.load(manifest_path(sealed)).key_id}))
    agent.step()
    market.arbiter.ensure_key()  # the arbiter names its key, well before the deadline
    for _ in range(3):
        agent.step()
    assert verifier_grant(w.suite, job_id) is not None


def test_a_restart_between_queuing_and_recording_keeps_the_queued_report(market: Market, intents_jsonl: bytes,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after queuing its decision and before recording it, the arbiter verifies again on restart: the report on
    disk must stay the one whose hash the queued transaction carries."""
    import blake3

    from llmos_chain.arbiter import ArbiterReport
    from llmos_chain.verification import Finding

    job_id = market.run(intents_jsonl, _recipe(), None, monkeypatch)
    arbiter = market.arbiter
    tx = "0x" + "ab" * 8
    first = Finding(job_id, True, 7, "11" * 32, "11" * 32, "agrees", seconds=1.0)
    arbiter._resolve(job_id, f"resolve:{tx}", tx, first, ArbiterReport())
    arbiter.store.db.execute("DELETE FROM decisions")  # the crash: the decision was never recorded
    again = Finding(job_id, True, 7, "11" * 32, "11" * 32, "agrees", seconds=2.5)  # the same verdict, other timings
    arbiter._resolve(job_id, f"resolve:{tx}", tx, again, ArbiterReport())
    written = (market.tmp / "reports" / f"{job_id}.json").read_bytes().rstrip(b"\n")
    queued = bytes.fromhex(arbiter.box.get(f"resolve:{job_id}:{tx}").args[3][3]["__bytes__"])  # the evidence's reportHash
    assert blake3.blake3(written).digest() == queued == blake3.blake3(first.report_bytes()).digest()
    assert arbiter.decisions()[0]["detail"] == "queued before a restart"
