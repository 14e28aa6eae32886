"""`llmos audit` on a real job: every check passes, and each kind of lie fails loudly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from eth_account import Account

from llmos_chain.attestation import Attestation, sign
from llmos_chain.audit import audit_job
from tests.helpers import reverts
from tests.worker.test_runner import Setup


def _failed(report) -> set[str]:  # noqa: ANN001
    return {c.name for c in report.checks if not c.ok}


def _settled_job(setup: Setup, raw: bytes) -> tuple[int, Path]:
    w = setup.world
    job_id = setup.job(raw)
    result = setup.run(job_id)
    w.act(w.operator).submit(job_id, result.attestation, result.signature)
    w.act(w.client).accept(job_id)
    return job_id, result.bundle


def test_honest_job_passes_every_check(setup: Setup, intents_jsonl: bytes) -> None:
    job_id, bundle = _settled_job(setup, intents_jsonl)
    data_key = setup.store.load_data_key(json.loads((setup.tmp / "job0" / "data.sealed.json").read_text())["key_id"])
    report = audit_job(setup.world.suite, job_id, bundle, data_key)
    assert report.passed, [c for c in report.checks if not c.ok]
    names = {c.name for c in report.checks}
    assert {"posted", "attestation binds the posted job and dataset", "attestation signature", "sealed output hash",
            "trajectory root", "payment", "no grant after the result", "signer at submission", "dataset matches its registered root"} <= names
    assert [h["event"] for h in report.history] == ["JobPosted", "JobAssigned", "AccessGranted", "ResultSubmitted", "JobSettled"]


def test_a_sealed_output_whose_hash_differs(setup: Setup, intents_jsonl: bytes) -> None:
    job_id, bundle = _settled_job(setup, intents_jsonl)
    forged = setup.tmp / "forged"
    shutil.copytree(bundle, forged)
    raw = bytearray((forged / "output.sealed").read_bytes())
    raw[-1] ^= 1
    (forged / "output.sealed").write_bytes(bytes(raw))
    assert _failed(audit_job(setup.world.suite, job_id, forged)) == {"sealed output hash"}


def test_an_attestation_not_signed_by_the_worker(setup: Setup, intents_jsonl: bytes) -> None:
    job_id, bundle = _settled_job(setup, intents_jsonl)
    forged = setup.tmp / "forged"
    shutil.copytree(bundle, forged)
    doc = json.loads((forged / "attestation.json").read_text())
    doc.pop("signature")
    att = Attestation.from_json(doc)
    w = setup.world
    other = sign(att, Account.create(), w.conn.chain_id, w.suite.market.address)
    (forged / "attestation.json").write_text(json.dumps({**att.to_json(), "signature": "0x" + other.hex()}))
    assert _failed(audit_job(w.suite, job_id, forged)) == {"attestation signature"}


def test_a_grant_after_the_result_is_impossible_and_the_audit_still_passes(setup: Setup, intents_jsonl: bytes) -> None:
    """v1 let an owner publish a grant after the result (to anyone): the audit had to catch it. v2's market takes a
    grant only for an assigned job, to its assigned worker, from the dataset's owner."""
    job_id, bundle = _settled_job(setup, intents_jsonl)
    w = setup.world
    with reverts("JobInvalidState"):
        w.act(w.owner).grant(job_id, b"\x01" * 80)
    report = audit_job(w.suite, job_id, bundle)
    assert report.passed and [h["event"] for h in report.history].count("AccessGranted") == 1


def test_a_dataset_whose_content_differs_from_its_root(setup: Setup, intents_jsonl: bytes) -> None:
    job_id = setup.job(intents_jsonl, root=b"\x05" * 32)  # the owner registered a root that is not the data's
    key_id = json.loads((setup.tmp / "job0" / "data.sealed.json").read_text())["key_id"]
    report = audit_job(setup.world.suite, job_id, None, setup.store.load_data_key(key_id))
    assert _failed(report) == {"dataset matches its registered root"}
    assert "content root mismatch" in next(c.detail for c in report.checks if not c.ok)


# ------------------------------------------------------------------------------ what v1's audit let through


