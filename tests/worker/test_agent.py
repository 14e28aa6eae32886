"""The owner's and client's agent on the embedded chain: grants follow the policy; only results that audit are accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmos_chain.agent import AcceptPolicy, Agent, GrantPolicy
from llmos_chain.chain.market import JobState, WorkerParams
from llmos_chain.crypto.keys import EncryptionKey
from llmos_chain.datasets import Manifest, recover_data_key, register_dataset, seal_dataset
from llmos_chain.store import Store
from tests.helpers import STAKE
from tests.worker.test_runner import Setup


def _dataset(setup: Setup, raw: bytes) -> tuple[int, Manifest]:
    folder = setup.tmp / "owner-data"
    folder.mkdir(exist_ok=True)
    src = folder / "data.jsonl"
    src.write_bytes(raw)
    manifest = seal_dataset(src, folder / "data.sealed", setup.store, chunk_size=4096)
    dataset_id, _ = register_dataset(setup.world.act(setup.world.owner), manifest, (folder / "data.sealed").as_uri())
    return dataset_id, manifest


def _other_provider(w: Any) -> tuple[Any, Any]:
    """A second provider (operator, worker signer) whose operator is not on the owner's allow list."""
    operator, signer = w.accounts[6], w.accounts[7]
    params = WorkerParams(signer.address, "CPU", 1, 24, 1, EncryptionKey.generate().public_bytes())
    w.act(operator).register_worker(signer.address, params, STAKE)
    return operator, signer


def test_grants_follow_the_policy(setup: Setup, intents_jsonl: bytes) -> None:
    w = setup.world
    dataset_id, manifest = _dataset(setup, intents_jsonl)
    other_operator, other_signer = _other_provider(w)
    jobs = [w.post(dataset_id=dataset_id) for _ in range(3)]
    w.assign(jobs[0], worker=setup.signer.address)
    w.assign(jobs[1], operator=other_operator, worker=other_signer.address)
    w.assign(jobs[2], worker=setup.signer.address)

    policy = GrantPolicy({dataset_id: manifest.key_id}, operators=frozenset({w.operator.address.lower()}), max_jobs=1)
    agent = Agent(w.suite, Store(setup.tmp / "agent.db"), owner=w.owner, keystore=setup.store, grants=policy)
    report = agent.step()
    assert report.granted == [jobs[0]] and sorted(report.refused) == [jobs[1], jobs[2]]
    assert agent.step().granted == []  # decisions are remembered, nothing is granted twice
    assert [w.job(j).state for j in jobs] == [JobState.RUNNING, JobState.ASSIGNED, JobState.ASSIGNED]
    reasons = {d["job_id"]: d["detail"] for d in agent.decisions()}
    assert "operator" in reasons[jobs[1]] and "allows 1" in reasons[jobs[2]]
    # the grant is the real data key, wrapped to the assigned worker for this job
    key = recover_data_key(w.suite, dataset_id, jobs[0], setup.signer.address, setup.worker_key)
    assert key == setup.store.load_data_key(manifest.key_id)


def test_accepts_only_results_that_audit(setup: Setup, intents_jsonl: bytes) -> None:
    w = setup.world
    good, bad = setup.job(intents_jsonl), setup.job(intents_jsonl)
    results = setup.tmp / "results"
    for job_id in (good, bad):
        result = setup.run(job_id)
        w.act(w.operator).submit(job_id, result.attestation, result.signature)
    sealed = results / str(bad) / "output.sealed"  # the provider publishes a different output than it attested
    data = bytearray(sealed.read_bytes())
    data[-1] ^= 1
    sealed.write_bytes(bytes(data))

    agent = Agent(w.suite, Store(setup.tmp / "client-agent.db"), client=w.client,
                  accepts=AcceptPolicy(str(results), setup.client_key, dispute_failed=True))
    report = agent.step()
    assert report.accepted == [good] and report.disputed == [bad] and report.audit_failed == [bad]
    assert w.job(good).state is JobState.SETTLED and w.job(bad).state is JobState.DISPUTED
    decisions = {d["job_id"]: d for d in agent.decisions()}
    assert "sealed output hash" in decisions[bad]["detail"]


