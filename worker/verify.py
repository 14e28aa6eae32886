"""Verification by re-execution: replay intervals of a job's training and compare with what the worker recorded.

A job's trajectory has records 1..n (record k: step, loss, lr, the trainable weights' hash, and the commitment of the
checkpoint kept there). Interval i (0-based) runs from record i (i = 0: the attested base model, set up by the recipe
exactly as the worker must have) to record i+1. Replaying interval i restores the nearest checkpoint at or before
record i (checking it against the record's commitment and weights hash), runs the recipe's steps on the decrypted
data, and compares the weights hash at each record it passes. On CPU an honest interval replays bit for bit.

`check` without intervals replays the first and the last interval and, when the first agrees and the last does not,
bisects between them to the first diverging interval (2 + ceil(log2(n - 1)) replays at most). A cheat confined to
one interval in the middle, with both ends honest, is found only by `every=True` (all intervals).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import blake3

from llmos_chain.errors import CheckpointError
from llmos_chain.recipe import Recipe
from worker import data as data_mod
from worker import models, train

# (record index 1..n) -> the plaintext checkpoint kept there; raises CheckpointError when it is missing, does not
# match its commitment, or cannot be opened with the verifier's key.
CheckpointSource = Callable[[int], bytes]


@dataclass
class Replay:
    """One replay: the interval asked for, where it started, and the first record it disagreed with (if any)."""

    interval: int  # the interval asked for
    start_record: int  # the record restored (0: the base model)
    agrees: bool
    diverging: int | None  # the first interval found to disagree (may precede `interval` when replayed from earlier)
    expected: str  # the recorded weights hash at the diverging interval's end (or the asked interval's end)
    replayed: str  # the replay's weights hash there ("" when the replay could not start)
    detail: str
    steps: int
    seconds: float


@dataclass
class Verdict:
    intervals: int
    replays: list[Replay] = field(default_factory=list)
    diverging: int | None = None
    detail: str = ""
    setup_s: float = 0.0
    complete: bool = True  # False: `every` ran out of time before replaying every interval

    @property
    def agrees(self) -> bool:
        return self.diverging is None

    def evidence(self) -> Replay | None:
        """The replay that named the diverging interval (or the last replay when all agreed)."""
        if not self.replays:
            return None
        for r in self.replays:
            if r.diverging == self.diverging and not r.agrees:
                return r
        return self.replays[-1]

    def to_json(self) -> dict[str, Any]:
        return {"agrees": self.agrees, "intervals": self.intervals, "diverging_interval": self.diverging, "detail": self.detail,
                "complete": self.complete,
                "replays": [asdict(r) for r in self.replays], "replay_count": len(self.replays), "setup_s": round(self.setup_s, 4)}


def expected_steps(recipe: Recipe, train_examples: int) -> list[int]:
    """The steps the recipe puts records at: every `trajectory_every` steps and the last step."""
    total = recipe.hyper.total_steps(train_examples)
    every = recipe.hyper.trajectory_every
    return [s for s in range(1, total + 1) if s % every == 0 or s == total]


class Session:
    """The job's data, model and training state set up once; each replay restores a state and runs from there."""

    def __init__(self, recipe: Recipe, base_model_hash: bytes, plaintext: bytes | bytearray, records: list[dict[str, Any]],
                 checkpoints: CheckpointSource, use_checkpoints: bool = True) -> None:
        t0 = time.perf_counter()
        self.recipe, self.records, self.checkpoints = recipe, records, checkpoints
        # False when this verifier cannot open the job's checkpoints at all (sealed to an arbiter key since replaced):
        # every replay then starts from the base model. Slower, never the worker's fault.
        self.use_checkpoints = use_checkpoints
        dataset = data_mod.parse(bytes(plaintext), recipe)
        train_set, _ = data_mod.split(dataset, recipe.eval_fraction, recipe.hyper.seed)
        # the attested base model, checked against its hash: a worker that trained another one cannot make it ours
        loaded = models.load(recipe, len(dataset.label_names) if dataset.label_names else None, base_model_hash)
        self.trainer = train.Trainer(loaded, recipe, train.encode(train_set, loaded, recipe.hyper.max_length))
        self.trainer.model.train()
        self.initial = self.trainer.checkpoint()  # the state before step 1, built here and not taken from the worker
        self.steps = expected_steps(recipe, len(train_set))
        self.setup_s = time.perf_counter() - t0

    @property
    def n(self) -> int:
        return len(self.records)

    def structure(self) -> tuple[int, str] | None:
        """The first record whose step is not where the recipe puts one (interval, why), or None."""
        for k, r in enumerate(self.records):  # the worker wrote (and attested) them: a malformed one is its fault
            if not (isinstance(r, dict) and type(r.get("step")) is int and isinstance(r.get("weights_hash"), str)
                    and isinstance(r.get("checkpoint") or "", str)):
                return k, f"record {k + 1} is malformed"
        got = [int(r["step"]) for r in self.records]
        for k, (want, have) in enumerate(zip(self.steps, got, strict=False)):
            if want != have:
                return k, f"record {k + 1} is at step {have}; the recipe puts it at step {want}"
        if len(got) != len(self.steps):
            k = min(len(got), len(self.steps))
            return max(0, k - 1), f"the trajectory has {len(got)} records; the recipe makes {len(self.steps)}"
        return None

    def _start(self, interval: int) -> int:
        if not self.use_checkpoints:
            return 0
        j = interval
        while j > 0 and not self.records[j - 1].get("checkpoint"):
            j -= 1
        return j

    def replay(self, interval: int) -> Replay:
        """Replay interval `interval` (0-based) from the nearest checkpoint at or before its start."""
        t0 = time.perf_counter()
        end = self.records[interval]
        j = self._start(interval)
        trainer = self.trainer

        def found(at: int, replayed: str, detail: str, steps: int = 0) -> Replay:
            return Replay(interval, j, False, at, str(self.records[at]["weights_hash"]), replayed, detail, steps,
                          time.perf_counter() - t0)

        if j == 0:
            trainer.restore(self.initial)
        else:
            try:
                trainer.restore(self.checkpoints(j))
            except CheckpointError as exc:
                return found(j, "", f"checkpoint {j}: {exc}")
            start = self.records[j - 1]
            if trainer.step != int(start["step"]):
                return found(j, "", f"checkpoint {j} is at step {trainer.step}, its record at step {start['step']}")
            held = trainer.weights_hash()
            if held != start["weights_hash"]:
                return found(j, held, f"checkpoint {j} does not hold the weights record {j} names")
        steps = 0
        for m in range(j, interval + 1):  # records m+1 for m = j..interval: the ends of intervals j..interval
            record = self.records[m]
            while trainer.step < int(record["step"]):
                trainer.train_step()
                steps += 1
            got = trainer.weights_hash()
            if got != record["weights_hash"]:
                return found(m, got, f"the replay reaches other weights at record {m + 1} (step {record['step']})", steps)
        return Replay(interval, j, True, None, str(end["weights_hash"]), got, "agrees", steps, time.perf_counter() - t0)