def _submit_forged(setup: Setup, job_id: int, files: dict[str, bytes], **att_overrides: Any) -> Path:
    """A worker publishing `files` as its bundle and honestly signing their hashes (what v1 paid for)."""
    import blake3

    from llmos_chain.crypto import merkle

    w = setup.world
    bundle = setup.tmp / "forged" / str(job_id)
    bundle.mkdir(parents=True)
    for name, data in files.items():
        (bundle / name).write_bytes(data)
    view = w.job(job_id)
    record = w.suite.datasets.functions.getDataset(view.dataset_id).call()
    now = w.now()
    att = Attestation(job_id, setup.signer.address, bytes(record[2]), view.base_model_hash, view.recipe_hash,
                      blake3.blake3(files["output.sealed"]).digest(), blake3.blake3(files["metrics.json"]).digest(),
                      merkle.root_of(line for line in files["trajectory.jsonl"].splitlines() if line), now, now)
    att = Attestation(**{**att.__dict__, **att_overrides})
    signature = sign(att, setup.signer, w.conn.chain_id, w.suite.market.address)
    (bundle / "attestation.json").write_text(json.dumps({**att.to_json(), "signature": "0x" + signature.hex()}))
    w.act(w.operator).submit(job_id, att, signature)
    return bundle


def test_a_worker_is_not_paid_for_garbage(setup: Setup, intents_jsonl: bytes) -> None:
    """Random bytes as the output and its key, metrics that are not JSON, an empty trajectory, honestly signed: v1's
    audit passed every check and the client's agent accepted. Both audits now fail it, and the agent does not accept."""
    import os

    from llmos_chain.agent import AcceptPolicy, Agent
    from llmos_chain.audit import client_audit
    from llmos_chain.chain.market import JobState
    from llmos_chain.store import Store

    w = setup.world
    job_id = setup.job(intents_jsonl)
    bundle = _submit_forged(setup, job_id, {"output.sealed": os.urandom(4096), "output.key": os.urandom(80),
                                           "metrics.json": b"accuracy: 1.0", "trajectory.jsonl": b""})
    public = audit_job(w.suite, job_id, bundle)
    assert {"metrics schema", "trajectory form"} <= _failed(public)
    assert {"sealed output hash", "metrics hash", "attestation binds the posted job and dataset"}.isdisjoint(_failed(public))  # honest hashes
    client = client_audit(w.suite, job_id, bundle, setup.client_key)
    assert "output opens with the client's key" in _failed(client)

    agent = Agent(w.suite, Store(setup.tmp / "agent.db"), client=w.client,
                  accepts=AcceptPolicy(str(bundle.parent), setup.client_key, dispute_failed=True))
    report = agent.step()
    assert report.accepted == [] and report.disputed == [job_id] and w.job(job_id).state is JobState.DISPUTED


def test_consistent_garbage_passes_the_public_audit_but_not_the_client_audit(setup: Setup, intents_jsonl: bytes) -> None:
    """Well-formed metrics and trajectory that agree with each other and the recipe, and a properly sealed output
    that is not a model: only decrypting and loading it tells, which is why only the client audit may accept."""
    import os

    import blake3

    from llmos_chain.audit import client_audit
    from llmos_chain.crypto import stream
    from llmos_chain.crypto.keys import KeyKind, OutputContext, wrap_key

    w = setup.world
    job_id = setup.job(intents_jsonl)
    junk = os.urandom(2048)
    out_key = stream.new_data_key()
    sealed, _ = stream.seal_bytes(junk, out_key)
    context = OutputContext(w.conn.chain_id, w.suite.market.address, job_id, w.client.address)
    final = "ab" * 32
    metrics = json.dumps({"weights_hash": "0x" + blake3.blake3(junk).hexdigest(), "final_trainable_hash": final, "metric": "accuracy",
                          "before": 0.1, "after": 0.99, "higher_is_better": True, "steps": 40, "train_examples": 100,
                          "eval_examples": 20}, sort_keys=True, separators=(",", ":")).encode()
    trajectory = b"".join(json.dumps(r, sort_keys=True, separators=(",", ":")).encode() + b"\n" for r in
                          [{"step": 20, "loss": 1.0, "lr": 0.01, "weights_hash": "cd" * 32, "checkpoint": ""}, {"step": 40, "loss": 0.5, "lr": 0.0, "weights_hash": final, "checkpoint": ""}])
    bundle = _submit_forged(setup, job_id, {"output.sealed": sealed,
                                           "output.key": wrap_key(out_key, KeyKind.X25519, setup.client_key.public_bytes(), context),
                                           "metrics.json": metrics, "trajectory.jsonl": trajectory})
    assert _failed(audit_job(w.suite, job_id, bundle)) == set()
    client = client_audit(w.suite, job_id, bundle, setup.client_key)
    assert _failed(client) == {"output loads and runs on the base model"}


