"""Serve the in-process eth-tester chain over JSON-RPC on localhost.

The embedded chain lives inside one Python process, but worker runs are separate processes (they
import torch; the coordinator must not). The demo therefore exposes its eth-tester chain on
127.0.0.1 through this bridge: requests go through the same eth-tester middleware web3 uses in
process, answers are rewritten to standard JSON-RPC (quantities as hex, reverts as code 3 with the
revert data), and one lock serialises every request so the chain sees one caller at a time.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hexbytes import HexBytes
from web3 import Web3

from llmos_chain.chain.contracts import _revert_data


def _to_rpc(value: Any) -> Any:
    """Standard JSON-RPC encoding of eth-tester's answers: ints as hex quantities, bytes as hex data."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray, HexBytes)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _to_rpc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_rpc(v) for v in value]
    return value


class ProviderBridge:
    """An HTTP JSON-RPC front for an in-process web3 (eth-tester) chain; `url` is where it listens."""

    def __init__(self, w3: Web3, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()
        from web3.middleware import combine_middleware

        original = self._wrap_in_process(w3)
        raw = Web3(w3.provider)
        raw.middleware_onion.clear()
        # eth-tester's own middleware turns JSON-RPC requests into its calls and back
        self._request = combine_middleware(middleware=tuple(w3.provider._middleware), w3=raw,  # type: ignore[attr-defined]
                                           provider_request_fn=original)
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    request = json.loads(body)
                except json.JSONDecodeError:
                    self._send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
                    return
                if isinstance(request, list):
                    self._send([bridge.answer(r) for r in request])
                else:
                    self._send(bridge.answer(request))

            def _send(self, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # quiet: the demo has its own display
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="llmos-rpc-bridge", daemon=True)

    def _wrap_in_process(self, w3: Web3) -> Any:
        """The demo process keeps using `w3` directly: its requests take the same lock as the bridge's."""
        provider = w3.provider
        original = provider.make_request

        def locked(method: Any, params: Any) -> Any:
            with self.lock:
                return original(method, params)

        provider.make_request = locked  # type: ignore[method-assign]
        provider._request_func_cache = (None, None)  # rebuilt on the next call, around the locked function
        return original

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        rid = request.get("id")
        method, params = request.get("method"), request.get("params", [])
        if not isinstance(method, str):
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32600, "message": "invalid request"}}
        try:
            with self.lock:
                response = self._request(method, params)
        except Exception as exc:  # eth-tester raises on reverts and bad input: answer as a node would
            data = _revert_data(exc)
            if data is not None or "revert" in str(exc).lower():
                payload = data if isinstance(data, str) else "0x" + bytes(data or b"").hex()
                return {"jsonrpc": "2.0", "id": rid, "error": {"code": 3, "message": "execution reverted", "data": payload}}
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": f"{type(exc).__name__}: {exc}"}}
        if "error" in response:
            return {"jsonrpc": "2.0", "id": rid, "error": response["error"]}
        return {"jsonrpc": "2.0", "id": rid, "result": _to_rpc(response.get("result"))}

    def __enter__(self) -> ProviderBridge:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
