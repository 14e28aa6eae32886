"""Chaos: the whole lifecycle (post → assign → grant → train → submit → accept → withdraw) with the real daemons as
processes (`llmos coordinator run`, the owner's and the client's `llmos agent run`) on anvil behind a fault proxy.

Every case asserts what a provider relies on: each job ends settled, exactly once (no duplicate transaction), no
`FailureReported` caused by the infrastructure, no transaction sent to a wrong chain, the coordinator's store equals
the chain at the end, and `/health` told the truth during and after the fault. Loopback only, bounded in time.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmos_chain.bench.soak import SoakRun, missing_requirements
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil
from llmos_chain.chain.market import JobState, get_job

pytestmark = [pytest.mark.slow, pytest.mark.anvil,
              pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists() or missing_requirements() is not None,
                                 reason="needs anvil (npm ci) and the worker's torch stack")]

JOB_TIMEOUT_S = 420  # the lifecycle of one or two tiny jobs on two shared cores, with faults, takes 1-3 minutes


def _until(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def health(run: SoakRun) -> dict[str, Any]:
    with urllib.request.urlopen(f"{run.api_url}/health", timeout=5) as answer:
        return json.loads(answer.read())


def store_states(run: SoakRun) -> dict[int, str]:
    db = sqlite3.connect(f"file:{run.coordinator_db}?mode=ro", uri=True)
    try:
        return {int(r[0]): str(r[1]) for r in db.execute("SELECT job_id, state FROM jobs")}
    finally:
        db.close()


def assert_clean(run: SoakRun, jobs: list[int], context: str = "") -> dict[str, Any]:
    """Every job settled exactly once, nothing reported on chain, the store equals the chain, /health says so."""
    assert run.wait(JOB_TIMEOUT_S), f"{context}: jobs not terminal: {run.states()}\n{run.log('coordinator')}"
    result = run.measure()
    detail = f"{context}: {json.dumps(result)}\n--- coordinator log:\n{run.log('coordinator')}"
    assert result["settled"] == len(jobs) and result["lost"] == 0, detail
    assert result["duplicate_txs"] == 0, detail
    assert result["infra_failures"] == 0, detail
    assert result["txs"].get("submitResult") == len(jobs) and result["txs"].get("accept") == len(jobs), detail
    assert all(result["daemons_alive"].values()), detail
    # the coordinator's view catches up with the chain, and its /health says so
    chain = {j: get_job(run.suite, j).state.name.lower() for j in jobs}
    _until(lambda: {j: store_states(run).get(j) for j in jobs} == chain, 60, f"the store to equal the chain {chain}")
    final = _until(lambda: (h := health(run))["ok"] and h["lag_blocks"] == 0 and h["outbox_depth"] == 0 and h, 60,
                   "/health to report ok with no lag")
    assert final["identity"] == "ok"
    return result


@pytest.fixture
def soak(tmp_path: Path):  # noqa: ANN201
    runs: list[SoakRun] = []

    def make(**kwargs: Any) -> SoakRun:
        run = SoakRun(tmp_path / f"run{len(runs)}", **kwargs)
        runs.append(run)
        return run.__enter__()

    yield make
    for run in runs:
        run.close()


def test_errors_hangs_and_a_lagging_backend(soak: Callable[..., SoakRun]) -> None:
    """5 % of calls fail (HTTP 502 / -32603), a few hang past the client timeout, 30 % are answered by a backend three
    blocks behind: nothing is lost, nothing reported, nothing sent twice."""
    run = soak(faults={"error_rate": 0.05, "lag_blocks": 3, "lag_rate": 0.3, "hang_rate": 0.002, "hang_s": 12.0}, seed=7)
    run.wait_ready()
    jobs = run.post_jobs(2)
    result = assert_clean(run, jobs, "errors + hangs + lag")
    faults = result["proxy"]["faults"]
    assert faults.get("http_502", 0) + faults.get("rpc_error", 0) > 0 and faults.get("lag", 0) > 0, faults


def test_reorgs_at_every_step_at_depths_one_to_three(soak: Callable[..., SoakRun]) -> None:
    """A reorg right after each step of the lifecycle (post, assign, grant, submit, settle), 1, 2 and 3 blocks deep,
    while the daemons trust blocks 2 deep: shallower reorgs drop transactions the daemons had not called final, deeper
    ones transactions they had (the follower rolls back). The post is mined again (the client's wallet); every other
    dropped transaction must be sent again by the daemon that owns it."""
    run = soak(confirmations=2)
    w3 = run.w3
    stop = threading.Event()

    def miner() -> None:  # a chain that makes blocks on its own, so 2-deep confirmations come
        while not stop.wait(0.7):
            try:
                w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001
                pass

    threading.Thread(target=miner, daemon=True).start()
    try:
        run.wait_ready()
        [job] = run.post_jobs(1)
        done: list[tuple[str, int, int]] = []
        # (step, depth, deep): a deep reorg waits until the coordinator's follower has read the step's block, then
        # replaces everything from that block on, so the follower must roll back what it recorded
        for step, depth, deep in (("JobPosted", 1, False), ("JobAssigned", 2, False), ("AccessGranted", 3, True),
                                  ("ResultSubmitted", 1, False), ("JobSettled", 2, True)):
            event = getattr(run.suite.market.events, step)()
            logs = _until(lambda: event.get_logs(from_block=run.first_block, argument_filters={"jobId": job}),
                          JOB_TIMEOUT_S, f"{step} of job {job}")
            block = int(logs[-1]["blockNumber"])
            if deep:
                _until(lambda: (health(run)["cursor"] or 0) >= block, 120, f"the follower to read block {block}")
            tx = logs[-1]["transactionHash"]
            again = []
            if step == "JobPosted":  # the client's wallet: its transaction is mined again in the new chain
                raw = w3.provider.make_request("eth_getRawTransactionByHash", ["0x" + bytes(tx).hex()])["result"]  # type: ignore[arg-type]
                again = [[raw, 0]]
            head = int(w3.eth.block_number)
            if deep or head - block >= depth:  # reorg from the step's block on (mined blocks may have buried it)
                depth = head - block + 1
            w3.provider.make_request("anvil_reorg", [depth, again])  # type: ignore[arg-type]
            done.append((step, depth, head))
        assert len(done) == 5
        result = assert_clean(run, [job], f"reorgs {done}")
        assert health(run)["reorgs"] >= 2  # the deep ones were seen and rolled back by the follower
        assert result["txs"]["assign"] == 1 and result["txs"]["grantAccess"] == 1
    finally:
        stop.set()


def test_node_restarted_empty_then_back(soak: Callable[..., SoakRun]) -> None:
    """The node behind the daemons' URL comes back as an empty chain: they refuse to act (no transaction reaches it,
    nothing recorded is forgotten), /health says why; when the right node is back the job goes on to settle."""
    run = soak()
    run.wait_ready()
    [job] = run.post_jobs(1)
    _until(lambda: get_job(run.suite, job).state in (JobState.RUNNING, JobState.SUBMITTED), JOB_TIMEOUT_S, "the job to run")
    assert run.proxy is not None
    with Anvil() as empty:
        run.proxy.set_upstream(empty.url)
        answer = _until(lambda: (h := health(run))["identity"].startswith("mismatch") and h, 60, "/health to name the wrong chain")
        assert answer["ok"] is False
        time.sleep(8)  # the daemons keep running against it
        from llmos_chain.chain.connect import connect

        other = connect(empty.url).w3
        assert int(other.eth.block_number) == 0, "a daemon sent a transaction to the wrong chain"
        assert store_states(run).get(job) is not None  # nothing recorded was forgotten
        run.proxy.set_upstream(run.node.url)  # type: ignore[union-attr]
    assert_clean(run, [job], "node restarted empty")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_daemons_killed_and_restarted(soak: Callable[..., SoakRun], sig: int) -> None:
    """The coordinator is stopped while its worker trains and the agents while they have work; restarted, they pick
    up where they were: the finished (or still running) training is adopted, not repeated, and nothing is sent twice."""
    run = soak()
    run.wait_ready()
    jobs = run.post_jobs(2)
    _until(lambda: any(get_job(run.suite, j).state is JobState.RUNNING for j in jobs), JOB_TIMEOUT_S, "a job to run")
    run.signal("coordinator", sig)
    run.signal("owner_agent", sig)
    assert _until(lambda: run.procs["coordinator"].poll() is not None, 30, "the coordinator to stop") is not None
    if sig == signal.SIGTERM:
        assert run.procs["coordinator"].returncode == 0, run.log("coordinator")  # a clean stop, not a traceback
    time.sleep(2)
    run.restart("coordinator")
    run.restart("owner_agent")
    _until(lambda: any(get_job(run.suite, j).state is JobState.SUBMITTED for j in jobs) or
           all(get_job(run.suite, j).state.terminal for j in jobs), JOB_TIMEOUT_S, "a result")
    run.signal("client_agent", sig)
    time.sleep(1)
    run.restart("client_agent")
    assert_clean(run, jobs, f"killed with {signal.Signals(sig).name}")


def test_node_restored_from_an_older_state(soak: Callable[..., SoakRun]) -> None:
    """The node comes back from a snapshot taken when the job was assigned: the grant, the result and everything after
    are gone. The daemons wait out what could be lag, then believe the shorter chain and roll back; each sends its
    dropped transactions again (the same bytes), except the result, attested before the grant as the chain now has
    it: that one is cancelled (its nonce used by a transfer to self) and the job trains again. It settles once."""
    run = soak()
    run.wait_ready()
    owner = run.procs["owner_agent"]
    owner.send_signal(signal.SIGSTOP)  # hold the grant until the snapshot is taken
    try:
        [job] = run.post_jobs(1)
        _until(lambda: get_job(run.suite, job).state is JobState.ASSIGNED, JOB_TIMEOUT_S, "the assignment")
        snapshot = run.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    finally:
        owner.send_signal(signal.SIGCONT)
    _until(lambda: get_job(run.suite, job).state in (JobState.SUBMITTED, JobState.SETTLED), JOB_TIMEOUT_S, "a result")
    _until(lambda: (health(run)["cursor"] or 0) >= int(run.w3.eth.block_number), 60, "the coordinator to read the result")
    run.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    assert get_job(run.suite, job).state is JobState.ASSIGNED
    assert_clean(run, [job], "node restored from an older state")
    assert health(run)["reorgs"] >= 1
