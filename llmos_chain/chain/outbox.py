"""The transaction outbox: every write is an intent first, then a signed transaction, then a receipt.

Each step is committed to SQLite before the next side effect, so a process killed at any point
resumes without sending a second transaction for the same intent:

- `intent`: recorded, nothing signed. It is signed with the next nonce once its gas estimate passes; an estimate that
  reverts is checked against the chain (`already_done`: the effect may be there already, after a crash or by another
  sender) before the intent counts as failed.
- `signed`: the raw transaction and its hash are stored before it is broadcast. On resume the
  same bytes are broadcast again (same hash: the node treats it as the same transaction).
- `sent`: waiting for the receipt; a transaction still pending after `stuck_after_s` is replaced
  at the same nonce with a higher fee: the node's current gas price, or the old fee times `fee_bump`, whichever is
  higher (the replaced hashes are kept, any of them may be mined). A mined transaction stays `sent` until its block is
  `confirmations` deep, the depth the follower trusts: a reorg that drops it before then only makes the outbox
  broadcast the same bytes again; one that drops it later is seen by the follower, which sends the intent back here
  (`Store.rollback_after`).
- `confirmed` / `failed` (reverted at that depth, with the decoded custom error) / `done_elsewhere` (the effect was
  already on chain, e.g. after a crash between broadcast and bookkeeping).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import TransactionNotFound

from llmos_chain.chain.contracts import _is_revert, _revert_data, decode_revert
from llmos_chain.errors import ChainError, ContractRevertError
from llmos_chain.store import Store

log = logging.getLogger("llmos.outbox")

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, sender TEXT NOT NULL, contract TEXT NOT NULL,
    function TEXT NOT NULL, args TEXT NOT NULL, value TEXT NOT NULL DEFAULT '0', status TEXT NOT NULL,
    nonce INTEGER, tx_hash TEXT, raw_tx TEXT, fee TEXT, hashes TEXT NOT NULL DEFAULT '[]', error TEXT,
    sent_at REAL, block INTEGER, created REAL NOT NULL, updated REAL NOT NULL
);
"""
TERMINAL = ("confirmed", "failed", "done_elsewhere")


@dataclass(frozen=True)
class Intent:
    id: int
    key: str
    sender: str
    contract: str
    function: str
    args: list[Any]
    value: int
    status: str
    nonce: int | None
    tx_hash: str | None
    raw_tx: str | None
    fee: int | None
    hashes: list[str]
    error: str | None
    sent_at: float | None
    block: int | None


