"""`python -m worker serve`: load a fine-tuned output received on stdin, check it, then serve it over HTTP.

The plaintext weights never touch the disk, argv or the environment. The protocol on stdin/stdout, one JSON
object a line:

1. stdin: `{"recipe": "<the recipe's canonical JSON>", "weights": <byte count>}`, then exactly that many bytes
   (the decrypted safetensors output).
2. stdout: `{"event": "checked", ...}`: what `python -m worker check` reports (the trainable weights' hash, finite
   outputs on probe texts), computed on the very model that will be served; or `{"event": "error", "message": …}`.
3. stdin: the line `serve` (the client audit passed), or end of input (it did not: the process exits).
4. stdout: `{"event": "listening", "url": "http://HOST:PORT"}` once the socket listens. The server runs until
   SIGINT/SIGTERM or until its stdin closes (the parent that started it is gone).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import IO, Any

from llmos_chain.errors import LlmosError


def _say(event: str, **info: Any) -> None:
    print(json.dumps({"event": event, **info}), flush=True)


def read_input(stream: IO[bytes]) -> tuple[str, bytearray]:
    header = json.loads(stream.readline() or b"null")
    if not isinstance(header, dict) or not isinstance(header.get("recipe"), str) or not isinstance(header.get("weights"), int):
        raise LlmosError('serve expects {"recipe": "...", "weights": N} and N bytes on stdin')
    size = int(header["weights"])
    weights = bytearray(size)
    view, got = memoryview(weights), 0
    while got < size:
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise LlmosError(f"stdin ended after {got} of {size} weight bytes")
        got += n
    return header["recipe"], weights


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LlmosError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Accepted connections inherit it: without it a response written in two parts (headers, body) waits out the
    # client's delayed ACK, 40 ms a request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(256)
    return sock


def main(host: str, port: int, job: int | None, max_batch: int, max_wait_ms: float, threads: int | None = None) -> int:
    import torch
    import uvicorn

    from llmos_chain.recipe import Recipe
    from worker.predict import check_loaded
    from worker.serve.app import build_app
    from worker.serve.engine import Engine

    if threads is not None:
        torch.set_num_threads(threads)
    # Enough one-at-a-time batches to keep every core busy: one with torch's threads on all cores, two with one
    # thread each on two cores.
    concurrency = max(1, (os.cpu_count() or 1) // torch.get_num_threads())
    stdin = sys.stdin.buffer
    try:
        recipe_json, weights = read_input(stdin)
        recipe = Recipe.parse(recipe_json)
        engine = Engine.load(recipe, bytes(weights))
        weights[:] = bytes(len(weights))  # the loaded model holds its own copy
        checked = check_loaded(recipe, engine.model, engine.tokenizer, engine.labels)
    except LlmosError as exc:
        _say("error", message=str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 (whatever the loaders raise on bytes that are no model: said, not a traceback)
        _say("error", message=f"the model does not load: {type(exc).__name__}: {str(exc)[:300]}")
        return 1
    _say("checked", **checked)
    if stdin.readline().strip() != b"serve":
        return 0
    sock = listen(host, port)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    server = uvicorn.Server(uvicorn.Config(build_app(engine, job, max_batch, max_wait_ms / 1000, concurrency), log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=2))

    def watch_parent() -> None:
        while stdin.read(4096):
            pass
        server.should_exit = True

    threading.Thread(target=watch_parent, daemon=True, name="stdin-watch").start()
    _say("listening", url=f"http://{shown}:{bound[1]}")
    # Nobody reads our stdout past this line: anything printed later goes to stderr instead of filling the pipe.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    server.run(sockets=[sock])
    return 0
