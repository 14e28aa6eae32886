"""Open a Web3 connection: the in-process eth-tester chain (the default) or any JSON-RPC URL."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from llmos_chain.errors import LlmosError, NodeUnreachableError

#: What a node that is down, restarting or answering errors raises: connection errors are OSErrors
#: (requests' included), JSON-RPC error answers are Web3Exceptions, our own wrappers LlmosErrors.
#: The daemons end a step on these and retry it; their progress is in SQLite.
NODE_TROUBLE: tuple[type[BaseException], ...] = (LlmosError, OSError, Web3Exception)

#: The value of `--rpc` that selects the in-process eth-tester chain.
EMBEDDED = "embedded"

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


def connect(rpc: str = EMBEDDED, timeout: float = 30.0) -> Connection:
    """Connect to `rpc` (a URL, or ``embedded`` for a fresh in-process eth-tester chain)."""
    if rpc == EMBEDDED:
        from web3 import EthereumTesterProvider

        w3 = Web3(EthereumTesterProvider())
        return Connection(w3=w3, embedded=True, url=EMBEDDED)
    if rpc.startswith(("http://", "https://")):
        w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": timeout}))
    elif rpc.startswith(("ws://", "wss://")):
        raise NodeUnreachableError(f"websocket RPC is not supported yet: use the node's HTTP URL instead of {rpc}")
    else:
        raise NodeUnreachableError(f"not an RPC URL: {rpc!r} (expected http(s)://… or '{EMBEDDED}')")
    try:
        w3.eth.chain_id
    except Exception as exc:  # requests/aiohttp raise many types; all mean the same to a user
        raise NodeUnreachableError(f"no JSON-RPC node answers at {rpc}: {exc.__class__.__name__}: {exc}") from exc
    return Connection(w3=w3, embedded=False, url=rpc)
