"""The event follower: ranges, confirmations, idempotence, restart from the cursor, reorg rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos_chain.chain.follower import Follower
from llmos_chain.store import Store
from tests.helpers import World


def _lifecycle(world: World) -> int:
    job = world.post()
    world.assign(job)
    world.grant(job)
    world.submit(job)
    world.act(world.client).accept(job)
    return job


def _chain_states(world: World, store: Store) -> dict[int, str]:
    return {j["job_id"]: world.job(j["job_id"]).state.name.lower() for j in store.jobs()}


def test_follows_every_job_into_the_projection(world: World, tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    seen = []
    follower = Follower(world.suite, store, on_event=seen.append)
    settled = _lifecycle(world)
    cancelled = world.post()
    world.act(world.client).cancel(cancelled)
    open_job = world.post()
    result = follower.poll()
    assert result.new_events == len(seen) > 10
    states = {j["job_id"]: j["state"] for j in store.jobs()}
    assert states == {settled: "settled", cancelled: "cancelled", open_job: "open"} == _chain_states(world, store)
    assert store.job(settled)["worker"] == world.worker
    assert [e.name for e in store.events(settled)] == ["JobPosted", "JobAssigned", "AccessGranted", "ResultSubmitted", "JobSettled"]
    assert follower.poll().new_events == 0 and follower.behind() == 0


def test_confirmations_hold_back_recent_blocks(world: World, tmp_path: Path) -> None:
    world.client_key_id()  # the client's key registration is an older block, seen already
    follower = Follower(world.suite, Store(tmp_path / "s.db"), confirmations=3)
    world.advance(1)
    world.advance(1)
    world.advance(1)
    follower.poll()
    job = world.post()  # one block
    assert follower.poll().new_events == 0 and follower.store.job(job) is None
    world.advance(1)
    world.advance(1)
    world.advance(1)
    follower.poll()
    assert follower.store.job(job)["state"] == "open"


def test_restart_resumes_from_the_cursor_without_duplicates(world: World, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = Follower(world.suite, Store(path))
    job = world.post()
    first.poll()
    count = len(first.store.events())
    first.store.close()
    world.assign(job)
    second = Follower(world.suite, Store(path))  # a new process on the same database
    assert second.poll().new_events == 1  # JobAssigned: only what came after the saved cursor
    assert len(second.store.events()) == count + 1
    # replaying an old range records nothing twice
    from llmos_chain.store import Cursor

    with second.store.transaction():
        second.store.set_cursor(Cursor(world.suite.deployment.start_block - 1, None))
    assert second.poll().new_events == 0
    assert second.store.job(job)["state"] == "assigned"


def test_refused_ranges_are_split(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        _lifecycle(world)
    eth = world.w3.eth
    original = eth.get_logs
    calls: list[tuple[int, int]] = []

    def picky(params: dict) -> list:
        lo, hi = int(params["fromBlock"]), int(params["toBlock"])
        calls.append((lo, hi))
        if hi - lo > 4:
            raise ValueError("query returned more than 10000 results")  # what nodes say
        return original(params)

    monkeypatch.setattr(eth, "get_logs", picky)
    follower = Follower(world.suite, Store(tmp_path / "s.db"))
    follower.poll()
    monkeypatch.setattr(eth, "get_logs", original)
    reference = Follower(world.suite, Store(tmp_path / "ref.db"))
    reference.poll()
    assert [e.tx_hash for e in follower.store.events()] == [e.tx_hash for e in reference.store.events()]
    assert any(hi - lo > 4 for lo, hi in calls)  # wide ranges were asked for, refused, and split
    assert sum(1 for lo, hi in calls if hi - lo <= 4) >= 2


def test_reorg_rolls_back_and_replays(world: World, tmp_path: Path) -> None:
    tester = world.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    follower = Follower(world.suite, Store(tmp_path / "s.db"))
    kept = world.post()
    follower.poll()
    fork_point = tester.take_snapshot()
    lost = world.post()
    world.assign(lost)
    follower.poll()
    assert follower.store.job(lost)["state"] == "assigned"
    tester.revert_to_snapshot(fork_point)  # the blocks holding `lost` disappear...
    replacement = world.post(gpu_count=2)  # ...and other blocks take their heights
    world.advance(1)
    world.advance(1)
    result = follower.poll()
    assert result.reorged_from is not None
    jobs = {j["job_id"]: j for j in follower.store.jobs()}
    assert set(jobs) == {kept, replacement} and replacement == lost  # the id is reused by the new chain
    assert jobs[replacement]["gpu_count"] == 2 and jobs[replacement]["state"] == "open"
    assert {j: s for j, s in _chain_states(world, follower.store).items()} == {j: v["state"] for j, v in jobs.items()}
