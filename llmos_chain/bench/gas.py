"""Gas of one job's full lifecycle (post → assign → grant → submit → accept → withdraw), ETH and ERC-20.

Runs on a fresh in-process chain. Each currency runs two jobs on one deployment: the first pays the
one-time cost of accounts and balances seen for the first time (cold), the second is what every later
job costs (steady state, the headline figure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak

from llmos_chain.attestation import Attestation, sign
from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import DeployParams, Suite, deploy_suite
from llmos_chain.chain.market import JobRequest, MarketClient, WorkerParams, ZERO_ADDRESS

CALLS = ("postJob", "assign", "grantAccess", "submitResult", "accept", "withdraw")

#: Peer figure the issue compares against (gas per task), for the printed comparison only.
PEER_GAS_PER_TASK = (730_000, 1_800_000)


@dataclass
class LifecycleGas:
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def _h(label: str) -> bytes:
    return keccak(text=label)


SNAPSHOT = Path(__file__).resolve().parents[2] / "gas-snapshot.json"


def snapshot_view(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a measurement committed as the gas snapshot."""
    return {key: result[key] for key in ("total", "calls", "calls_erc20", "first_job_total")}


def measure() -> dict[str, Any]:
    """Deploy, run two jobs per currency, and return the gas figures."""
    conn = connect()
    deployer, owner, client, operator, worker_key = conn.dev_accounts()[:5]
    w3 = conn.w3
    suite = Suite(w3, deploy_suite(Sender(w3, deployer), DeployParams(with_test_token=True)))
    assert suite.token is not None
    owner_c = MarketClient(suite, Sender(w3, owner))
    client_c = MarketClient(suite, Sender(w3, client))
    operator_c = MarketClient(suite, Sender(w3, operator))

    worker = worker_key.address
    operator_c.register_worker(
        worker,
        WorkerParams(signer=worker, gpu_model="H100-80GB", gpu_count=8, gpu_mem_gib=80, price_per_gpu_hour=10**15, encryption_key=_h("worker-hpke-key")),
        stake=10**18,
    )
    root = _h("content-root")
    dataset_id, _ = owner_c.register_dataset(root, _h("cipher"), 1 << 20, "file:///data/support.sealed")
    Sender(w3, client).transact(suite.token.functions.mint(client.address, 10**24))
    Sender(w3, client).transact(suite.token.functions.approve(suite.market.address, 2**256 - 1))

    def run_job(token: str) -> LifecycleGas:
        now = int(w3.eth.get_block("latest")["timestamp"])
        request = JobRequest(
            dataset_id=dataset_id,
            base_model_hash=_h("base-model"),
            recipe_hash=_h("recipe"),
            recipe_uri="ipfs://bafy-recipe-support-intents",
            gpu_count=1,
            gpu_mem_gib=16,
            deadline=now + 86_400,
            challenge_window=3_600,
            amount=5 * 10**16,
            client_key=_h("client-hpke-key"),
            token=token,
        )
        gas = LifecycleGas()
        job_id, r = client_c.post_job(request)
        gas.calls["postJob"] = r["gasUsed"]
        gas.calls["assign"] = operator_c.assign(job_id, worker)["gasUsed"]
        # HPKE enc (32) + sealed 32-byte key (48): the size of an X25519 grant; fixed bytes keep the figure exact.
        wrapped = (_h("enc") + _h("ct") + _h("tag"))[:80]
        gas.calls["grantAccess"] = owner_c.grant(dataset_id, job_id, worker, now + 86_400, wrapped)["gasUsed"]
        t = int(w3.eth.get_block("latest")["timestamp"])
        att = Attestation(job_id, worker, root, request.base_model_hash, request.recipe_hash, _h("out"), _h("metrics"), _h("traj"), t - 1, t)
        signature = sign(att, worker_key, conn.chain_id, suite.market.address)
        gas.calls["submitResult"] = operator_c.submit(job_id, att, signature)["gasUsed"]
        gas.calls["accept"] = client_c.accept(job_id)["gasUsed"]
        gas.calls["withdraw"] = operator_c.withdraw(token)["gasUsed"]
        return gas

    token = suite.token.address
    eth_cold, eth = run_job(ZERO_ADDRESS), run_job(ZERO_ADDRESS)
    erc_cold, erc = run_job(token), run_job(token)
    return {
        "total": {"eth": eth.total, "erc20": erc.total},
        "calls": eth.calls,
        "calls_erc20": erc.calls,
        "first_job_total": {"eth": eth_cold.total, "erc20": erc_cold.total},
        "first_job_calls": {"eth": eth_cold.calls, "erc20": erc_cold.calls},
        "target": 350_000,
        "peer_gas_per_task": list(PEER_GAS_PER_TASK),
    }