def test_a_result_not_yet_published_is_retried(setup: Setup, intents_jsonl: bytes, tmp_path: Path) -> None:
    w = setup.world
    job_id = setup.job(intents_jsonl)
    result = setup.run(job_id)
    w.act(w.operator).submit(job_id, result.attestation, result.signature)
    elsewhere = tmp_path / "published"
    agent = Agent(w.suite, Store(setup.tmp / "client-agent.db"), client=w.client, accepts=AcceptPolicy(str(elsewhere), setup.client_key))
    assert agent.step().accepted == []  # nothing published yet: no decision taken
    (elsewhere / str(job_id)).parent.mkdir(parents=True)
    (results := setup.tmp / "results" / str(job_id)).rename(elsewhere / str(job_id))
    assert not results.exists()
    assert agent.step().accepted == [job_id]
    assert w.job(job_id).state is JobState.SETTLED


def test_a_refused_job_reassigned_after_the_grant_timeout_is_decided_afresh(setup: Setup, intents_jsonl: bytes) -> None:
    from llmos_chain.chain.contracts import Sender
    from tests.helpers import GRANT_TIMEOUT

    w = setup.world
    dataset_id, manifest = _dataset(setup, intents_jsonl)
    other_operator, other_signer = _other_provider(w)
    job = w.post(dataset_id=dataset_id)
    w.assign(job, operator=other_operator, worker=other_signer.address)
    policy = GrantPolicy({dataset_id: manifest.key_id}, operators=frozenset({w.operator.address.lower()}), max_jobs=1)
    agent = Agent(w.suite, Store(setup.tmp / "agent.db"), owner=w.owner, keystore=setup.store, grants=policy)
    assert agent.step().refused == [job]

    w.advance(GRANT_TIMEOUT + 1)  # no grant came: anyone may reopen the job, and an allowed provider takes it
    Sender(w.w3, w.stranger).transact(w.suite.market.functions.timeoutGrant(job, w.terms(job).as_tuple()))
    w.assign(job, worker=setup.signer.address)
    report = agent.step()
    assert report.granted == [job]  # the cap counts other jobs, not this job's earlier refusal
    assert w.job(job).state is JobState.RUNNING
    assert sorted(d["verdict"] for d in agent.decisions()) == ["granted", "refused"]  # one decision per assignment


def test_the_workers_allow_list_is_enforced(setup: Setup, intents_jsonl: bytes) -> None:
    w = setup.world
    dataset_id, manifest = _dataset(setup, intents_jsonl)
    other_operator, other_signer = _other_provider(w)
    allowed, other = w.post(dataset_id=dataset_id), w.post(dataset_id=dataset_id)
    w.assign(allowed, worker=setup.signer.address)
    w.assign(other, operator=other_operator, worker=other_signer.address)
    policy = GrantPolicy({dataset_id: manifest.key_id}, workers=frozenset({setup.signer.address.lower()}))
    agent = Agent(w.suite, Store(setup.tmp / "agent.db"), owner=w.owner, keystore=setup.store, grants=policy)
    report = agent.step()
    assert report.granted == [allowed] and report.refused == [other]
    assert w.job(other).state is JobState.ASSIGNED
    assert "not on the allow list" in {d["job_id"]: d["detail"] for d in agent.decisions()}[other]


def test_a_worker_registered_with_an_unusable_key_is_refused_and_the_agent_goes_on(setup: Setup, intents_jsonl: bytes) -> None:
    """v1: a worker registered with 32 zero bytes (a low-order X25519 point) made the agent raise on every step."""
    from llmos_chain.chain.market import WorkerParams
    from tests.helpers import STAKE

    w = setup.world
    dataset_id, manifest = _dataset(setup, intents_jsonl)
    bad_signer = w.accounts[7]
    w.act(w.stranger).register_worker(bad_signer.address, WorkerParams(bad_signer.address, "CPU", 1, 24, 1, bytes(32)), STAKE)
    poisoned, honest = w.post(dataset_id=dataset_id), w.post(dataset_id=dataset_id)
    w.assign(poisoned, operator=w.stranger, worker=bad_signer.address)
    w.assign(honest, worker=setup.signer.address)
    agent = Agent(w.suite, Store(setup.tmp / "agent.db"), owner=w.owner, keystore=setup.store,
                  grants=GrantPolicy({dataset_id: manifest.key_id}))
    report = agent.step()
    assert report.granted == [honest] and report.refused == [poisoned]
    assert "low-order point" in {d["job_id"]: d["detail"] for d in agent.decisions()}[poisoned]