def check(session: Session, intervals: list[int] | None = None, every: bool = False,
          on_replay: Callable[[Replay], None] | None = None, until: float | None = None) -> Verdict:
    """Replay the given intervals, or every interval, or the ends and then a bisection (see the module's doc).

    With `every` and `until` (a `time.monotonic()` deadline), the intervals not reached in time are left unchecked and
    the verdict says so (`complete` False); what was replayed still decides."""
    n = session.n
    verdict = Verdict(intervals=n, setup_s=session.setup_s)
    if n == 0:
        verdict.diverging, verdict.detail = 0, "the trajectory has no records"
        return verdict
    bad = session.structure()
    if bad is not None:
        verdict.diverging, verdict.detail = bad
        return verdict

    def run(i: int) -> Replay:
        r = session.replay(i)
        verdict.replays.append(r)
        if on_replay is not None:
            on_replay(r)
        return r

    def fail(r: Replay) -> Verdict:
        verdict.diverging, verdict.detail = r.diverging, r.detail
        return verdict

    if intervals is not None and not intervals and not every:
        intervals = None  # no interval named: the ends and the bisection, never "nothing replayed, all agree"
    if intervals is not None:
        for i in intervals:
            if not 0 <= i < n:
                raise CheckpointError(f"interval {i} is out of range: the job has intervals 0..{n - 1}")
            r = run(i)
            if not r.agrees:
                return fail(r)
        verdict.detail = f"{len(verdict.replays)} interval(s) replayed, all agree"
        return verdict
    first = run(0)
    if not first.agrees:
        return fail(first)
    if n == 1:
        verdict.detail = "the only interval agrees"
        return verdict
    last = run(n - 1)
    if last.agrees and not every:
        verdict.detail = "the first and the last interval agree"
        return verdict
    if last.agrees:
        # every interval: the rest in order, one replay per stretch between kept checkpoints (a replay checks every
        # record on its way), so the first that disagrees is the first diverging interval; until the time runs out
        covered = set(range(first.start_record, 1)) | set(range(last.start_record, n))
        starts = [session._start(k) for k in range(n)]  # non-decreasing
        stretch_end = {starts[k]: k for k in range(n)}
        for i in range(1, n - 1):
            if i in covered:
                continue
            if until is not None and time.monotonic() > until:
                verdict.complete = False
                verdict.detail = f"{len(covered)} of {n} intervals replayed, all agree (the time ran out for the rest)"
                return verdict
            end = stretch_end[starts[i]]
            r = run(end)
            if not r.agrees:
                return fail(r)
            covered |= set(range(r.start_record, end + 1))
        verdict.detail = f"all {n} intervals replayed ({len(verdict.replays)} replay(s)), all agree"
        return verdict
    lo, hi, worst = 0, int(last.diverging if last.diverging is not None else n - 1), last
    while hi - lo > 1:  # lo agrees, hi disagrees: the first divergence lies in (lo, hi]
        mid = (lo + hi) // 2
        r = run(mid)
        if r.agrees:
            lo = mid
        else:
            hi, worst = int(r.diverging if r.diverging is not None else mid), r
            if hi <= lo:
                break
    return fail(worst)


