"""Open a Web3 connection: the in-process eth-tester chain (the default) or any JSON-RPC URL."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint, RPCResponse

from llmos_chain.errors import LlmosError, NodeUnreachableError

#: What a node that is down, restarting or answering errors raises: connection errors are OSErrors
#: (requests' included), JSON-RPC error answers are Web3Exceptions, our own wrappers LlmosErrors.
#: The daemons end a step on these and retry it; their progress is in SQLite.
NODE_TROUBLE: tuple[type[BaseException], ...] = (LlmosError, OSError, Web3Exception)

log = logging.getLogger("llmos.rpc")

#: JSON-RPC error codes a node answers for its own trouble, not for the request: internal error, limit exceeded,
#: resource unavailable, and the HTTP-like codes some providers put in the error object.
TRANSIENT_RPC_CODES = frozenset({-32603, -32005, -32002, 429, 502, 503, 504})
#: Messages of code -32000 answers that mean the same (a backend that lacks a block, is busy, or timed out).
TRANSIENT_RPC_MESSAGES = ("header not found", "unknown block", "timeout", "timed out", "rate limit", "too many requests",
                          "try again", "busy", "temporarily unavailable", "service unavailable", "bad gateway")
#: Methods never repeated by the transport: the node may have acted on a request whose answer was lost, and a node that
#: signs for us would send a second transaction. Signed transactions (eth_sendRawTransaction) are safe to repeat: the
#: same bytes are the same transaction.
NOT_RETRIED = frozenset({"eth_sendTransaction", "personal_sendTransaction", "eth_sign", "eth_signTransaction"})


def transient_rpc_error(error: Any) -> bool:
    """Whether a JSON-RPC error object is the node's trouble (worth asking again) rather than an answer."""
    if not isinstance(error, dict):
        return False
    code = error.get("code")
    message = str(error.get("message", "")).lower()
    if code in TRANSIENT_RPC_CODES:
        return True
    return code == -32000 and any(m in message for m in TRANSIENT_RPC_MESSAGES)


