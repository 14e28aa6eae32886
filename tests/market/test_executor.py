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


def test_a_run_left_by_a_killed_coordinator_is_stopped_before_the_job_restarts(tmp_path: Path) -> None:
    import os
    import sys
    import time

    # a stand-in worker that, like the real one, locks <work dir>/worker.pid for its whole life
    script = tmp_path / "locking-worker"
    script.write_text(f"""#!{sys.executable}
import fcntl, os, sys, time
work = sys.argv[sys.argv.index("--work-dir") + 1]
os.makedirs(work, exist_ok=True)
handle = open(os.path.join(work, "worker.pid"), "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.truncate(0); handle.write(str(os.getpid())); handle.flush()
time.sleep(60)
""")
    script.chmod(0o755)
    command = WorkerCommand("http://127.0.0.1:1", tmp_path / "d.json", tmp_path / "ks", "worker", tmp_path / "results",
                            tmp_path / "work", python=str(script))
    first = Executor(command, tmp_path / "logs")
    orphan = first.start(7).process
    pid_file = tmp_path / "work" / "7" / "worker.pid"
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip() == str(orphan.pid)):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # the coordinator died before recording the PID: a new one knows nothing of the run but finds it by its lock
    second = Executor(command, tmp_path / "logs")
    assert second.stop_stale(7) is True
    assert orphan.wait(timeout=10) == -9
    assert second.stop_stale(7) is False  # nothing left to stop
    second.start(7)
    second.cancel(7)
    assert second.wait(7, 10).cancelled
    assert not os.path.exists(f"/proc/{orphan.pid}")
