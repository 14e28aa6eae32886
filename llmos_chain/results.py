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

from llmos_chain.errors import LlmosError

BUNDLE_FILES = ("output.sealed", "output.key", "metrics.json", "trajectory.jsonl", "attestation.json")


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
                with urllib.request.urlopen(url, timeout=timeout) as response, open(target / name, "wb") as out:  # noqa: S310
                    shutil.copyfileobj(response, out)
            except urllib.error.HTTPError as exc:
                shutil.rmtree(target, ignore_errors=True)
                if exc.code == 404:
                    raise ResultNotFoundError(f"{text} has no result for job {job_id}") from None
                raise LlmosError(f"fetching {url} failed: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError) as exc:
                shutil.rmtree(target, ignore_errors=True)
                raise LlmosError(f"fetching {url} failed: {getattr(exc, 'reason', exc)}") from None
        return target
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(text).path)) if text.startswith("file://") else Path(text)
    bundle = path / str(job_id)
    if not (bundle / "attestation.json").is_file():
        raise ResultNotFoundError(f"no result bundle for job {job_id} in {path}")
    return bundle
