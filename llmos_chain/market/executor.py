"""Run worker jobs as separate processes: `python -m worker run …` on the assigned GPU slots.

The executor never imports torch: it starts a process per job with CUDA_VISIBLE_DEVICES set to the
slots it was given, captures its output to a log file, enforces a time limit, can cancel, and turns
the process's JSON answer into a clean success or failure report for the coordinator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos_chain.errors import LlmosError


#: Written and locked by every worker process in its work directory (see `stop_stale`).
PID_FILE = "worker.pid"


@dataclass
class WorkerCommand:
    """What a worker process needs besides the job id."""

    rpc: str
    deployment: Path
    keystore: Path
    enc_key: str
    results: Path
    work_dir: Path
    private_key_env: dict[str, str] = field(default_factory=dict)  # e.g. {"LLMOS_PRIVATE_KEY": "0x…"}
    python: str = sys.executable
    #: Directories whose files a job's file:// URIs may name; None lets them name any local file (a trusted local
    #: setup such as the demo). `llmos coordinator run` passes its config's `file_roots` (none by default).
    file_roots: tuple[Path, ...] | None = None

    def fetch_args(self) -> list[str]:
        if self.file_roots is None:
            return ["--any-local-file"]
        return [arg for root in self.file_roots for arg in ("--file-root", str(root))]


@dataclass
class Outcome:
    job_id: int
    ok: bool
    report: dict[str, Any]
    returncode: int | None
    seconds: float
    log: Path
    timed_out: bool = False
    cancelled: bool = False


class AdoptedProcess:
    """A worker process started by an earlier coordinator process, watched through its PID file lock (it is not our
    child, so it cannot be waited for): it is running while the lock is held. Its result is read from its bundle."""

    def __init__(self, pid: int, pid_file: Path) -> None:
        self.pid = pid
        self.pid_file = pid_file
        self.stdout = None
        self.returncode: int | None = None

    def poll(self) -> int | None:
        import fcntl

        if self.returncode is not None:
            return self.returncode
        try:
            with open(self.pid_file, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        except OSError:
            pass
        self.returncode = 0
        return 0

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(0.05)
        return self.returncode or 0


class RunningJob:
    def __init__(self, job_id: int, process: Any, log: Path, deadline: float, started: float, bundle: Path | None = None) -> None:
        self.job_id = job_id
        self.process = process
        self.log = log
        self.deadline = deadline
        self.started = started
        self.cancelled = False
        self.bundle = bundle  # adopted runs: where their result appears (they report to no one)


class Executor:
    """Starts, watches and stops worker processes; one per job, each on its own GPU slots."""

    def __init__(self, command: WorkerCommand, logs: Path, time_limit_s: float = 3600.0, cpu_threads: int | None = None) -> None:
        self.command = command
        self.cpu_threads = cpu_threads or max(1, (os.cpu_count() or 2) // 2)
        self.logs = logs
        self.time_limit_s = time_limit_s
        self.running: dict[int, RunningJob] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, job_id: int, gpu_slots: list[int] | None = None, time_limit_s: float | None = None,
              command: WorkerCommand | None = None) -> RunningJob:
        """Start the worker process for `job_id` (`command` overrides the default, e.g. another worker's keys)."""
        if job_id in self.running:
            return self.running[job_id]
        c = command or self.command
        self.stop_stale(job_id, c)
        env = {**os.environ, **c.private_key_env, "PYTHONUNBUFFERED": "1"}
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(s) for s in gpu_slots) if gpu_slots else ""
        if "OMP_NUM_THREADS" not in env:
            # Runs share the host's cores (for the whole run on a CPU host, for data work on a GPU host): a bounded
            # thread count per job avoids OpenMP oversubscription, where spinning threads burn the cores' time
            env["OMP_NUM_THREADS"] = str(self.cpu_threads)
        cmd = [c.python, "-m", "worker", "run", "--job", str(job_id), "--rpc", c.rpc, "--deployment", str(c.deployment),
               "--keystore", str(c.keystore), "--enc-key", c.enc_key, "--results", str(c.results),
               "--work-dir", str(c.work_dir / str(job_id)), "--json", *c.fetch_args(), *self.backend_args()]
        log = self.logs / f"job-{job_id}.log"
        out = open(log, "ab")
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, env=env, start_new_session=True)
        out.close()
        now = time.monotonic()
        job = RunningJob(job_id, process, log, now + (time_limit_s or self.time_limit_s), now)
        self.running[job_id] = job
        return job

    def backend_args(self) -> list[str]:
        """Extra arguments of `python -m worker run` for this executor's backend (none: train in the process)."""
        return []

    def live_pid(self, job_id: int, command: WorkerCommand | None = None) -> int | None:
        """The PID of a run of `job_id` that is still alive (its PID file lock is held), or None."""
        import fcntl

        path = (command or self.command).work_dir / str(job_id) / PID_FILE
        if not path.exists():
            return None
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                handle.seek(0)
                text = handle.read().strip()
                return int(text) if text.isdigit() else None

    def adopt(self, job_id: int, pid: int, command: WorkerCommand | None = None, time_limit_s: float | None = None) -> RunningJob:
        """Watch a run left by an earlier coordinator process instead of training again; its outcome comes from the
        bundle it writes (`results/JOB`), or is a crash (run again) if it ends without one."""
        c = command or self.command
        now = time.monotonic()
        job = RunningJob(job_id, AdoptedProcess(pid, c.work_dir / str(job_id) / PID_FILE), self.logs / f"job-{job_id}.log",
                         now + (time_limit_s or self.time_limit_s), now, bundle=c.results / str(job_id))
        self.running[job_id] = job
        return job

    def stop_stale(self, job_id: int, command: WorkerCommand | None = None, timeout_s: float = 10.0) -> bool:
        """Kill a run of `job_id` left by an earlier coordinator process; returns whether there was one.

        Each worker process holds an exclusive lock on `<work dir>/worker.pid` for its whole life, so a
        held lock means a run is still alive even if no coordinator ever recorded its PID (killed
        between starting it and writing the runs table).
        """
        import fcntl

        path = (command or self.command).work_dir / str(job_id) / PID_FILE
        if not path.exists():
            return False
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return False  # nobody holds it: the earlier run is over
            except BlockingIOError:
                pass
            handle.seek(0)
            text = handle.read().strip()
            if text.isdigit():
                try:
                    os.killpg(int(text), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + timeout_s
            while True:  # the lock is free once the killed process is gone
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LlmosError(f"a stale worker run of job {job_id} (pid {text or '?'}) did not stop") from None
                    time.sleep(0.05)

    def cancel(self, job_id: int) -> None:
        job = self.running.get(job_id)
        if job is not None and job.process.poll() is None:
            job.cancelled = True
            try:
                os.killpg(job.process.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def poll(self) -> list[Outcome]:
        """Outcomes of the processes that ended (or were stopped for their time limit) since the last poll."""
        done = []
        for job_id, job in list(self.running.items()):
            timed_out = False
            if job.process.poll() is None:
                if time.monotonic() < job.deadline:
                    continue
                timed_out = True
                try:
                    os.killpg(job.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            job.process.wait()
            stdout = ""
            if job.process.stdout is not None:
                stdout = job.process.stdout.read().decode()
                job.process.stdout.close()
            done.append(self._outcome(job, stdout, timed_out))
            del self.running[job_id]
        return done

    def wait(self, job_id: int, timeout_s: float) -> Outcome:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for outcome in self.poll():
                if outcome.job_id == job_id:
                    return outcome
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still running after {timeout_s}s")

    def _outcome(self, job: RunningJob, stdout: str, timed_out: bool) -> Outcome:
        seconds = time.monotonic() - job.started
        report: dict[str, Any]
        try:
            report = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
        except json.JSONDecodeError:
            report = {}
        if not report and job.bundle is not None and not timed_out:
            report = bundle_report(job.bundle, job.job_id) or {}
        if timed_out:
            report = {"ok": False, "reason": 6, "error": "TimeLimit", "message": f"the worker ran past its {self.time_limit_s:.0f}s limit"}
        elif job.cancelled:
            report = {"ok": False, "reason": 6, "error": "Cancelled", "message": "cancelled by the coordinator"}
        elif not report:
            report = {"ok": False, "reason": 6, "error": "WorkerCrashed",
                      "message": f"the worker exited with code {job.process.returncode} and no report; see {job.log}"}
        return Outcome(job.job_id, bool(report.get("ok")), report, job.process.returncode, seconds, job.log, timed_out, job.cancelled)


def bundle_report(bundle: Path, job_id: int) -> dict[str, Any] | None:
    """A success report rebuilt from a finished bundle on disk (its signed attestation), as the worker process prints
    it; None if there is no complete bundle for `job_id`. (Whether it is recent enough for the job's current grant is
    the coordinator's check.)"""
    path = bundle / "attestation.json"
    try:
        if not all((bundle / name).is_file() for name in ("output.sealed", "output.key", "metrics.json", "trajectory.jsonl")):
            return None
        doc = json.loads(path.read_text())
        signature = str(doc.pop("signature"))
        if int(doc.get("job_id", -1)) != job_id:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"ok": True, "job_id": job_id, "bundle": str(bundle), "attestation": doc, "signature": signature, "adopted": True}
