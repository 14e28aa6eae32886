"""Where a client or auditor gets a job's result bundle: a results directory or a coordinator's API.

A bundle is public: the output is sealed to the client, and everything else (metrics, trajectory,
attestation) is what the attestation commits to. Nothing here is trusted: `llmos audit` checks every
file against the hashes on chain.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from llmos_chain.errors import LlmosError

BUNDLE_FILES = ("output.sealed", "output.key", "metrics.json", "trajectory.jsonl", "attestation.json")
#: The most a result source may send for each small file of a bundle (all but the sealed output and checkpoints, whose
#: size follows the model's): far above what an honest worker writes (a trajectory record is a few hundred bytes).
SMALL_FILE_LIMIT = 64 << 20
#: Downloads stop before they would leave less than this free on the destination's file system: a source that
#: streams without end cannot fill the disk of an auditor, a client or the arbiter.
FREE_SPACE_RESERVE = 1 << 30
_CHUNK = 1 << 20
_CHECK_SPACE_EVERY = 64 << 20
#: The checkpoints' key, wrapped to the market's arbiter (present when the worker kept checkpoints); the sealed
#: checkpoints themselves are `checkpoints/K.sealed`, served at `/jobs/{id}/checkpoint/{K}`.
CHECKPOINT_KEY = "checkpoints.key"


class ResultNotFoundError(LlmosError):
    """The result source has no bundle for this job (not submitted yet, or another provider's)."""


def fetch_bundle(source: str | Path, job_id: int, dest: Path, timeout: float = 60.0) -> Path:
    """The bundle of `job_id` as a local directory.

    `source` is a directory holding one sub-directory per job (the coordinator's `results`), or the
    base URL of a coordinator API, which serves the files at `/jobs/{id}/result/{name}`.
    """
    text = str(source)
    if text.startswith(("http://", "https://")):
        target = dest / str(job_id)
        target.mkdir(parents=True, exist_ok=True)
        for name in BUNDLE_FILES:
            url = f"{text.rstrip('/')}/jobs/{job_id}/result/{name}"
            try:
                found = _get(url, target / name, timeout, None if name == "output.sealed" else SMALL_FILE_LIMIT)
            except LlmosError:
                shutil.rmtree(target, ignore_errors=True)
                raise
            if not found:
                shutil.rmtree(target, ignore_errors=True)
                raise ResultNotFoundError(f"{text} has no result for job {job_id}")
        return target
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(text).path)) if text.startswith("file://") else Path(text)
    bundle = path / str(job_id)
    if not (bundle / "attestation.json").is_file():
        raise ResultNotFoundError(f"no result bundle for job {job_id} in {path}")
    return bundle


def _copy(response: Any, out: BinaryIO, url: str, limit: int | None, directory: Path) -> None:
    """Copy a download to `out`, refusing more than `limit` bytes and stopping before the file system of `directory`
    would keep less than FREE_SPACE_RESERVE free (LlmosError either way; the caller removes what was written)."""
    done = checked = 0
    while chunk := response.read(_CHUNK):
        done += len(chunk)
        if limit is not None and done > limit:
            raise LlmosError(f"{url} sent more than {limit} bytes, more than any honest worker writes: refused")
        if done - checked >= _CHECK_SPACE_EVERY or checked == 0:
            checked = done
            if shutil.disk_usage(directory).free - len(chunk) < FREE_SPACE_RESERVE:
                raise LlmosError(f"{url} sent {done} bytes so far and the rest would leave less than "
                                 f"{FREE_SPACE_RESERVE >> 20} MiB free on {directory}: stopped")
        out.write(chunk)


def _get(url: str, target: Path, timeout: float, limit: int | None = None) -> bool:
    """Download `url` to `target` (at most `limit` bytes); False on 404."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:  # noqa: S310
            _copy(response, out, url, limit, target.parent)
        return True
    except LlmosError:
        target.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        target.unlink(missing_ok=True)
        if exc.code == 404:
            return False
        raise LlmosError(f"fetching {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        target.unlink(missing_ok=True)
        raise LlmosError(f"fetching {url} failed: {getattr(exc, 'reason', exc)}") from None


def fetch_checkpoints(source: str | Path, job_id: int, bundle: Path, timeout: float = 60.0) -> int:
    """Bring the job's sealed checkpoints (those its trajectory commits to) and their key into `bundle`; returns how
    many are there. A local results directory already holds them; a checkpoint the provider does not serve is simply
    absent (the replay that needs it says so)."""
    import json

    text = str(source)
    if not text.startswith(("http://", "https://")):
        return len(list((bundle / "checkpoints").glob("*.sealed"))) if (bundle / "checkpoints").is_dir() else 0
    base = f"{text.rstrip('/')}/jobs/{job_id}"
    _get(f"{base}/result/{CHECKPOINT_KEY}", bundle / CHECKPOINT_KEY, timeout, SMALL_FILE_LIMIT)
    (bundle / "checkpoints").mkdir(exist_ok=True)
    got = 0
    raw = (bundle / "trajectory.jsonl").read_bytes() if (bundle / "trajectory.jsonl").is_file() else b""
    for k, line in enumerate(raw.splitlines(), 1):
        try:
            kept = bool(json.loads(line).get("checkpoint"))
        except (ValueError, AttributeError):
            continue
        if kept and _get(f"{base}/checkpoint/{k}", bundle / "checkpoints" / f"{k}.sealed", timeout):
            got += 1
    return got
