"""`llmos audit` on a real job: every check passes, and each kind of lie fails loudly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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
