"""The fault-injecting JSON-RPC proxy, against a real anvil: each fault does what it says, and only that."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from llmos_chain.chain.connect import ANVIL_DEV_KEYS
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil, free_port
from llmos_chain.chain.faultproxy import FaultProxy

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci` (make setup)"),
]

#: init code that emits one LOG0 and deploys nothing: each creation is one transaction with one log
LOGGER_INIT = "0x60006000a000"


def post(url: str, payload: Any, timeout: float = 10.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def rpc(url: str, method: str, *params: Any) -> Any:
    status, answer = post(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    assert status == 200 and "result" in answer, (status, answer)
    return answer["result"]


def emit_logs(url: str, count: int) -> list[str]:
    """`count` transactions, each mined in its own block with one log; their hashes."""
    sender = rpc(url, "eth_accounts")[0]
    hashes = []
    for _ in range(count):
        hashes.append(rpc(url, "eth_sendTransaction", {"from": sender, "data": LOGGER_INIT, "gas": hex(100_000)}))
        deadline = time.monotonic() + 10
        while rpc(url, "eth_getTransactionReceipt", hashes[-1]) is None:  # automine answers before the block is in
            assert time.monotonic() < deadline
            time.sleep(0.01)
    return hashes


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with Anvil() as anvil:
        yield anvil


@pytest.fixture
def proxy(node: Anvil) -> Iterator[FaultProxy]:
    with FaultProxy(node.url, seed=7) as p:
        yield p


def test_without_faults_it_forwards_and_counts(node: Anvil, proxy: FaultProxy) -> None:
    assert proxy.url.startswith("http://127.0.0.1:")
    assert rpc(proxy.url, "eth_chainId") == rpc(node.url, "eth_chainId")
    status, answer = post(proxy.url, [{"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber", "params": []} for i in range(3)])
    assert status == 200 and [a["id"] for a in answer] == [0, 1, 2]
    stats = proxy.stats()
    assert stats["requests"] == 2 and stats["methods"] == {"eth_chainId": 1, "eth_blockNumber": 3} and stats["faults"] == {}


def test_error_rate_one_fails_every_call_and_the_node_sees_none(node: Anvil, proxy: FaultProxy) -> None:
    signer = Account.from_key(ANVIL_DEV_KEYS[9])
    nonce = int(rpc(node.url, "eth_getTransactionCount", signer.address, "latest"), 16)
    tx = signer.sign_transaction({"to": signer.address, "value": 1, "gas": 21_000, "gasPrice": 10**10, "nonce": nonce,
                                  "chainId": 31337})
    raw = "0x" + tx.raw_transaction.hex().removeprefix("0x")
    proxy.set(error_rate=1.0)
    answers = [post(proxy.url, {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]}) for i in range(20)]
    http = [a for a in answers if a[0] == 502]
    rpc_errors = [a for a in answers if a[0] == 200]
    assert len(http) + len(rpc_errors) == 20 and http and rpc_errors  # both kinds, about half each
    assert all(a[1]["error"] == {"code": -32603, "message": "internal error"} and a[1]["id"] is not None for a in rpc_errors)
    assert int(rpc(node.url, "eth_getTransactionCount", signer.address, "latest"), 16) == nonce  # never forwarded
    stats = proxy.stats()
    assert stats["raw_txs"] == [] and stats["faults"]["http_502"] + stats["faults"]["rpc_error"] == 20
    assert stats["methods"] == {"eth_sendRawTransaction": 20}

    proxy.set(error_kinds=("rpc",))
    status, batch = post(proxy.url, [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []} for i in range(4)])
    assert status == 200 and [a["id"] for a in batch] == [0, 1, 2, 3] and all("error" in a for a in batch)  # the batch as a unit

    proxy.set(error_rate=0.0)
    assert rpc(proxy.url, "eth_sendRawTransaction", raw) == proxy.stats()["raw_txs"][0] == "0x" + tx.hash.hex().removeprefix("0x")


def test_error_rate_is_a_fraction_and_reproducible(node: Anvil) -> None:
    def failures(seed: int) -> list[bool]:
        with FaultProxy(node.url, seed=seed, error_rate=0.25) as p:
            return [_failed(p.url) for _ in range(80)]

    first, again = failures(3), failures(3)
    assert first == again and 8 <= sum(first) <= 35


def _failed(url: str) -> bool:
    status, answer = post(url, {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    return status != 200 or "error" in answer


def test_hang_delays_the_answer(proxy: FaultProxy) -> None:
    proxy.set(hang_rate=1.0, hang_s=0.4)
    started = time.monotonic()
    assert rpc(proxy.url, "eth_chainId") == "0x7a69"
    assert time.monotonic() - started >= 0.4
    assert proxy.stats()["faults"] == {"hang": 1}


def test_a_lagging_backend_answers_as_of_an_older_head(node: Anvil, proxy: FaultProxy) -> None:
    hashes = emit_logs(node.url, 4)
    head = int(rpc(node.url, "eth_blockNumber"), 16)
    receipts = [rpc(node.url, "eth_getTransactionReceipt", h) for h in hashes]
    assert [int(r["blockNumber"], 16) for r in receipts] == list(range(head - 3, head + 1))
    all_logs = rpc(node.url, "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest"})

    proxy.set(lag_blocks=3, lag_rate=1.0)
    assert int(rpc(proxy.url, "eth_blockNumber"), 16) == head - 3
    assert int(rpc(proxy.url, "eth_getBlockByNumber", "latest", False)["number"], 16) == head - 3
    assert rpc(proxy.url, "eth_getBlockByNumber", hex(head), False) is None
    assert rpc(proxy.url, "eth_getBlockByNumber", hex(head - 3), False)["hash"] == receipts[0]["blockHash"]
    assert rpc(proxy.url, "eth_getBlockByHash", receipts[-1]["blockHash"], False) is None
    lagged_logs = rpc(proxy.url, "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head)})
    assert lagged_logs == [log for log in all_logs if int(log["blockNumber"], 16) <= head - 3]  # silently shorter
    assert len(all_logs) - len(lagged_logs) == 3
    assert rpc(proxy.url, "eth_getTransactionReceipt", hashes[0])["transactionHash"] == hashes[0]
    assert rpc(proxy.url, "eth_getTransactionReceipt", hashes[-1]) is None
    assert rpc(proxy.url, "eth_getTransactionByHash", hashes[-1])["blockNumber"] is None
    assert proxy.stats()["faults"]["lag"] == 9

    proxy.set(lag_rate=0.0)
    assert int(rpc(proxy.url, "eth_blockNumber"), 16) == head
    assert rpc(proxy.url, "eth_getTransactionReceipt", hashes[-1])["transactionHash"] == hashes[-1]


def test_a_batch_is_one_backend(node: Anvil, proxy: FaultProxy) -> None:
    emit_logs(node.url, 2)
    head = int(rpc(node.url, "eth_blockNumber"), 16)
    proxy.set(lag_blocks=2, lag_rate=0.5)
    seen = set()
    for _ in range(30):
        batch = [{"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
                 {"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockByNumber", "params": ["latest", False]},
                 {"jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber", "params": []}]
        status, answer = post(proxy.url, batch)
        assert status == 200
        by_id = {a["id"]: a["result"] for a in answer}
        numbers = {int(by_id[1], 16), int(by_id[2]["number"], 16), int(by_id[3], 16)}
        assert len(numbers) == 1  # never a mix of lagging and fresh answers within one batch
        seen |= numbers
    assert seen == {head, head - 2}
    assert 0 < proxy.stats()["faults"]["lag"] < 30


def test_pause_and_set_upstream_simulate_a_node_restart(node: Anvil, proxy: FaultProxy) -> None:
    emit_logs(node.url, 1)
    head = int(rpc(node.url, "eth_blockNumber"), 16)
    assert head > 0
    proxy.set(paused=True)
    assert post(proxy.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})[0] == 503
    proxy.set_upstream(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    proxy.set(paused=False)
    assert post(proxy.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})[0] == 502
    with Anvil() as fresh:  # the node "restarted empty" behind the same URL
        proxy.set_upstream(fresh.url)
        assert int(rpc(proxy.url, "eth_blockNumber"), 16) == 0
    proxy.set_upstream(node.url)
    assert int(rpc(proxy.url, "eth_blockNumber"), 16) == head
    faults = proxy.stats()["faults"]
    assert faults == {"paused": 1, "upstream_down": 1}
    proxy.reset_counters()
    assert proxy.stats() == {"requests": 0, "methods": {}, "faults": {}, "raw_txs": []}


def test_bad_settings_are_refused(node: Anvil) -> None:
    with pytest.raises(ValueError):
        FaultProxy(node.url, error_rate=1.5)
    with FaultProxy(node.url) as p, pytest.raises(ValueError):
        p.set(error_kinds=("timeout",))
