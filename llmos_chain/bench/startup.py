"""How long the CLI takes to answer when it does no work: help, a usage error, the version.

Each command runs as a fresh `python -m llmos_chain.cli.main …` process (the interpreter's start included, as a
user sees it), `runs` times, round-robin so that a change in the machine's load falls on every command alike; the
figure is each command's median wall time. The source is this package's own checkout (the directory holding
`llmos_chain`), so the code measured is the code running the benchmark, whatever `llmos` resolves to. With a
baseline checkout (another tree holding `llmos_chain`, e.g. a `git worktree` of an older commit), its processes are
interleaved with these in the same rounds: the two medians are comparable on a busy machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmos_chain.errors import ConfigError, LlmosError

#: The commands timed, by name, with the exit status each must end with (a usage error exits 2).
COMMANDS: dict[str, tuple[list[str], int]] = {
    "--help": (["--help"], 0),
    "job --help": (["job", "--help"], 0),
    "job post --help": (["job", "post", "--help"], 0),
    "job status notanumber": (["job", "status", "notanumber"], 2),
    "--version": (["--version"], 0),
}
#: The target, from issue 16: help and argument errors answer within this.
TARGET_S = 0.5

SOURCE = Path(__file__).resolve().parents[2]


def _time_once(python: str, source: Path, args: list[str], expected_rc: int) -> float:
    # `python -m` puts the working directory first on sys.path: the checkout at `source` is the one imported.
    started = time.perf_counter()
    proc = subprocess.run([python, "-m", "llmos_chain.cli.main", *args], cwd=source, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    if proc.returncode != expected_rc:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LlmosError(f"`llmos {' '.join(args)}` in {source} exited {proc.returncode}, not {expected_rc}: {tail}")
    return elapsed


def _summary(times: dict[str, list[float]]) -> dict[str, Any]:
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    return {"commands": medians, "max_median_s": max(medians.values())}


def measure(runs: int = 10, baseline: Path | None = None, python: str = sys.executable) -> dict[str, Any]:
    """Median wall time per command over `runs` fresh processes (and the same for `baseline`, interleaved)."""
    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    sources = {"this": SOURCE}
    if baseline is not None:
        baseline = baseline.expanduser().resolve()
        if not (baseline / "llmos_chain" / "cli" / "main.py").is_file():
            raise ConfigError(f"--baseline {baseline} holds no llmos_chain/cli/main.py: name a checkout of this project")
        sources["baseline"] = baseline
    # One unrecorded round first: the files the interpreter reads are then in the page cache for every source.
    for source in sources.values():
        _time_once(python, source, *COMMANDS["--version"])
    times: dict[str, dict[str, list[float]]] = {key: {name: [] for name in COMMANDS} for key in sources}
    for _ in range(runs):
        for name, (args, expected_rc) in COMMANDS.items():
            for key, source in sources.items():
                times[key][name].append(_time_once(python, source, args, expected_rc))
    result: dict[str, Any] = {**_summary(times["this"]), "runs": runs, "python": python, "source": str(SOURCE),
                              "target_s": TARGET_S}
    if baseline is not None:
        result["baseline"] = {**_summary(times["baseline"]), "source": str(baseline)}
    return result
