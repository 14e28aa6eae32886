"""Serve the dashboard (and the API of its first coordinator) from a background thread: `llmos demo --serve`."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from llmos_chain.errors import ConfigError

HOST = "127.0.0.1"  # like the API: localhost only


def bind(port: int, host: str = HOST) -> socket.socket:
    """The listening socket, bound now: a port in use stops the command before it does anything."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{host}:{port} is in use ({exc.strerror}): pick another --port") from None
    return sock


def serve_in_thread(app: Any, sock: socket.socket, timeout_s: float = 30.0) -> Any:
    """Run `app` with uvicorn on `sock` in a daemon thread; returns the server once it accepts connections."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="llmos-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError("the dashboard's server did not start")
        time.sleep(0.05)
    return server