def test_the_honest_result_passes_the_client_audit(setup: Setup, intents_jsonl: bytes) -> None:
    from llmos_chain.audit import client_audit

    job_id, bundle = _settled_job(setup, intents_jsonl)
    report = client_audit(setup.world.suite, job_id, bundle, setup.client_key)
    assert report.passed, [c for c in report.checks if not c.ok]
    assert {"output opens with the client's key", "output is the attested weights", "output loads and runs on the base model",
            "output is the trajectory's final state", "metrics schema", "trajectory form", "trajectory agrees with the metrics and recipe",
            "attested times"} <= {c.name for c in report.checks}


@pytest.mark.parametrize("damage", ["crlf", "blank line", "reordered keys", "dropped record", "no final newline"])
def test_a_trajectory_not_in_canonical_form_fails(setup: Setup, intents_jsonl: bytes, damage: str) -> None:
    """v1 rebuilt the root over `splitlines()` without blanks: CRLF or blank lines gave the same root."""
    job_id, bundle = _settled_job(setup, intents_jsonl)
    forged = setup.tmp / "forged"
    shutil.copytree(bundle, forged)
    raw = (forged / "trajectory.jsonl").read_bytes()
    lines = raw.splitlines()
    damaged = {
        "crlf": raw.replace(b"\n", b"\r\n"),
        "blank line": raw + b"\n",
        "reordered keys": b"".join(json.dumps(dict(reversed(list(json.loads(l).items()))), separators=(",", ":")).encode() + b"\n" for l in lines),
        "dropped record": b"".join(l + b"\n" for l in lines[:-1]),
        "no final newline": raw.rstrip(b"\n"),
    }[damage]
    (forged / "trajectory.jsonl").write_bytes(damaged)
    failed = _failed(audit_job(setup.world.suite, job_id, forged))
    # a dropped record is canonical but commits to another root; every other damage is refused as not canonical
    assert failed == ({"trajectory root", "trajectory agrees with the metrics and recipe"} if damage == "dropped record"
                      else {"trajectory form"} | ({"trajectory root"} & failed))


@pytest.mark.parametrize("field", ["recipe_hash", "base_model_hash", "dataset_root"])
def test_an_attestation_over_another_recipe_model_or_dataset_fails(setup: Setup, intents_jsonl: bytes, field: str) -> None:
    job_id = setup.job(intents_jsonl)
    result = setup.run(job_id)
    files = {name: (result.bundle / name).read_bytes() for name in ("output.sealed", "output.key", "metrics.json", "trajectory.jsonl")}
    bundle = _submit_forged(setup, job_id, files, **{field: b"\x42" * 32})  # the contract takes any content hashes
    assert "attestation binds the posted job and dataset" in _failed(audit_job(setup.world.suite, job_id, bundle))


def test_a_signer_rotated_after_submission_does_not_void_the_audit(setup: Setup, intents_jsonl: bytes) -> None:
    from llmos_chain.chain.market import WorkerParams

    job_id, bundle = _settled_job(setup, intents_jsonl)
    w = setup.world
    old = setup.signer.address
    w.act(w.operator).sender.transact(w.suite.workers.functions.update(old, WorkerParams(
        w.accounts[9].address, "CPU", 1, 24, 1, setup.worker_key.public_bytes()).as_tuple()))
    report = audit_job(w.suite, job_id, bundle)
    assert report.passed, [c for c in report.checks if not c.ok]
    assert old in next(c.detail for c in report.checks if c.name == "signer at submission")