class RetryingHTTPProvider(Web3.HTTPProvider):  # type: ignore[misc,name-defined]
    """An HTTP provider that asks again, with capped exponential backoff and jitter, when the node (or the load
    balancer in front of it) fails transiently: refused or dropped connections, timeouts, HTTP 429/5xx, and JSON-RPC
    errors that describe the node's state rather than the request (see `transient_rpc_error`).

    Each attempt is bounded by the request timeout and the attempts by `retries`, so one call takes at most about
    `retries * timeout + backoff_cap * retries` seconds; the last error is raised as it came. Reverts, bad params and
    every other answer return at once.

    The node's chain id is asked once per `chain_id_ttl_s` (web3 asks it before every call, estimate and transaction it
    validates: most of a busy daemon's requests otherwise). A node swapped for another chain is still found: the
    daemons' identity check asks afresh (`forget_chain_id`) and compares the genesis block too."""

    def __init__(self, endpoint_uri: str, timeout: float = 30.0, retries: int = 5, backoff_s: float = 0.2,
                 backoff_cap_s: float = 3.0, chain_id_ttl_s: float = 10.0) -> None:
        super().__init__(endpoint_uri, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.retried = 0  # attempts repeated over this provider's life (for /metrics and tests)
        self.chain_id_ttl_s = chain_id_ttl_s
        self._chain_id: tuple[float, RPCResponse] | None = None  # (when asked, the node's answer)

    def forget_chain_id(self) -> None:
        """Ask the node for its chain id at the next request that needs it."""
        self._chain_id = None

    def _pause(self, attempt: int) -> None:
        delay = min(self.backoff_cap_s, self.backoff_s * (2 ** attempt))
        time.sleep(delay * (0.5 + random.random() / 2))

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method == "eth_chainId":
            cached = self._chain_id
            if cached is not None and time.monotonic() - cached[0] < self.chain_id_ttl_s:
                return cached[1]
            response = self._ask(method, params)
            if isinstance(response, dict) and "result" in response and response.get("error") is None:
                self._chain_id = (time.monotonic(), response)
            return response
        return self._ask(method, params)

    def _ask(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        attempt = 0
        while True:
            try:
                response = super().make_request(method, params)
            except (OSError, ValueError) as exc:  # requests' errors are OSErrors; a garbled body is a ValueError
                if method in NOT_RETRIED or attempt >= self.retries:
                    raise
                log.debug("%s: %s: %s; asking again", method, type(exc).__name__, exc)
            else:
                error = response.get("error") if isinstance(response, dict) else None
                if error is None or method in NOT_RETRIED or attempt >= self.retries or not transient_rpc_error(error):
                    return response
                log.debug("%s: node answered %s; asking again", method, error)
            self.retried += 1
            self._pause(attempt)
            attempt += 1

    def make_batch_request(self, batch_requests: list[tuple[RPCEndpoint, Any]]) -> Any:
        attempt = 0
        while True:
            try:
                response = super().make_batch_request(batch_requests)
            except (OSError, ValueError):
                if attempt >= self.retries:
                    raise
            else:
                errors = [r.get("error") for r in response] if isinstance(response, list) else [response.get("error")]
                if attempt >= self.retries or not any(transient_rpc_error(e) for e in errors):
                    return response
            self.retried += 1
            self._pause(attempt)
            attempt += 1


#: The value of `--rpc` that selects the in-process eth-tester chain.
EMBEDDED = "embedded"

#: Dev chains, which reorganise only when told to: anvil/hardhat, geth --dev/ganache, eth-tester.
DEV_CHAIN_IDS = frozenset({31337, 1337, 131277322940537})
#: Blocks to wait before acting on an event or calling a transaction final, where the config says nothing. Ethereum
#: mainnet: 12 (about 2.4 minutes; post-merge reorgs deeper than 2 are rare, finality takes ~64); its public test
#: networks (Sepolia, Holesky, Hoodi): 6; every other chain: 12. Dev chains: 0.
KNOWN_CONFIRMATIONS = {1: 12, 11155111: 6, 17000: 6, 560048: 6}
DEFAULT_CONFIRMATIONS = 12


def default_confirmations(chain_id: int) -> int:
    """The confirmation depth for `chain_id` when none is configured (see KNOWN_CONFIRMATIONS)."""
    if chain_id in DEV_CHAIN_IDS:
        return 0
    return KNOWN_CONFIRMATIONS.get(chain_id, DEFAULT_CONFIRMATIONS)


#: anvil's default dev accounts (mnemonic "test test ... junk"); public knowledge, for devnets only.
ANVIL_DEV_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


@dataclass
class Connection:
    """A Web3 handle plus what kind of chain it talks to."""

    w3: Web3
    embedded: bool
    url: str

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def dev_accounts(self) -> list[LocalAccount]:
        """Funded accounts of a dev chain (eth-tester's or anvil's); empty on any other chain."""
        if self.embedded:
            keys = self.w3.provider.ethereum_tester.backend.account_keys  # type: ignore[attr-defined]
            return [Account.from_key(k.to_bytes()) for k in keys]
        if self.chain_id == 31337:
            return [Account.from_key(k) for k in ANVIL_DEV_KEYS]
        return []


def connect(rpc: str = EMBEDDED, timeout: float = 30.0, retries: int = 5) -> Connection:
    """Connect to `rpc` (a URL, or ``embedded`` for a fresh in-process eth-tester chain).

    Over HTTP every call is retried on transient node errors (`RetryingHTTPProvider`), the first one included, so a
    daemon does not die of one bad answer at start."""
    if rpc == EMBEDDED:
        from web3 import EthereumTesterProvider

        w3 = Web3(EthereumTesterProvider())
        return Connection(w3=w3, embedded=True, url=EMBEDDED)
    if rpc.startswith(("http://", "https://")):
        w3 = Web3(RetryingHTTPProvider(rpc, timeout=timeout, retries=retries))
    elif rpc.startswith(("ws://", "wss://")):
        raise NodeUnreachableError(f"websocket RPC is not supported yet: use the node's HTTP URL instead of {rpc}")
    else:
        raise NodeUnreachableError(f"not an RPC URL: {rpc!r} (expected http(s)://… or '{EMBEDDED}')")
    try:
        w3.eth.chain_id
    except Exception as exc:  # requests/aiohttp raise many types; all mean the same to a user
        raise NodeUnreachableError(f"no JSON-RPC node answers at {rpc}: {exc.__class__.__name__}: {exc}") from exc
    return Connection(w3=w3, embedded=False, url=rpc)