def _row(r: Any) -> Intent:
    return Intent(r["id"], r["key"], r["sender"], r["contract"], r["function"], json.loads(r["args"]), int(r["value"]), r["status"],
                  r["nonce"], r["tx_hash"], r["raw_tx"], int(r["fee"]) if r["fee"] else None, json.loads(r["hashes"]), r["error"],
                  r["sent_at"], r["block"])


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__bytes__" in value:
        return bytes.fromhex(value["__bytes__"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class Outbox:
    def __init__(
        self,
        w3: Web3,
        store: Store,
        account: LocalAccount,
        contracts: dict[str, Contract],
        already_done: Callable[[Intent], bool] | None = None,
        stuck_after_s: float = 60.0,
        fee_bump: float = 1.25,
        confirmations: int = 0,
        still_wanted: Callable[[Intent], bool | None] | None = None,
        revert_patience_s: float = 0.0,
        follower_gated: bool = False,
    ) -> None:
        self.w3 = w3
        self.store = store
        self.account = account
        self.contracts = contracts
        self.already_done = already_done or (lambda intent: False)
        self.stuck_after_s = stuck_after_s
        self.fee_bump = fee_bump
        self.confirmations = confirmations
        self.nonce_patience_s = 5.0
        self._nonce_gone: dict[int, float] = {}
        #: A revert at gas estimation ends the intent only if it still reverts this long after the first one: behind a
        #: load balancer the estimate may run on a backend that has not seen the block that makes the call valid.
        self.revert_patience_s = revert_patience_s
        #: With a follower writing the same store (the daemons), a transaction is final only once the follower has read
        #: its block too: from then on a reorg that drops it changes the follower's cursor block, which the follower
        #: sees and rolls back (sending the intent back here). Without this, a reorg of blocks the follower had not
        #: read yet would go unnoticed by both.
        self.follower_gated = follower_gated
        self._reverting: dict[int, float] = {}
        self._pass: dict[str, int] = {}
        self._chain: int | None = None
        #: Asked before the same bytes are broadcast again to a node that lost them (a reorg dropped the block, the node
        #: restarted): True sends them, None waits (the chain is not ready for them yet), False ends the intent
        #: `failed` (it is no longer valid, e.g. a result attested before the grant a reorg moved later).
        self.still_wanted = still_wanted or (lambda intent: True)
        store.db.executescript(OUTBOX_SCHEMA)

    # ---------------------------------------------------------------- recording
    def add(self, key: str, contract: str, function: str, args: list[Any], value: int = 0) -> Intent:
        """Record an intent (a no-op if `key` exists) and return it."""
        now = time.time()
        self.store.db.execute(
            "INSERT OR IGNORE INTO outbox (key, sender, contract, function, args, value, status, created, updated) VALUES (?,?,?,?,?,?,?,?,?)",
            (key, self.account.address, contract, function, json.dumps(_encode(list(args))), str(value), "intent", now, now),
        )
        return self.get(key)

    def get(self, key: str) -> Intent:
        row = self.store.db.execute("SELECT * FROM outbox WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise ChainError(f"no outbox intent {key!r}")
        return _row(row)

    def pending(self) -> list[Intent]:
        """This sender's unfinished intents (several senders may share one store, e.g. an owner's and a client's agent)."""
        rows = self.store.db.execute(f"SELECT * FROM outbox WHERE status NOT IN {TERMINAL!r} AND sender = ? ORDER BY id",
                                     (self.account.address,))
        return [_row(r) for r in rows]

    def depth(self) -> int:
        return len(self.pending())

    def _update(self, intent_id: int, **fields: Any) -> None:
        fields["updated"] = time.time()
        columns = ", ".join(f"{k} = ?" for k in fields)
        self.store.db.execute(f"UPDATE outbox SET {columns} WHERE id = ?", (*fields.values(), intent_id))

    def _done(self, intent: Intent) -> bool:
        """The caller's chain check; a check that cannot tell (the job is unknown, the node errs) means not done."""
        try:
            return bool(self.already_done(intent))
        except (ChainError, ContractRevertError):
            return False

    # ---------------------------------------------------------------- driving
    def drive(self, wait_s: float = 0.0) -> list[Intent]:
        """Advance every unfinished intent as far as it goes now; returns the intents that finished."""
        finished = []
        self._pass = {}  # the node's nonce count and gas price, asked once per pass
        try:
            for intent in self.pending():
                result = self._advance(intent, wait_s)
                if result.status in TERMINAL:
                    finished.append(result)
        finally:
            self._pass = {}
        return finished

    def _advance(self, intent: Intent, wait_s: float) -> Intent:
        if intent.status == "intent":  # (an effect already on chain makes the estimate revert: checked there)
            intent = self._sign(intent)
            if intent.status in TERMINAL:
                return intent
        if intent.status == "signed":
            self._broadcast(intent)
            self._update(intent.id, status="sent", sent_at=time.time())
            intent = self.get(intent.key)
            if self.follower_gated and wait_s <= 0:
                return intent  # final only once the follower has read its block: not before the next pass
        if intent.status == "sent":
            return self._settle(intent, wait_s)
        return intent

    def _next_nonce(self) -> int:
        # The node's count is asked once per pass; within it the nonces recorded here are the later ones.
        chain = self._pass.get("nonce")
        if chain is None:
            chain = self._pass["nonce"] = int(self.w3.eth.get_transaction_count(self.account.address, "pending"))
        row = self.store.db.execute(
            "SELECT MAX(nonce) AS n FROM outbox WHERE sender = ? AND nonce IS NOT NULL",
            (self.account.address,),
        ).fetchone()
        local = (row["n"] + 1) if row is not None and row["n"] is not None else 0
        return max(chain, local)

    def _fee(self) -> int:
        fee = self._pass.get("fee")
        if fee is None:
            fee = self._pass["fee"] = int(self.w3.eth.gas_price)
        return fee

    def _chain_id(self) -> int:
        if self._chain is None:
            self._chain = int(self.w3.eth.chain_id)
        return self._chain

    def _sign(self, intent: Intent, nonce: int | None = None, fee: int | None = None) -> Intent:
        contract = self.contracts[intent.contract]
        # encoded once: the estimate and the signed transaction carry the same bytes
        data = getattr(contract.functions, intent.function)(*_decode(intent.args))._encode_transaction_data()
        tx: dict[str, Any] = {"from": self.account.address, "to": contract.address, "value": intent.value, "data": data}
        try:
            gas = int(self.w3.eth.estimate_gas(tx) * 1.2)  # type: ignore[arg-type]
        except Exception as exc:
            if _is_revert(exc):
                error = decode_revert(intent.function, _revert_data(exc))
                # the effect may be on chain already (a crash after broadcast, or another sender): check before failing
                if self._done(intent):
                    self._update(intent.id, status="done_elsewhere", error=str(error))
                    return self.get(intent.key)
                first = self._reverting.setdefault(intent.id, time.monotonic())
                if time.monotonic() - first < self.revert_patience_s:
                    log.info("%s: the estimate reverts (%s); asking again before giving up", intent.key, error)
                    return intent
                self._reverting.pop(intent.id, None)
                self._update(intent.id, status="failed", error=str(error))
                return self.get(intent.key)
            raise ChainError(f"{intent.function}: could not estimate gas: {exc}") from exc
        nonce = self._next_nonce() if nonce is None else nonce
        fee = fee or self._fee()
        built = {"to": contract.address, "value": intent.value, "data": data, "gas": gas, "nonce": nonce, "gasPrice": fee,
                 "chainId": self._chain_id()}
        signed = self.account.sign_transaction(built)
        tx_hash = "0x" + bytes(signed.hash).hex()
        hashes = intent.hashes + [tx_hash]
        # Recorded before broadcasting: after a crash the same bytes go out again, never a new transaction.
        self._update(intent.id, status="signed", nonce=nonce, tx_hash=tx_hash, raw_tx=bytes(signed.raw_transaction).hex(),
                     fee=str(fee), hashes=json.dumps(hashes))
        return self.get(intent.key)

    def _broadcast(self, intent: Intent) -> None:
        assert intent.raw_tx is not None
        try:
            self.w3.eth.send_raw_transaction(bytes.fromhex(intent.raw_tx))
        except Exception as exc:  # "already known", "nonce too low" … all settle by receipt below
            log.info("broadcast of %s (%s) answered: %s", intent.key, intent.tx_hash, exc)

    def _receipt(self, intent: Intent) -> Any:
        for tx_hash in reversed(intent.hashes or [intent.tx_hash]):
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                continue
        return None

    def _known(self, intent: Intent) -> bool:
        """Whether the node has the intent's latest transaction (pending or mined)."""
        try:
            self.w3.eth.get_transaction(intent.tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    def _settle(self, intent: Intent, wait_s: float) -> Intent:
        deadline = time.monotonic() + wait_s
        if self.follower_gated:
            # An event the follower recorded from one of its transactions is its receipt, already at the follower's
            # depth: a successful transaction, final (a reorg that drops it rolls the follower back, which sends the
            # intent back here). Saves asking the node for every receipt of a busy daemon.
            marks = ",".join("?" * len(intent.hashes or [intent.tx_hash]))
            row = self.store.db.execute(f"SELECT tx_hash, MIN(block) AS block FROM events WHERE tx_hash IN ({marks})",
                                        [h.lower() for h in (intent.hashes or [intent.tx_hash]) if h]).fetchone()
            if row is not None and row["block"] is not None:
                self._update(intent.id, status="confirmed", tx_hash=row["tx_hash"], block=int(row["block"]))
                return self.get(intent.key)
        while True:
            receipt = self._receipt(intent)
            if receipt is not None and ((self.confirmations > 0 and
                                         int(self.w3.eth.block_number) - int(receipt["blockNumber"]) < self.confirmations)
                                        or (self.follower_gated and int(receipt["blockNumber"]) > self._follower_cursor())):
                # mined, not yet as deep as the follower reads: not final (a reorg may still drop it)
                if time.monotonic() >= deadline:
                    return intent
                time.sleep(0.05)
                continue
            if receipt is not None:
                if receipt["status"] == 1:
                    self._update(intent.id, status="confirmed", tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
                                 block=int(receipt["blockNumber"]))
                else:
                    self._update(intent.id, status="failed", block=int(receipt["blockNumber"]),
                                 error=self._explain(intent, receipt))
                return self.get(intent.key)
            chain_nonce = int(self.w3.eth.get_transaction_count(self.account.address, "latest"))
            if intent.nonce is not None and chain_nonce > intent.nonce and self._receipt(intent) is not None:
                continue  # mined between the two reads: settle by the receipt on the next pass
            if intent.nonce is not None and chain_nonce > intent.nonce:
                # Our nonce is used, but by none of our hashes: decide from chain state, never by resending. Behind a
                # load balancer the nonce and the receipt may come from different backends (one lagging): decide only
                # when it still looks so `nonce_patience_s` later.
                first = self._nonce_gone.setdefault(intent.id, time.monotonic())
                if time.monotonic() - first < self.nonce_patience_s:
                    if time.monotonic() >= deadline:
                        return intent
                    time.sleep(0.05)
                    continue
                self._nonce_gone.pop(intent.id, None)
                status = "done_elsewhere" if self._done(intent) else "intent"
                self._update(intent.id, status=status, nonce=None if status == "intent" else intent.nonce)
                return self.get(intent.key)
            if not self._known(intent):
                # the node never took it (the broadcast met an error, a reorg dropped its block, or the node restarted
                # without its pool): the same signed bytes again, the same hash; never a new transaction
                wanted = self.still_wanted(intent)
                if wanted is False:
                    # Its nonce must still be used, or every later transaction of ours waits behind the gap: a plain
                    # transfer of 0 to ourselves takes it (the usual cancellation); the nonce stays recorded here.
                    cancel = self._cancel(intent)
                    log.warning("%s: no longer valid after the node dropped it; nonce %s used by a cancelling transfer %s",
                                intent.key, intent.nonce, cancel)
                    self._update(intent.id, status="failed",
                                 error=f"dropped by the node and no longer valid; nonce {intent.nonce} used by {cancel}")
                    return self.get(intent.key)
                if wanted:
                    self._broadcast(intent)
            if intent.sent_at is not None and time.time() - intent.sent_at > self.stuck_after_s:
                # the node's price now (a base-fee spike) or a replacement bump over the old fee, whichever is higher
                bumped = max(self._fee(), int((intent.fee or self._fee()) * self.fee_bump) + 1)
                log.warning("replacing stuck %s at nonce %s with fee %d", intent.key, intent.nonce, bumped)
                intent = self._sign(intent, nonce=intent.nonce, fee=bumped)
                self._broadcast(intent)
                self._update(intent.id, status="sent", sent_at=time.time())
                intent = self.get(intent.key)
            if time.monotonic() >= deadline:
                return intent
            time.sleep(0.05)

    def _follower_cursor(self) -> int:
        cursor = self.store.meta("cursor")
        return int(cursor["block"]) if cursor else -1

    def _cancel(self, intent: Intent) -> str:
        """Use the intent's nonce with a 0-value transfer to ourselves (priced to replace it); its hash."""
        fee = max(self._fee(), int((intent.fee or self._fee()) * self.fee_bump) + 1)
        tx = {"to": self.account.address, "value": 0, "gas": 21_000, "gasPrice": fee, "nonce": intent.nonce,
              "chainId": self._chain_id()}
        signed = self.account.sign_transaction(tx)
        try:
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:  # e.g. "nonce too low": the nonce is used already, which is all we want
            log.info("cancelling transfer at nonce %s answered: %s", intent.nonce, exc)
        return "0x" + bytes(signed.hash).hex()

    def _explain(self, intent: Intent, receipt: Any) -> str:
        contract = self.contracts[intent.contract]
        fn = getattr(contract.functions, intent.function)(*_decode(intent.args))
        # Replayed on the state after its block first: a transaction that lost a race to another one in the same block
        # (two providers assigning one job) reverts there with the reason; then on the state before the block.
        block = int(receipt["blockNumber"])
        for at in (block, block - 1):
            try:
                fn.call({"from": self.account.address, "value": intent.value}, at)
            except Exception as exc:
                if _is_revert(exc):
                    return str(decode_revert(intent.function, _revert_data(exc)))
        return str(ContractRevertError(intent.function, "Reverted", {"note": "no reason reproduced by replaying the call"}))