def test_a_chain_only_audit_checks_what_the_chain_holds(setup: Setup, intents_jsonl: bytes) -> None:
    job_id, _ = _settled_job(setup, intents_jsonl)
    report = audit_job(setup.world.suite, job_id)
    assert report.passed
    names = {c.name for c in report.checks}
    assert {"posted", "attestation binds the posted job and dataset", "attested times", "signer at submission", "payment"} <= names
    assert names.isdisjoint({"sealed output hash", "metrics schema", "trajectory form"})  # nothing claimed about files it lacks


def _doctored(monkeypatch: pytest.MonkeyPatch, event: str, **changes: Any) -> None:
    """Make the audit read `event` with some arguments changed (what a lying node or a buggy market would show)."""
    from llmos_chain import audit

    real = audit.job_events

    def doctored(suite: Any, job_id: int) -> list[tuple[str, Any]]:
        return [(name, {**log, "args": {**log["args"], **changes}} if name == event else log) for name, log in real(suite, job_id)]

    monkeypatch.setattr(audit, "job_events", doctored)


def test_a_payment_to_someone_else_or_of_another_amount_fails(setup: Setup, intents_jsonl: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, bundle = _settled_job(setup, intents_jsonl)
    w = setup.world
    assert "payment" not in _failed(audit_job(w.suite, job_id, bundle))
    _doctored(monkeypatch, "JobSettled", payee=w.stranger.address)
    assert "payment" in _failed(audit_job(w.suite, job_id, bundle))
    monkeypatch.undo()
    _doctored(monkeypatch, "JobSettled", amount=w.job(job_id).escrow - 1)
    assert "payment" in _failed(audit_job(w.suite, job_id, bundle))


def test_a_refund_of_another_amount_fails(setup: Setup, intents_jsonl: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    w = setup.world
    job_id = setup.job(intents_jsonl)
    w.advance(w.job(job_id).run_time + 1)
    w.act(w.stranger).reclaim(job_id)  # ran past its window: refunded, slashed
    assert "refund" not in _failed(audit_job(w.suite, job_id))
    _doctored(monkeypatch, "JobRefunded", amount=1)
    assert "refund" in _failed(audit_job(w.suite, job_id))


def test_a_result_logged_with_another_signer_fails(setup: Setup, intents_jsonl: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, bundle = _settled_job(setup, intents_jsonl)
    _doctored(monkeypatch, "ResultSubmitted", signer=setup.world.stranger.address)
    assert "signer at submission" in _failed(audit_job(setup.world.suite, job_id, bundle))


def test_an_eip1271_signer_is_asked_and_may_say_no(setup: Setup, intents_jsonl: bytes) -> None:
    """A worker whose signer is a contract wallet: the market and the audit ask the wallet (as of the submission)."""
    from llmos_chain.chain.contracts import Sender
    from llmos_chain.chain.market import WorkerParams
    from llmos_chain.crypto.keys import EncryptionKey

    w = setup.world
    owner_key = w.accounts[9]
    wallet, _ = Sender(w.w3, owner_key).deploy("TestSmartWallet", owner_key.address)
    worker = w.accounts[7]
    w.act(w.operator).register_worker(worker.address, WorkerParams(wallet.address, "CPU", 1, 24, 1, EncryptionKey.generate().public_bytes()), 10**18)
    job_id = w.post()
    w.assign(job_id, worker=worker.address)
    w.grant(job_id)
    att = w.attestation(job_id, worker=worker.address)
    signature = sign(att, owner_key, w.conn.chain_id, w.suite.market.address)
    w.act(w.operator).submit(job_id, att, signature)
    bundle = setup.tmp / "wallet-bundle"
    bundle.mkdir()
    for signed_by in (owner_key, Account.create()):
        sig = sign(att, signed_by, w.conn.chain_id, w.suite.market.address)
        (bundle / "attestation.json").write_text(json.dumps({**att.to_json(), "signature": "0x" + sig.hex()}))
        check = next(c for c in audit_job(w.suite, job_id, bundle).checks if c.name == "attestation signature")
        assert check.ok is (signed_by is owner_key) and ("accepts" if check.ok else "rejects") in check.detail
