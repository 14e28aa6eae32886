"""The transport's retries: transient node errors are asked again (bounded), answers and unsafe methods are not."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from web3.exceptions import Web3RPCError

from llmos_chain.chain.connect import DEV_CHAIN_IDS, RetryingHTTPProvider, connect, default_confirmations, transient_rpc_error
from llmos_chain.errors import NodeUnreachableError


class ScriptedNode:
    """A loopback JSON-RPC endpoint answering from a script: each entry is ("http", status) or ("rpc", error) or
    ("ok", result); the last entry repeats. Records every method asked."""

    def __init__(self, script: list[tuple[str, object]]) -> None:
        self.script = list(script)
        self.asked: list[str] = []
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                node.asked.append(request["method"])
                kind, value = node.script.pop(0) if len(node.script) > 1 else node.script[0]
                if kind == "http":
                    self.send_response(int(value))  # type: ignore[call-overload]
                    self.end_headers()
                    return
                answer = {"jsonrpc": "2.0", "id": request["id"], **({"error": value} if kind == "rpc" else {"result": value})}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[type[ScriptedNode]]:
    nodes: list[ScriptedNode] = []

    class Factory(ScriptedNode):
        def __init__(self, script: list[tuple[str, object]]) -> None:
            super().__init__(script)
            nodes.append(self)

    yield Factory
    for node in nodes:
        node.close()


def _provider(url: str, retries: int = 5) -> RetryingHTTPProvider:
    return RetryingHTTPProvider(url, timeout=2, retries=retries, backoff_s=0.001, backoff_cap_s=0.002)


def test_http_5xx_and_internal_errors_are_asked_again(scripted: type[ScriptedNode]) -> None:
    node = scripted([("http", 502), ("rpc", {"code": -32603, "message": "internal error"}), ("http", 503), ("ok", "0x7a69")])
    provider = _provider(node.url)
    assert provider.make_request("eth_chainId", [])["result"] == "0x7a69"
    assert node.asked == ["eth_chainId"] * 4 and provider.retried == 3


def test_retries_are_bounded_and_the_last_error_comes_out(scripted: type[ScriptedNode]) -> None:
    node = scripted([("rpc", {"code": -32603, "message": "internal error"})])
    response = _provider(node.url, retries=3).make_request("eth_blockNumber", [])
    assert response["error"]["code"] == -32603 and len(node.asked) == 4  # the first try and 3 more, then the answer
    node = scripted([("http", 502)])
    with pytest.raises(OSError):
        _provider(node.url, retries=2).make_request("eth_blockNumber", [])
    assert len(node.asked) == 3


def test_answers_are_not_retried(scripted: type[ScriptedNode]) -> None:
    revert = {"code": 3, "message": "execution reverted", "data": "0x12345678"}
    node = scripted([("rpc", revert), ("ok", "0x1")])
    assert _provider(node.url).make_request("eth_call", [{}, "latest"])["error"] == revert
    assert len(node.asked) == 1
    node = scripted([("rpc", {"code": -32000, "message": "nonce too low"}), ("ok", "0x1")])
    assert _provider(node.url).make_request("eth_sendRawTransaction", ["0x00"])["error"]["message"] == "nonce too low"
    assert len(node.asked) == 1


def test_a_node_signed_transaction_is_never_sent_twice(scripted: type[ScriptedNode]) -> None:
    node = scripted([("rpc", {"code": -32603, "message": "internal error"}), ("ok", "0xabc")])
    assert "error" in _provider(node.url).make_request("eth_sendTransaction", [{}])
    assert node.asked == ["eth_sendTransaction"]  # the node may have sent it: asking again could send a second one
    node = scripted([("rpc", {"code": -32603, "message": "internal error"}), ("ok", "0xabc")])
    assert _provider(node.url).make_request("eth_sendRawTransaction", ["0x00"])["result"] == "0xabc"  # same bytes: safe
    assert len(node.asked) == 2


def test_connect_survives_a_bad_first_answer_and_names_a_dead_node(scripted: type[ScriptedNode]) -> None:
    node = scripted([("http", 502), ("ok", "0x7a69")])
    conn = connect(node.url, timeout=2)
    assert conn.chain_id == 31337
    node = scripted([("rpc", {"code": -32603, "message": "internal error"})])
    with pytest.raises(NodeUnreachableError, match="no JSON-RPC node answers"):
        connect(node.url, timeout=2, retries=1)


@pytest.mark.parametrize(("error", "transient"), [
    ({"code": -32603, "message": "internal error"}, True),
    ({"code": -32005, "message": "limit exceeded"}, True),
    ({"code": -32000, "message": "header not found"}, True),
    ({"code": -32000, "message": "request timed out"}, True),
    ({"code": -32000, "message": "nonce too low"}, False),
    ({"code": -32000, "message": "insufficient funds for gas"}, False),
    ({"code": 3, "message": "execution reverted"}, False),
    ({"code": -32602, "message": "invalid params"}, False),
    (None, False),
])
def test_transient_rpc_errors(error: object, transient: bool) -> None:
    assert transient_rpc_error(error) is transient


def test_default_confirmations() -> None:
    assert all(default_confirmations(c) == 0 for c in DEV_CHAIN_IDS)
    assert default_confirmations(1) == 12 and default_confirmations(11155111) == 6 and default_confirmations(8453) == 12


def test_web3_raises_the_answer_it_was_given(scripted: type[ScriptedNode]) -> None:
    node = scripted([("http", 502), ("ok", "0x7a69")])
    conn = connect(node.url, timeout=2)
    node.script = [("rpc", {"code": -32602, "message": "invalid params"})]
    with pytest.raises(Web3RPCError, match="invalid params"):
        conn.w3.eth.block_number


def test_the_chain_id_is_asked_once_per_ttl_and_afresh_when_forgotten(scripted: type[ScriptedNode]) -> None:
    node = scripted([("ok", "0x7a69"), ("ok", "0x1")])
    provider = _provider(node.url)
    provider.chain_id_ttl_s = 60.0
    assert [provider.make_request("eth_chainId", [])["result"] for _ in range(5)] == ["0x7a69"] * 5
    assert node.asked == ["eth_chainId"]
    provider.forget_chain_id()  # what the daemons' identity check does: the node behind the URL may have changed
    assert provider.make_request("eth_chainId", [])["result"] == "0x1"
    provider.chain_id_ttl_s = 0.0  # expired at once: asked every time
    provider.make_request("eth_chainId", [])
    assert node.asked == ["eth_chainId"] * 3


def test_an_error_answer_for_the_chain_id_is_not_kept(scripted: type[ScriptedNode]) -> None:
    node = scripted([("rpc", {"code": -32601, "message": "method not found"}), ("ok", "0x7a69")])
    provider = _provider(node.url)
    assert "error" in provider.make_request("eth_chainId", [])
    assert provider.make_request("eth_chainId", [])["result"] == "0x7a69"
    assert node.asked == ["eth_chainId"] * 2
