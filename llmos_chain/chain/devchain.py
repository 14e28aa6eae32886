"""Dev-chain controls: move time and mine on eth-tester or anvil, and run anvil as a child process.

Nothing here is used against a production chain; it exists for tests, the demo and `llmos devnet`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from web3 import Web3

from llmos_chain.chain.compiler import PROJECT_ROOT
from llmos_chain.errors import ChainError, NodeUnreachableError

ANVIL_IN_NODE_MODULES = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def is_embedded(w3: Web3) -> bool:
    return hasattr(w3.provider, "ethereum_tester")


def advance_time(w3: Web3, seconds: int) -> int:
    """Move the chain's clock forward by `seconds` and mine a block; returns the new block's timestamp."""
    if is_embedded(w3):
        tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
        # The pending block may already be ahead of the latest one (eth-tester keeps it across snapshots).
        pending = int(tester.get_block_by_number("pending")["timestamp"])
        latest = int(w3.eth.get_block("latest")["timestamp"])
        tester.time_travel(max(pending, latest) + seconds)
        tester.mine_blocks(1)
    else:
        w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    return int(w3.eth.get_block("latest")["timestamp"])


def anvil_binary() -> Path:
    """The anvil executable: the pinned npm package's, else one on PATH."""
    if ANVIL_IN_NODE_MODULES.exists():
        return ANVIL_IN_NODE_MODULES
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise ChainError("anvil not found: run `make setup` (npm ci) to install the pinned @foundry-rs/anvil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """A local anvil node on 127.0.0.1, started and stopped by this object (use as a context manager)."""

    def __init__(
        self,
        port: int | None = None,
        state_file: Path | None = None,
        block_time: float | None = None,
        log_file: Path | None = None,
        genesis_timestamp: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.genesis_timestamp = genesis_timestamp  # None: anvil's clock at start
        self.state_file = state_file
        self.block_time = block_time
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Anvil:
        cmd = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if self.state_file is not None:
            cmd += ["--state", str(self.state_file)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        if self.genesis_timestamp is not None:
            cmd += ["--timestamp", str(self.genesis_timestamp)]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 2}))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NodeUnreachableError(f"anvil exited with code {self.process.returncode} on port {self.port}")
            try:
                w3.eth.chain_id
                return self
            except Exception:
                time.sleep(0.05)
        self.stop()
        raise NodeUnreachableError(f"anvil did not answer on {self.url} within {timeout:.0f}s")

    def stop(self) -> None:
        """Stop the node; with a state file, anvil writes its state on SIGTERM before exiting."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
