"""The client's side of `llmos serve`: audit a job's result, then hand the decrypted model to a model server.

The server is `python -m worker serve` (torch lives there, never in this package). The plaintext weights go to it
over its stdin pipe, straight from the memory the client audit decrypted them into: never a file, argv or the
environment. The server loads them, runs the audit's output check on the very model it will serve, and starts
listening only once every check of the client audit has passed (see worker/serve/process.py for the protocol).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from llmos_chain.errors import LlmosError

if TYPE_CHECKING:
    from llmos_chain.audit import AuditReport
    from llmos_chain.chain.deploy import Suite
    from llmos_chain.crypto.keys import EncryptionKey


class ServeError(LlmosError):
    """The model server could not load, check or serve the model."""


@dataclass
class ModelServer:
    """A running `python -m worker serve`; `url` is set once it listens. Closing its stdin stops it."""

    proc: subprocess.Popen[bytes]
    checked: dict[str, Any] = field(default_factory=dict)
    url: str | None = None

    @classmethod
    def start(cls, recipe_json: str, weights: bytes | bytearray | memoryview, *, host: str = "127.0.0.1", port: int = 0,
              job: int | None = None, max_batch: int = 32, max_wait_ms: float = 5.0, threads: int | None = None,
              log: IO[bytes] | None = None) -> ModelServer:
        """Start the server, send it the model, and wait for its check of the loaded model (raises ServeError)."""
        cmd = [sys.executable, "-m", "worker", "serve", "--host", host, "--port", str(port),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
        if job is not None:
            cmd += ["--job", str(job)]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)  # noqa: S603
        server = cls(proc)
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps({"recipe": recipe_json, "weights": len(weights)}).encode() + b"\n")
            proc.stdin.write(weights)
            proc.stdin.flush()
        except BrokenPipeError:
            server.close()
            raise ServeError(f"the model server exited before it read the model (exit {proc.returncode})") from None
        server.checked = server._expect("checked")
        return server

    def _expect(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        try:
            message = dict(json.loads(line)) if line else {}
        except ValueError:
            message = {}
        if message.get("event") != event:
            self.close()
            raise ServeError(str(message.get("message") or f"the model server stopped (exit {self.proc.returncode}); "
                                 "is the worker extra installed? pip install -e '.[worker]'"))
        return message

    def serve(self, timeout_s: float = 60.0) -> str:
        """Tell the server to listen (the audit passed); returns its URL once `/health` answers."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"serve\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            raise ServeError("the model server exited before it could serve") from None
        url = str(self._expect("listening")["url"])
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5):  # noqa: S310 (our own server's URL)
                    break
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise ServeError(f"the model server did not answer at {url}") from None
                time.sleep(0.1)
        self.url = url
        return url

    def wait(self) -> int:
        return self.proc.wait()

    def close(self, timeout_s: float = 10.0) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def audit_and_serve(suite: Suite, job_id: int, bundle: Path, client_key: EncryptionKey, *, host: str = "127.0.0.1",
                    port: int = 0, max_batch: int = 32, max_wait_ms: float = 5.0, threads: int | None = None,
                    log: IO[bytes] | None = None) -> tuple[AuditReport, ModelServer | None]:
    """The client audit of `job_id`'s bundle, whose output check runs in the model server itself; the server listens
    only if every check passed (else it is stopped and None is returned with the failing report)."""
    from llmos_chain.audit import client_audit

    started: list[ModelServer] = []

    def check_in_server(recipe_json: str, weights: bytes) -> dict[str, Any]:
        server = ModelServer.start(recipe_json, weights, host=host, port=port, job=job_id, max_batch=max_batch,
                                   max_wait_ms=max_wait_ms, threads=threads, log=log)
        started.append(server)
        return server.checked

    try:
        report = client_audit(suite, job_id, bundle, client_key, check_output=check_in_server)
    except BaseException:
        for server in started:
            server.close()
        raise
    if not report.passed or not started:
        for server in started:
            server.close()
        return report, None
    server = started[-1]
    try:
        server.serve()
    except BaseException:
        server.close()
        raise
    return report, server


def ask(url: str, path: str, body: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
    """POST a JSON body to a served model; a 4xx/5xx raises ServeError with the server's message."""
    request = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise ServeError(f"{path}: HTTP {exc.code}: {detail}") from None