def max_bisection_replays(n: int) -> int:
    """The most replays `check` makes for `n` intervals: both ends, then a binary search between them."""
    return 1 if n <= 1 else 2 + max(0, math.ceil(math.log2(n - 1)))


def open_checkpoint(sealed: bytes, commitment: str, key: bytes) -> bytes:
    """A sealed checkpoint's plaintext, after checking it against the record's commitment."""
    from llmos_chain.crypto import stream
    from llmos_chain.errors import SealedDataError

    if blake3.blake3(sealed).hexdigest() != commitment.removeprefix("0x"):
        raise CheckpointError("its bytes do not match the commitment in the trajectory")
    try:
        return bytes(stream.open_to_memory(sealed, key))
    except SealedDataError as exc:
        raise CheckpointError(f"it does not open with the job's checkpoint key: {exc}") from None


def record_list(raw: bytes) -> list[dict[str, Any]]:
    out: list[Any] = []
    for line in raw.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append(None)  # not JSON: `Session.structure` names it as a malformed record
    return out


def serve_request(stdin: Any, stdout: Any) -> int:
    """`python -m worker verify`: one JSON line on stdin (keys travel only there), JSON lines out, exit 0 when every
    replayed interval agrees and 1 with the diverging interval; 2 when verification could not be done.

    Input: {"recipe": JSON, "base_model_hash": hex, "dataset": path of the sealed dataset, "content_root": hex,
    "data_key": hex, "bundle": directory, "checkpoint_key": hex or null, "intervals": [..] or null, "every": bool}.
    """
    from pathlib import Path

    from llmos_chain.crypto import stream
    from llmos_chain.errors import LlmosError, SealedDataError

    def say(event: str, **info: Any) -> None:
        stdout.write(json.dumps({"event": event, **info}, default=str) + "\n")
        stdout.flush()

    plaintext: bytearray | None = None
    data_key = ckpt_key = b""
    try:
        try:
            req = json.loads(stdin.readline())
            recipe = Recipe.parse(req["recipe"])
            data_key = bytes.fromhex(req["data_key"])
            ckpt_key = bytes.fromhex(req["checkpoint_key"]) if req.get("checkpoint_key") else b""
            bundle = Path(req["bundle"])
            records = record_list((bundle / "trajectory.jsonl").read_bytes())
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"malformed verify request: {exc}") from None
        try:
            with stream.SealedFile.open(Path(req["dataset"])) as sealed:
                plaintext = stream.open_to_memory(sealed, data_key, bytes.fromhex(req["content_root"]))
        except SealedDataError as exc:
            raise CheckpointError(f"the dataset does not open with the granted key: {exc}") from None

        def checkpoint(k: int) -> bytes:
            commitment = str(records[k - 1].get("checkpoint") or "")
            path = bundle / "checkpoints" / f"{k}.sealed"
            if not path.is_file():
                raise CheckpointError("it is committed to in the trajectory but not published")
            if not ckpt_key:
                raise CheckpointError("the bundle has no checkpoint key for this verifier")
            return open_checkpoint(path.read_bytes(), commitment, ckpt_key)

        session = Session(recipe, bytes.fromhex(req["base_model_hash"]), plaintext, records, checkpoint, use_checkpoints=bool(ckpt_key))
        say("setup", seconds=round(session.setup_s, 4), intervals=session.n, checkpoints=bool(ckpt_key))
        until = time.monotonic() + float(req["budget_s"]) if req.get("budget_s") else None
        verdict = check(session, req.get("intervals"), bool(req.get("every")), on_replay=lambda r: say("replay", **asdict(r)),
                        until=until)
        say("verdict", **verdict.to_json())
        return 0 if verdict.agrees else 1
    except LlmosError as exc:
        say("error", message=str(exc), kind=type(exc).__name__)
        return 2
    finally:
        if plaintext is not None:
            plaintext[:] = bytes(len(plaintext))
