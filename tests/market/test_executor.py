"""The executor: one process per job on its GPU slots, with a time limit, cancellation and clean reports."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from llmos_chain.market.executor import Executor, WorkerCommand


def _fake_worker(tmp: Path, body: str) -> str:
    """A stand-in worker executable for the executor's own behaviour (the real one runs in tests/worker)."""
    script = tmp / "fake-worker"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _executor(tmp: Path, body: str, limit: float = 30.0) -> Executor:
    command = WorkerCommand("http://127.0.0.1:1", tmp / "d.json", tmp / "ks", "worker", tmp / "results", tmp / "work",
                            {"LLMOS_PRIVATE_KEY": "0xabc"}, python=_fake_worker(tmp, body))
    return Executor(command, tmp / "logs", time_limit_s=limit)


def test_success_report_and_gpu_slots(tmp_path: Path) -> None:
    body = 'echo "progress" >&2; printf \'{"ok": true, "job_id": 4, "gpus": "%s", "key": "%s", "args": "%s"}\\n\' "$CUDA_VISIBLE_DEVICES" "$LLMOS_PRIVATE_KEY" "$*"'
    executor = _executor(tmp_path, body)
    executor.start(4, gpu_slots=[2, 3])
    outcome = executor.wait(4, 10)
    assert outcome.ok and outcome.report["gpus"] == "2,3" and outcome.report["key"] == "0xabc"
    assert "--job 4" in outcome.report["args"] and "--enc-key worker" in outcome.report["args"]
    assert outcome.log.read_text().strip() == "progress"


def test_failure_report_is_passed_through(tmp_path: Path) -> None:
    report = {"ok": False, "reason": 2, "error": "IntegrityError", "message": "cipher hash mismatch", "details_hash": "0x01"}
    executor = _executor(tmp_path, f"echo '{json.dumps(report)}'; exit 3")
    executor.start(5)
    outcome = executor.wait(5, 10)
    assert not outcome.ok and outcome.report["reason"] == 2 and outcome.returncode == 3


def test_crash_time_limit_and_cancel(tmp_path: Path) -> None:
    crashed = _executor(tmp_path, "exit 9")
    crashed.start(1)
    outcome = crashed.wait(1, 10)
    assert not outcome.ok and outcome.report["error"] == "WorkerCrashed"

    slow = _executor(tmp_path, "sleep 30", limit=0.3)
    slow.start(2)
    outcome = slow.wait(2, 10)
    assert outcome.timed_out and outcome.report["error"] == "TimeLimit" and outcome.seconds < 5

    stopped = _executor(tmp_path, "sleep 30")
    stopped.start(3)
    stopped.cancel(3)
    outcome = stopped.wait(3, 10)
    assert outcome.cancelled and outcome.report["error"] == "Cancelled"
