"""Follow the suite's events with `eth_getLogs` over block ranges, into the store.

- Ranges of at most `max_range` blocks; a range the node refuses is split in two until it passes.
- Only blocks `confirmations` deep are read.
- A range's logs and its end block are asked in ONE JSON-RPC batch, so both answers come from the same backend
  behind a load balancer: a backend that lacks the end block (it lags) answers null for it, and the range is asked
  again later instead of being recorded as empty. The cursor never passes what the answering node provably has.
- The cursor (block number and hash) is saved with the events of each range in one transaction, so
  a restart resumes exactly where the last committed range ended; recording an event is idempotent on
  (transaction hash, log index).
- Before each poll the cursor's hash is compared with the chain's; on a mismatch the follower walks
  back over the recent block hashes it kept to the last block still on the chain, forgets every event
  after it, rebuilds the projections, and replays from there. A node whose head is below the cursor is taken as
  lagging for `lag_patience` polls before its shorter chain is believed.
- The node's identity (chain id, genesis hash, the hash of the deployment's first block, the deployment's code) is
  checked at the first poll, after any mismatch of the cursor's block and before a rollback deeper than
  `max_reorg_depth`: a different chain (e.g. a node restarted empty) raises `NodeIdentityError`, forgets nothing and
  is checked again at every poll until the right chain is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3._utils.events import get_event_data
from web3.exceptions import BlockNotFound, Web3TypeError

from llmos_chain.chain.deploy import Suite
from llmos_chain.errors import ChainError, DeploymentError, NodeIdentityError, NodeLaggingError
from llmos_chain.store import Cursor, StoredEvent, Store

log = logging.getLogger("llmos.follower")

Handler = Callable[[StoredEvent], None]
ReorgHandler = Callable[[int], None]


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value)


@dataclass
class PollResult:
    new_events: int
    head: int
    reorged_from: int | None = None


@dataclass
class FollowerStatus:
    """What `/health` reports about the chain: all of it observed, none of it assumed."""

    node_head: int | None = None  # the node's head at the last poll
    cursor: int | None = None  # the last block read (node_head - confirmations at most)
    last_poll_at: float | None = None  # wall time of the last poll that completed
    last_error: str | None = None
    identity: str = "unchecked"  # "ok", or why the node is not the chain followed so far
    lagging_answers: int = 0  # ranges asked again because the answering backend lacked their end block
    behind_polls: int = 0  # consecutive polls that found the node's head below the cursor
    last_reorg: dict[str, Any] | None = None  # {"at", "from", "to", "depth"}
    reorgs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Follower:
    def __init__(self, suite: Suite, store: Store, confirmations: int = 0, max_range: int = 2_000, on_event: Handler | None = None,
                 on_reorg: ReorgHandler | None = None, max_reorg_depth: int = 64, lag_patience: int = 3) -> None:
        self.suite = suite
        self.w3 = suite.w3
        self.store = store
        self.confirmations = confirmations
        self.max_range = max_range
        self.on_event = on_event
        self.on_reorg = on_reorg
        self.max_reorg_depth = max_reorg_depth
        self.lag_patience = lag_patience
        self.status = FollowerStatus()
        self._batch = True  # whether the provider takes JSON-RPC batches (eth-tester's in-process provider does not)
        self.addresses = [c.address for c in (suite.market, suite.workers, suite.datasets)]
        self._abis: dict[bytes, tuple[str, dict[str, Any]]] = {}
        for contract_name, contract in (("JobMarket", suite.market), ("WorkerRegistry", suite.workers), ("DatasetRegistry", suite.datasets)):
            for item in contract.abi:
                if item["type"] == "event":
                    self._abis[bytes(event_abi_to_log_topic(item))] = (contract_name, item)

    @property
    def identity_ok(self) -> bool:
        return self.status.identity == "ok"

    # ---------------------------------------------------------------- public
    def poll(self) -> PollResult:
        """Read everything newly confirmed; returns how many new events were recorded."""
        try:
            result = self._poll()
        except Exception as exc:
            self.status.last_error = f"{type(exc).__name__}: {exc}"[:300]
            raise
        self.status.last_error = None
        self.status.last_poll_at = time.time()
        return result

    def _poll(self) -> PollResult:
        if not self.identity_ok:
            self.check_identity()
        tip = int(self.w3.eth.block_number)
        self.status.node_head = tip
        start = self.suite.deployment.start_block - 1
        cursor = self.store.cursor(start)
        self.status.cursor = cursor.block
        current = self._chain_hash(cursor.block) if cursor.hash is not None else None
        if cursor.hash is not None and current is None:  # the node lacks a block we read: lagging, a shorter chain,
            self.check_identity()  # or another chain altogether
            self.status.behind_polls += 1
            if self.status.behind_polls < self.lag_patience:
                raise NodeLaggingError(f"the node (head {tip}) lacks block {cursor.block}, already read (poll "
                                       f"{self.status.behind_polls} of {self.lag_patience} before taking it as a shorter chain)")
        reorged = self._check_reorg(tip, cursor, current)
        head = tip - self.confirmations
        cursor = self.store.cursor(start)
        total = 0
        lo = cursor.block + 1
        while lo <= head:
            hi = min(head, lo + self.max_range - 1)
            got = self._range(lo, hi)
            if got is None:  # the backend that answered lacks block `hi`: never record the range as empty
                self.status.lagging_answers += 1
                log.info("the node answered logs %d-%d without having block %d (a lagging backend): asking again later", lo, hi, hi)
                break
            logs, block_hash = got
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
            self.status.cursor = hi
            for event in new:  # after commit: handlers see durable state and may be re-run after a crash
                if self.on_event is not None:
                    self.on_event(event)
            total += len(new)
            lo = hi + 1
        self.status.behind_polls = 0
        return PollResult(total, head, reorged)

    def behind(self) -> int:
        """Confirmed blocks not yet read (asks the node)."""
        head = int(self.w3.eth.block_number) - self.confirmations
        return max(0, head - self.store.cursor(self.suite.deployment.start_block - 1).block)

    def lag(self) -> int | None:
        """Confirmed blocks not yet read as of the last poll (asks nothing: for `/health`)."""
        if self.status.node_head is None:
            return None
        return max(0, self.status.node_head - self.confirmations - self.store.cursor(self.suite.deployment.start_block - 1).block)

    def check_identity(self) -> None:
        """Fail with NodeIdentityError unless the node is the chain followed so far (recorded at the first check)."""
        deployment = self.suite.deployment
        forget = getattr(self.w3.provider, "forget_chain_id", None)
        if forget is not None:  # the provider's cached answer may predate the node behind the URL
            forget()
        chain_id = int(self.w3.eth.chain_id)
        genesis = _hex(self.w3.eth.get_block(0)["hash"])
        try:
            first = _hex(self.w3.eth.get_block(deployment.start_block)["hash"])
        except BlockNotFound:
            first = None
        problem = None
        known = self.store.meta("node_identity")
        if chain_id != deployment.chain_id:
            problem = f"chain id {chain_id}, but the deployment is on chain {deployment.chain_id}"
        elif known is not None and genesis != known["genesis"]:
            problem = f"genesis block {genesis[:18]}…, but the chain followed so far starts with {known['genesis'][:18]}…"
        elif first is None:
            int_tip = int(self.w3.eth.block_number)
            problem = f"the node has {int_tip + 1} blocks, fewer than the deployment's first block {deployment.start_block}"
        elif known is not None and first != known["start_block_hash"]:
            problem = f"block {deployment.start_block} (the deployment's) is {first[:18]}…, not {known['start_block_hash'][:18]}…"
        else:
            try:
                self.suite.verify()
            except DeploymentError as exc:
                problem = str(exc)
        if problem is not None:
            if self.status.identity != f"mismatch: {problem}":
                log.error("REFUSING TO ACT: the node at %s is not the chain this daemon follows: %s. Nothing will be sent "
                          "and nothing recorded is forgotten until it is.", getattr(self.w3.provider, "endpoint_uri", "?"), problem)
            self.status.identity = f"mismatch: {problem}"
            raise NodeIdentityError(f"the node is not the chain this daemon follows: {problem}")
        if self.store.meta("node_identity") is None:
            self.store.set_meta("node_identity", {"chain_id": chain_id, "genesis": genesis, "start_block_hash": first})
        if self.status.identity.startswith("mismatch"):
            log.warning("the node is the followed chain again (chain %d, genesis %s…): resuming", chain_id, genesis[:18])
        self.status.identity = "ok"

    # ---------------------------------------------------------------- internals
    def _range(self, lo: int, hi: int) -> tuple[list[Any], str] | None:
        """The logs of blocks lo..hi and the hash of block hi, both from the same node; None if it lacks block hi."""
        query = {"fromBlock": lo, "toBlock": hi, "address": self.addresses}
        try:
            if self._batch:
                try:
                    with self.w3.batch_requests() as batch:
                        batch.add(self.w3.eth.get_logs(query))
                        batch.add(self.w3.eth.get_block(hi))
                        logs, block = batch.execute()
                except Web3TypeError:
                    self._batch = False
                    log.debug("the provider takes no batches: reading logs and blocks in separate calls")
            if not self._batch:  # an in-process chain: one node, nothing can lag
                block = self.w3.eth.get_block(hi)
                logs = self.w3.eth.get_logs(query)
        except BlockNotFound:
            return None
        except Exception as exc:  # nodes refuse wide ranges with many different errors
            if lo == hi:
                raise ChainError(f"the node refused eth_getLogs for block {lo}: {exc}") from exc
            mid = (lo + hi) // 2
            log.info("splitting refused log range %d-%d: %s", lo, hi, exc)
            first = self._range(lo, mid)
            second = self._range(mid + 1, hi) if first is not None else None
            return None if first is None or second is None else (first[0] + second[0], second[1])
        block_hash = _hex(block["hash"])
        for raw in logs:
            if int(raw["blockNumber"]) > hi or (int(raw["blockNumber"]) == hi and _hex(raw["blockHash"]) != block_hash):
                return None  # the answer straddles a reorg: ask again
        return list(logs), block_hash

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

    def _check_reorg(self, tip: int, cursor: Cursor, current: str | None) -> int | None:
        if cursor.hash is None or current == cursor.hash:
            return None
        # The block we read last is gone or changed. A different node (restarted empty, another network) looks the same
        # from here: make sure it is the same chain before forgetting anything.
        self.check_identity()
        ancestor = self.suite.deployment.start_block - 1
        for number, block_hash in self.store.known_blocks():
            if number <= cursor.block and self._chain_hash(number) == block_hash:
                ancestor = number
                break
        depth = cursor.block - ancestor
        if depth == 0:  # the block is there after all, unchanged (a backend that lacked it answered before): no reorg
            return None
        if depth > self.max_reorg_depth:
            log.error("a reorg %d blocks deep (more than max_reorg_depth %d): block %d changed; rolling back to %d",
                      depth, self.max_reorg_depth, cursor.block, ancestor)
        with self.store.transaction():
            removed = self.store.rollback_after(ancestor)
            self.store.set_cursor(Cursor(ancestor, self._chain_hash(ancestor) if ancestor >= 0 else None))
        self.status.reorgs += 1
        self.status.last_reorg = {"at": time.time(), "from": cursor.block, "to": ancestor, "depth": depth, "node_head": tip}
        log.warning("reorg: block %d changed; rolled back to %d (%d events forgotten), replaying", cursor.block, ancestor, removed)
        if self.on_reorg is not None:
            self.on_reorg(ancestor)
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
