"""Follow the suite's events with `eth_getLogs` over block ranges, into the store.

- Ranges of at most `max_range` blocks; a range the node refuses is split in two until it passes.
- Only blocks `confirmations` deep are read.
- The cursor (block number and hash) is saved with the events of each range in one transaction, so
  a restart resumes exactly where the last committed range ended; recording an event is idempotent on
  (transaction hash, log index).
- Before each poll the cursor's hash is compared with the chain's; on a mismatch the follower walks
  back over the recent block hashes it kept to the last block still on the chain, forgets every event
  after it, rebuilds the projections, and replays from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3._utils.events import get_event_data
from web3.exceptions import BlockNotFound

from llmos_chain.chain.deploy import Suite
from llmos_chain.errors import ChainError
from llmos_chain.store import Cursor, StoredEvent, Store

log = logging.getLogger("llmos.follower")

Handler = Callable[[StoredEvent], None]


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value)


@dataclass
class PollResult:
    new_events: int
    head: int
    reorged_from: int | None = None


class Follower:
    def __init__(self, suite: Suite, store: Store, confirmations: int = 0, max_range: int = 2_000, on_event: Handler | None = None) -> None:
        self.suite = suite
        self.w3 = suite.w3
        self.store = store
        self.confirmations = confirmations
        self.max_range = max_range
        self.on_event = on_event
        self.addresses = [c.address for c in (suite.market, suite.workers, suite.datasets)]
        self._abis: dict[bytes, tuple[str, dict[str, Any]]] = {}
        for contract_name, contract in (("JobMarket", suite.market), ("WorkerRegistry", suite.workers), ("DatasetRegistry", suite.datasets)):
            for item in contract.abi:
                if item["type"] == "event":
                    self._abis[bytes(event_abi_to_log_topic(item))] = (contract_name, item)

    # ---------------------------------------------------------------- public
    def poll(self) -> PollResult:
        """Read everything newly confirmed; returns how many new events were recorded."""
        reorged = self._check_reorg()
        head = int(self.w3.eth.block_number) - self.confirmations
        cursor = self.store.cursor(self.suite.deployment.start_block - 1)
        total = 0
        lo = cursor.block + 1
        while lo <= head:
            hi = min(head, lo + self.max_range - 1)
            logs = self._get_logs(lo, hi)
            block_hash = _hex(self.w3.eth.get_block(hi)["hash"])
            new: list[StoredEvent] = []
            with self.store.transaction():
                for raw in logs:
                    event = self._decode(raw)
                    if event is not None and self.store.add_event(event):
                        self.store.project(event)
                        new.append(event)
                    self.store.remember_block(int(raw["blockNumber"]), _hex(raw["blockHash"]))
                self.store.remember_block(hi, block_hash)
                self.store.set_cursor(Cursor(hi, block_hash))
            for event in new:  # after commit: handlers see durable state and may be re-run after a crash
                if self.on_event is not None:
                    self.on_event(event)
            total += len(new)
            lo = hi + 1
        return PollResult(total, head, reorged)

    def behind(self) -> int:
        """Confirmed blocks not yet read."""
        head = int(self.w3.eth.block_number) - self.confirmations
        return max(0, head - self.store.cursor(self.suite.deployment.start_block - 1).block)

    # ---------------------------------------------------------------- internals
    def _get_logs(self, lo: int, hi: int) -> list[Any]:
        try:
            return list(self.w3.eth.get_logs({"fromBlock": lo, "toBlock": hi, "address": self.addresses}))
        except Exception as exc:  # nodes refuse wide ranges with many different errors
            if lo == hi:
                raise ChainError(f"the node refused eth_getLogs for block {lo}: {exc}") from exc
            mid = (lo + hi) // 2
            log.info("splitting refused log range %d-%d: %s", lo, hi, exc)
            return self._get_logs(lo, mid) + self._get_logs(mid + 1, hi)

    def _decode(self, raw: Any) -> StoredEvent | None:
        topics = raw["topics"]
        if not topics:
            return None
        found = self._abis.get(bytes(topics[0]))
        if found is None:
            return None
        contract, abi = found
        data = get_event_data(self.w3.codec, abi, raw)
        args = _plain(data["args"])
        job_id = args.get("jobId")
        return StoredEvent(_hex(raw["transactionHash"]), int(raw["logIndex"]), int(raw["blockNumber"]), _hex(raw["blockHash"]),
                           contract, str(data["event"]), int(job_id) if job_id is not None else None, args)

    def _check_reorg(self) -> int | None:
        cursor = self.store.cursor(self.suite.deployment.start_block - 1)
        if cursor.hash is None or self._chain_hash(cursor.block) == cursor.hash:
            return None
        ancestor = self.suite.deployment.start_block - 1
        for number, block_hash in self.store.known_blocks():
            if number <= cursor.block and self._chain_hash(number) == block_hash:
                ancestor = number
                break
        with self.store.transaction():
            removed = self.store.rollback_after(ancestor)
            self.store.set_cursor(Cursor(ancestor, self._chain_hash(ancestor) if ancestor >= 0 else None))
        log.warning("reorg: block %d changed; rolled back to %d (%d events forgotten), replaying", cursor.block, ancestor, removed)
        return ancestor

    def _chain_hash(self, number: int) -> str | None:
        if number < 0:
            return None
        try:
            block = self.w3.eth.get_block(number)
        except BlockNotFound:  # the block is gone (the chain is shorter now); a node error propagates
            return None
        return _hex(block["hash"])


def _plain(value: Any) -> Any:
    """Event arguments as JSON-ready values: bytes as 0x-hex, structs as dicts, arrays as lists."""
    if isinstance(value, (bytes, bytearray)):
        return _hex(value)
    if hasattr(value, "keys"):
        return {str(k): _plain(value[k]) for k in value.keys()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
