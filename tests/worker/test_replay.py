"""The replay's own checks, each shown to matter: records where the recipe does not put them, a checkpoint of another
record, a checkpoint whose weights are not its record's, a checkpoint that is not the committed bytes or is withheld;
and a cheat in one middle interval, found only when every interval is replayed."""

from __future__ import annotations

import json
from typing import Any

import blake3
import pytest
import torch

from llmos_chain.errors import CheckpointError
from llmos_chain.recipe import Recipe
from worker import data, models, train, verify

STEPS, EVERY = 20, 5  # 4 intervals


class _Kept:
    def __init__(self) -> None:
        self.blobs: dict[int, bytes] = {}

    def wanted(self, record: int) -> bool:
        return True

    def put(self, record: int, blob: bytes) -> str:
        self.blobs[record] = blob
        return blake3.blake3(blob).hexdigest()


class _MiddleOnly(train.Trainer):
    """Honest except for one nudge inside interval 1 (step 7), honest again after it."""

    def train_step(self) -> tuple[float, int]:
        out = super().train_step()
        if self.step == 7:
            with torch.no_grad():
                for _, p in self.named:
                    p.add_(0.05)
        return out


def _job(raw: bytes, trainer: type[train.Trainer] = train.Trainer) -> tuple[Recipe, bytes, list[dict[str, Any]], dict[int, bytes]]:
    recipe = Recipe.parse(json.dumps({
        "task": "sequence-classification", "method": "lora", "base_model": {"kind": "config", "name": "tiny-bert"},
        "hyper": {"steps": STEPS, "learning_rate": 2e-2, "batch_size": 16, "max_length": 32, "trajectory_every": EVERY},
    }))
    ds = data.parse(raw, recipe)
    tr, ev = data.split(ds, recipe.eval_fraction, recipe.hyper.seed)
    loaded = models.load(recipe, len(ds.label_names))
    kept = _Kept()
    original, train.Trainer = train.Trainer, trainer  # type: ignore[misc]
    try:
        result = train.train(loaded, recipe, train.encode(tr, loaded, 32), train.encode(ev, loaded, 32), checkpoints=kept)
    finally:
        train.Trainer = original  # type: ignore[misc]
    return recipe, loaded.base_hash, [json.loads(r.encode()) for r in result.trajectory], kept.blobs


@pytest.fixture(scope="module")
def honest(intents_jsonl: bytes) -> tuple[Recipe, bytes, list[dict[str, Any]], dict[int, bytes]]:
    return _job(intents_jsonl)


def _session(job: tuple[Recipe, bytes, list[dict[str, Any]], dict[int, bytes]], raw: bytes, records: list[dict[str, Any]] | None = None,
             blobs: dict[int, bytes] | None = None) -> verify.Session:
    recipe, base, recs, kept = job
    recs = records if records is not None else recs
    source = blobs if blobs is not None else kept

    def open_(k: int) -> bytes:
        if k not in source:
            raise CheckpointError("it is committed to in the trajectory but not published")
        if blake3.blake3(source[k]).hexdigest() != recs[k - 1]["checkpoint"]:
            raise CheckpointError("its bytes do not match the commitment in the trajectory")
        return source[k]

    return verify.Session(recipe, base, raw, recs, open_)


def test_an_honest_job_agrees_by_the_ends_and_by_every_interval(honest: Any, intents_jsonl: bytes) -> None:
    ends = verify.check(_session(honest, intents_jsonl))
    every = verify.check(_session(honest, intents_jsonl), every=True)
    assert ends.agrees and len(ends.replays) == 2
    assert every.agrees and every.complete and [r.interval for r in every.replays] == [0, 3, 1, 2]


def test_a_record_where_the_recipe_puts_none_is_named(honest: Any, intents_jsonl: bytes) -> None:
    records = [dict(r) for r in honest[2]]
    records[1]["step"] = 11
    verdict = verify.check(_session(honest, intents_jsonl, records))
    assert verdict.diverging == 1 and "the recipe puts it at step 10" in verdict.detail and not verdict.replays


def test_a_checkpoint_of_another_record_is_named(honest: Any, intents_jsonl: bytes) -> None:
    records = [dict(r) for r in honest[2]]
    blobs = dict(honest[3])
    blobs[2] = blobs[1]  # record 2's checkpoint is record 1's state, committed to as record 2's
    records[1]["checkpoint"] = blake3.blake3(blobs[2]).hexdigest()
    verdict = verify.check(_session(honest, intents_jsonl, records, blobs), intervals=[2])
    assert verdict.diverging == 2 and "is at step 5" in verdict.detail


def test_a_checkpoint_whose_weights_are_not_its_records_is_named(honest: Any, intents_jsonl: bytes) -> None:
    records = [dict(r) for r in honest[2]]
    records[1]["weights_hash"] = "ab" * 32
    verdict = verify.check(_session(honest, intents_jsonl, records), intervals=[2])
    assert verdict.diverging == 2 and "does not hold the weights" in verdict.detail


@pytest.mark.parametrize("fault", ["withheld", "other bytes"])
def test_a_checkpoint_withheld_or_not_the_committed_bytes_is_the_workers_finding(fault: str, honest: Any, intents_jsonl: bytes) -> None:
    blobs = dict(honest[3])
    if fault == "withheld":
        del blobs[3]
    else:
        blobs[3] = blobs[3][:-1] + bytes([blobs[3][-1] ^ 1])
    verdict = verify.check(_session(honest, intents_jsonl, blobs=blobs), intervals=[3])
    assert verdict.diverging == 3 and "checkpoint 3" in verdict.detail


def test_a_cheat_in_one_middle_interval_passes_the_ends_and_is_found_by_every_interval(intents_jsonl: bytes) -> None:
    job = _job(intents_jsonl, _MiddleOnly)
    assert verify.check(_session(job, intents_jsonl)).agrees  # the ends alone cannot see it (documented)
    verdict = verify.check(_session(job, intents_jsonl), every=True)
    assert verdict.diverging == 1 and [r.interval for r in verdict.replays] == [0, 3, 1]


def test_every_interval_stops_when_the_time_runs_out_and_says_so(honest: Any, intents_jsonl: bytes) -> None:
    import time

    verdict = verify.check(_session(honest, intents_jsonl), every=True, until=time.monotonic())
    assert verdict.agrees and not verdict.complete and len(verdict.replays) == 2 and "time ran out" in verdict.detail


def test_without_usable_checkpoints_one_replay_from_the_base_model_checks_every_record(honest: Any, intents_jsonl: bytes) -> None:
    recipe, base, records, _ = honest
    session = verify.Session(recipe, base, intents_jsonl, records, lambda k: (_ for _ in ()).throw(CheckpointError("no key")),
                             use_checkpoints=False)
    verdict = verify.check(session, every=True)
    assert verdict.agrees and verdict.complete
    assert all(r.start_record == 0 for r in verdict.replays) and verdict.replays[-1].steps == STEPS
