"""`llmos bench scale`: one fine-tuning job on 1, 2, … ranks of a Ray cluster (data-parallel, DDP over gloo on CPU).

The measurement runs in `python -m worker bench-scale` (its own process: this package imports no torch); by default it
starts a local Ray cluster of two nodes, each with half the ranks' CPU slots, and stops it after. Every rank (the
1-rank run too) has one torch thread, so the efficiency, tokens/s ÷ (ranks × the 1-rank tokens/s), is the
distributed overhead (gradient all-reduce, the per-step loss mean, smaller per-rank batches), not thread counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from llmos_chain.errors import ConfigError, LlmosError


def measure(ranks: list[int], steps: int, model: str, batch_size: int, nodes: int, address: str | None = None,
            timeout_s: float = 1800.0) -> dict[str, Any]:
    if not ranks or min(ranks) < 1:
        raise ConfigError("--ranks: give rank counts of at least 1 (e.g. --ranks 1 --ranks 2)")
    if 1 not in ranks:
        ranks = [1, *ranks]  # the efficiency's baseline
    if batch_size < max(ranks):
        raise ConfigError(f"--batch-size {batch_size} cannot be split over {max(ranks)} ranks")
    cmd = [sys.executable, "-m", "worker", "bench-scale", "--ranks", *map(str, sorted(set(ranks))), "--steps", str(steps),
           "--model", model, "--batch-size", str(batch_size), "--nodes", str(nodes)]
    if address:
        cmd += ["--address", address]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise LlmosError(f"the scaling benchmark ran past {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise LlmosError(f"the scaling benchmark failed (is the worker extra installed? pip install -e '.[worker]'): {tail[0]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
