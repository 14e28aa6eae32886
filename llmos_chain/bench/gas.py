"""Gas of one job's lifecycle (post → assign → grant → submit → accept), ETH and ERC-20, one by one and batched.

Runs on a fresh in-process chain. The client's output key is an ML-KEM-768 + X25519 hybrid key (1,216 bytes),
registered once (`registerClientKey`) and named by id in every post. Each currency runs two jobs on one
deployment: the first pays the one-time cost of accounts and balances seen for the first time (cold), the second
is what every later job costs (steady state, the headline figure), in a market that holds other jobs' escrow. `withdraw` is reported apart: an operator
withdraws once for many jobs. The batched figure runs the same five steps for 10 jobs as one `postJobs` and
`assignMany` and one `multicall` for each other step, and divides by 10.
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
from llmos_chain.chain.market import JobRequest, JobTerms, MarketClient, WorkerParams, ZERO_ADDRESS
from llmos_chain.crypto.keys import EncryptionKey, KeyKind

STEPS = ("postJob", "assign", "grantAccess", "submitResult", "accept")
CALLS = (*STEPS, "withdraw")
BATCH = 10

#: Targets from the contracts' v2 issue: one job's five steps, and per job in batches of 10.
TARGETS = {"eth": 250_000, "erc20": 270_000, "batched_per_job_eth": 120_000}

#: The peer figure printed beside ours: gas per task of the best-known peer marketplace, as the project's first brief
#: (issue 2) gives it. It is quoted, never measured: no peer contract runs in this benchmark.
PEER_GAS_PER_TASK = (730_000, 1_800_000)
PEER_SOURCE = ("quoted, not measured here: issue 2 (the project's first brief) gives the best-known peer marketplace's "
               "cost as 'about 730,000-1,800,000 gas per task', an estimate for another protocol's task, which is not "
               "the same unit of work as this lifecycle; no peer contract runs in this benchmark")


@dataclass
class LifecycleGas:
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.calls[c] for c in STEPS)


def _h(label: str) -> bytes:
    return keccak(text=label)


SNAPSHOT = Path(__file__).resolve().parents[2] / "gas-snapshot.json"


def snapshot_view(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a measurement committed as the gas snapshot."""
    return {key: result[key] for key in ("total", "calls", "calls_erc20", "first_job_total", "batched")}


def measure() -> dict[str, Any]:
    """Deploy, run two jobs per currency and one batch of 10, and return the gas figures."""
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
    worker_id = operator_c.worker_id(worker)
    root = _h("content-root")
    dataset_id, _ = owner_c.register_dataset(root, _h("cipher"), 1 << 20, "file:///data/support.sealed")
    Sender(w3, client).transact(suite.token.functions.mint(client.address, 10**24))
    Sender(w3, client).transact(suite.token.functions.approve(suite.market.address, 2**256 - 1))
    hybrid = EncryptionKey.generate(KeyKind.MLKEM768_X25519).public_bytes()
    key_id, key_receipt = client_c.register_client_key(KeyKind.MLKEM768_X25519, hybrid)
    # HPKE enc (32) + sealed 32-byte key (48): the size of an X25519 grant; fixed bytes keep the figure exact.
    wrapped = (_h("enc") + _h("ct") + _h("tag"))[:80]

    def request(token: str) -> JobRequest:
        now = int(w3.eth.get_block("latest")["timestamp"])
        return JobRequest(
            dataset_id=dataset_id,
            base_model_hash=_h("base-model"),
            recipe_hash=_h("recipe"),
            recipe_uri="ipfs://bafy-recipe-support-intents",
            gpu_count=1,
            gpu_mem_gib=16,
            deadline=now + 86_400,
            challenge_window=3_600,
            amount=5 * 10**16,
            client_key_id=key_id,
            token=token,
            run_time=6 * 3600,
        )

    def attest(job_id: int, req: JobRequest) -> tuple[Attestation, bytes]:
        t = int(w3.eth.get_block("latest")["timestamp"])
        att = Attestation(job_id, worker, root, req.base_model_hash, req.recipe_hash, _h("out"), _h("metrics"), _h("traj"), t - 1, t)
        return att, sign(att, worker_key, conn.chain_id, suite.market.address)

    def run_job(token: str) -> LifecycleGas:
        req = request(token)
        gas = LifecycleGas()
        job_id, r = client_c.post_job(req)
        gas.calls["postJob"] = r["gasUsed"]
        terms = client_c.job(job_id).terms
        gas.calls["assign"] = operator_c.assign(job_id, worker, terms)["gasUsed"]
        gas.calls["grantAccess"] = owner_c.grant(job_id, wrapped, terms)["gasUsed"]
        att, signature = attest(job_id, req)
        gas.calls["submitResult"] = operator_c.submit(job_id, att, signature, terms)["gasUsed"]
        gas.calls["accept"] = client_c.accept(job_id, terms)["gasUsed"]
        gas.calls["withdraw"] = operator_c.withdraw(token)["gasUsed"]
        return gas

    def run_batch() -> dict[str, int]:
        reqs = [request(ZERO_ADDRESS) for _ in range(BATCH)]
        ids, r = client_c.post_jobs(reqs)
        steps = {"postJobs": int(r["gasUsed"])}
        terms: list[JobTerms] = [client_c.job(i).terms for i in ids]
        steps["assign"] = int(operator_c.assign_many(ids, worker, terms)["gasUsed"])
        steps["grantAccess"] = int(owner_c.multicall([("grantAccess", (i, t.as_tuple(), wrapped)) for i, t in zip(ids, terms, strict=True)])["gasUsed"])
        submits = []
        for i, t, req in zip(ids, terms, reqs, strict=True):
            att, signature = attest(i, req)
            submits.append(("submitResult", (i, t.as_tuple(), att.as_tuple(), signature)))
        steps["submitResult"] = int(operator_c.multicall(submits)["gasUsed"])
        steps["accept"] = int(client_c.multicall([("accept", (i, t.as_tuple())) for i, t in zip(ids, terms, strict=True)])["gasUsed"])
        return steps

    token = suite.token.address
    # A live market holds other jobs' escrow: one open job per currency stays posted throughout. Without it, an
    # ERC-20 post into a market whose token balance is exactly zero pays a fresh balance slot (+17,100 gas) that
    # no market with any other open job pays.
    client_c.post_job(request(ZERO_ADDRESS))
    client_c.post_job(request(token))
    eth_cold, eth = run_job(ZERO_ADDRESS), run_job(ZERO_ADDRESS)
    erc_cold, erc = run_job(token), run_job(token)
    batch = run_batch()
    batch_total = sum(batch.values())
    return {
        "total": {"eth": eth.total, "erc20": erc.total},
        "withdraw": {"eth": eth.calls["withdraw"], "erc20": erc.calls["withdraw"]},
        "calls": eth.calls,
        "calls_erc20": erc.calls,
        "first_job_total": {"eth": eth_cold.total, "erc20": erc_cold.total},
        "first_job_calls": {"eth": eth_cold.calls, "erc20": erc_cold.calls},
        "batched": {"size": BATCH, "steps": batch, "total": batch_total, "per_job": {"eth": batch_total // BATCH}},
        "client_key": {"kind": KeyKind.MLKEM768_X25519.value, "bytes": len(hybrid), "register_once_gas": int(key_receipt["gasUsed"])},
        "targets": TARGETS,
        "peer_gas_per_task": list(PEER_GAS_PER_TASK),
        "peer_source": PEER_SOURCE,
    }
