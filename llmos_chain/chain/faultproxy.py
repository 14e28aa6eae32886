"""A fault-injecting JSON-RPC proxy for loopback tests and the soak benchmark.

Put it between a daemon and a dev node (anvil) to see what the daemon does when the node misbehaves the
way hosted providers do::

    with Anvil() as node, FaultProxy(node.url, seed=1) as proxy:
        run_daemon(rpc=proxy.url)
        proxy.set(error_rate=0.05)             # 5 % of HTTP requests fail (half 502, half -32603)
        proxy.set(lag_blocks=3, lag_rate=0.3)  # 30 % are answered by a backend 3 blocks behind
        proxy.set(hang_rate=0.01, hang_s=20)   # 1 % hang 20 s before being answered
        proxy.set(paused=True)                 # node down: every request gets HTTP 503
        proxy.set_upstream(other_node.url)     # node restarted (e.g. empty): same URL, another node
        proxy.stats()                          # counters: requests per method, faults per kind, raw txs sent

Faults are decided once per HTTP request, from a `random.Random(seed)` under a lock, so a run is
reproducible up to thread scheduling. A JSON-RPC batch (a JSON list) is one HTTP request and is
treated as one backend call: the whole batch fails, hangs or lags together.

- `error_rate`: the request is answered with an injected error and NOT forwarded (the node never sees
  it): HTTP 502, or HTTP 200 with a JSON-RPC error `{"code": -32603, "message": "internal error"}` (for
  each member of a batch); `error_kinds` picks among ("http", "rpc"), uniformly.
- `hang_rate`, `hang_s`: the proxy waits `hang_s` seconds, then forwards and answers (the caller's
  own timeout decides whether it sees the answer).
- `lag_blocks`, `lag_rate`: the request is answered as by a node whose head is `head - lag_blocks`:
  `eth_blockNumber` says the lagged head; `eth_getBlockByNumber` of "latest"/"safe"/"finalized" gives
  the lagged head's block, of a later number null; `eth_getBlockByHash` of a later block null;
  `eth_getLogs` silently leaves out logs of later blocks (what a lagging backend returns);
  `eth_getTransactionReceipt` of a transaction mined later is null and `eth_getTransactionByHash`
  shows it pending; `eth_call`, `eth_getBalance`, `eth_getCode`, `eth_getStorageAt` at "latest" (or no
  tag) run at the lagged head. `eth_getTransactionCount`, `eth_estimateGas`, `eth_sendRawTransaction`
  and everything else are forwarded as they are.
- `paused`: every request is answered HTTP 503 without being forwarded (node down). An unreachable
  upstream is answered HTTP 502 and counted as the fault `upstream_down`.

Bookkeeping (`stats()`, thread-safe): `requests` (HTTP requests), `methods` (JSON-RPC calls per method,
batch members counted one by one, injected-error requests included), `faults` (per kind: `http_502`,
`rpc_error`, `hang`, `lag`, `paused`, `upstream_down`), and `raw_txs`: the keccak hash (= the
transaction hash) of every `eth_sendRawTransaction` payload forwarded to the node, in order, so a test
can count the transactions sent. `reset_counters()` zeroes them.

Only for loopback: it binds 127.0.0.1 on a free port; `.url` is its address.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from eth_utils import keccak

__all__ = ["FaultProxy", "Faults"]

LATEST_TAGS = ("latest", "safe", "finalized")
#: methods whose last parameter is a block tag that a lagging node reads at its own head; (position, default)
_AT_HEAD = {"eth_call": 1, "eth_getBalance": 1, "eth_getCode": 1, "eth_getStorageAt": 2}


@dataclass(frozen=True)
class Faults:
    """The fault settings at one moment (see the module docstring)."""

    error_rate: float = 0.0
    error_kinds: tuple[str, ...] = ("http", "rpc")
    hang_rate: float = 0.0
    hang_s: float = 30.0
    lag_blocks: int = 0
    lag_rate: float = 0.0
    paused: bool = False

    def check(self) -> Faults:
        for name in ("error_rate", "hang_rate", "lag_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.hang_s < 0 or self.lag_blocks < 0:
            raise ValueError("hang_s and lag_blocks must be at least 0")
        if not self.error_kinds or set(self.error_kinds) - {"http", "rpc"}:
            raise ValueError(f"error_kinds must be a non-empty subset of ('http', 'rpc'), got {self.error_kinds}")
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"error_rate": self.error_rate, "error_kinds": list(self.error_kinds), "hang_rate": self.hang_rate,
                "hang_s": self.hang_s, "lag_blocks": self.lag_blocks, "lag_rate": self.lag_rate, "paused": self.paused}


@dataclass
class _Counters:
    requests: int = 0
    methods: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    raw_txs: list[str] = field(default_factory=list)


class _Upstream(Exception):
    """The upstream node could not be reached."""


class FaultProxy:
    """A JSON-RPC proxy on 127.0.0.1 that injects faults on the way to `upstream` (use as a context manager)."""

    def __init__(self, upstream: str, *, seed: int | None = 0, upstream_timeout_s: float = 60.0, **faults: Any) -> None:
        self._lock = threading.Lock()
        self._upstream = upstream
        self._faults = Faults(**{k: tuple(v) if k == "error_kinds" else v for k, v in faults.items()}).check()
        self._rng = random.Random(seed)
        self._counters = _Counters()
        self._stopping = threading.Event()
        self.upstream_timeout_s = upstream_timeout_s
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def upstream(self) -> str:
        with self._lock:
            return self._upstream

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def set(self, **faults: Any) -> Faults:
        """Change some fault settings now (the others are kept); returns the new settings."""
        if "error_kinds" in faults:
            faults["error_kinds"] = tuple(faults["error_kinds"])
        with self._lock:
            self._faults = replace(self._faults, **faults).check()
            return self._faults

    def clear(self) -> None:
        """No faults (and not paused) from now on."""
        with self._lock:
            self._faults = Faults()

    def set_upstream(self, url: str) -> None:
        """Forward to another node from the next request on (a node restarted, or replaced)."""
        with self._lock:
            self._upstream = url

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = self._counters
            return {"requests": c.requests, "methods": dict(c.methods), "faults": dict(c.faults), "raw_txs": list(c.raw_txs)}

    def reset_counters(self) -> None:
        with self._lock:
            self._counters = _Counters()

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="llmos-faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends injected hangs
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ the work
    def _decide(self) -> tuple[Faults, str, str | None, bool, bool]:
        """(settings, upstream, injected error kind or None, hang, lag) for one HTTP request."""
        with self._lock:
            f, rng = self._faults, self._rng
            self._counters.requests += 1
            # always draw the same number of values so that one setting does not shift another's sequence
            e, k, h, lg = rng.random(), rng.random(), rng.random(), rng.random()
            error = None
            if e < f.error_rate:
                error = f.error_kinds[min(int(k * len(f.error_kinds)), len(f.error_kinds) - 1)]
            return f, self._upstream, error, h < f.hang_rate, f.lag_blocks > 0 and lg < f.lag_rate

    def _count(self, *, methods: list[str] = (), fault: str | None = None, raw: list[str] = ()) -> None:  # type: ignore[assignment]
        with self._lock:
            self._counters.methods.update(methods)
            if fault:
                self._counters.faults[fault] += 1
            self._counters.raw_txs.extend(raw)

    def _post(self, upstream: str, payload: Any) -> Any:
        data = json.dumps(payload).encode()
        request = urllib.request.Request(upstream, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.upstream_timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # the node's own HTTP error: pass its status on
            raise _HttpStatus(exc.code, exc.read()) from None
        except (OSError, ValueError) as exc:
            raise _Upstream(str(exc)) from None

    def handle(self, body: bytes) -> tuple[int, bytes]:
        """Answer one HTTP request body: (status, response body)."""
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}'
        batch = isinstance(payload, list)
        calls = [c for c in (payload if batch else [payload]) if isinstance(c, dict)]
        faults, upstream, error, hang, lag = self._decide()
        self._count(methods=[str(c.get("method")) for c in calls])
        if faults.paused:
            self._count(fault="paused")
            return 503, b"node unavailable (paused by the fault proxy)"
        if error == "http":
            self._count(fault="http_502")
            return 502, b"bad gateway (injected by the fault proxy)"
        if error == "rpc":
            self._count(fault="rpc_error")
            errors = [{"jsonrpc": "2.0", "id": c.get("id"), "error": {"code": -32603, "message": "internal error"}} for c in calls]
            return 200, json.dumps(errors if batch else errors[0]).encode()
        if hang:
            self._count(fault="hang")
            if self._stopping.wait(faults.hang_s):
                return 503, b"proxy stopping"
        try:
            if lag:
                self._count(fault="lag")
                answer = self._lagging(upstream, payload, batch, calls, faults.lag_blocks)
            else:
                answer = self._post(upstream, payload)
        except _HttpStatus as exc:
            return exc.status, exc.body
        except _Upstream:
            self._count(fault="upstream_down")
            return 502, b"bad gateway (upstream unreachable)"
        raw = []
        answers = {a.get("id"): a for a in (answer if isinstance(answer, list) else [answer]) if isinstance(a, dict)}
        for c in calls:
            if c.get("method") == "eth_sendRawTransaction" and c.get("params"):
                try:
                    raw.append("0x" + keccak(hexstr=str(c["params"][0])).hex())
                except ValueError:
                    continue
                if "error" in answers.get(c.get("id"), {}):
                    raw.pop()  # refused by the node: nothing was sent
        if raw:
            self._count(raw=raw)
        return 200, json.dumps(answer).encode()

    # ------------------------------------------------------------------ a lagging backend
    def _lagging(self, upstream: str, payload: Any, batch: bool, calls: list[dict[str, Any]], lag_blocks: int) -> Any:
        head_answer = self._post(upstream, {"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []})
        head = max(int(head_answer["result"], 16) - lag_blocks, 0)
        rewritten = [self._rewrite(c, head) for c in calls]
        to_send = [r for r, _ in rewritten if r is not None]
        got: dict[Any, Any] = {}
        if to_send:
            answer = self._post(upstream, to_send if batch else to_send[0])
            for a in answer if isinstance(answer, list) else [answer]:
                if isinstance(a, dict):
                    got[_key(a.get("id"))] = a
        out = []
        for call, (sent, local) in zip(calls, rewritten, strict=True):
            if sent is None:
                out.append({"jsonrpc": "2.0", "id": call.get("id"), "result": local})
                continue
            a = got.get(_key(call.get("id")))
            if a is None:
                continue
            if "result" in a:
                a = {**a, "result": self._filter(str(call.get("method")), a["result"], head)}
            out.append(a)
        return out if batch else (out[0] if out else {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "internal error"}})

    @staticmethod
    def _rewrite(call: dict[str, Any], head: int) -> tuple[dict[str, Any] | None, Any]:
        """(the call to forward, or None with the answer given here)."""
        method = call.get("method")
        params = list(call.get("params") or [])
        if method == "eth_blockNumber":
            return None, hex(head)
        if method == "eth_getBlockByNumber" and params:
            tag = params[0]
            if tag in LATEST_TAGS:
                params[0] = hex(head)
            elif isinstance(tag, str) and tag.startswith("0x") and int(tag, 16) > head:
                return None, None
            return {**call, "params": params}, None
        if method in _AT_HEAD:
            position = _AT_HEAD[method]
            if len(params) <= position:
                params += [None] * (position + 1 - len(params))
                params[position] = hex(head)
            elif params[position] in (None, *LATEST_TAGS):
                params[position] = hex(head)
            return {**call, "params": params}, None
        return call, None

    @staticmethod
    def _filter(method: str, result: Any, head: int) -> Any:
        def later(item: Any) -> bool:
            number = item.get("blockNumber") if isinstance(item, dict) else None
            return isinstance(number, str) and int(number, 16) > head

        if method == "eth_getLogs" and isinstance(result, list):
            return [log for log in result if not later(log)]
        if method == "eth_getTransactionReceipt" and later(result):
            return None
        if method == "eth_getTransactionByHash" and later(result):
            return {**result, "blockHash": None, "blockNumber": None, "transactionIndex": None}
        if method == "eth_getBlockByHash" and isinstance(result, dict):
            number = result.get("number")
            if isinstance(number, str) and int(number, 16) > head:
                return None
        return result


class _HttpStatus(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def _key(request_id: Any) -> str:
    return json.dumps(request_id)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, answer = self.owner.handle(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:  # the caller gave up (its timeout): nothing to answer
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass
