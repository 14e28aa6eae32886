"""`llmos demo`: the marketplace end to end on the embedded chain (or a dev node with --rpc).

Two providers register GPU workers (one with an X25519 key, one with the ML-KEM-768 hybrid) and run
a coordinator each; a data owner seals the sample customer-support dataset, registers its hashes and
runs the owner's agent with a grant policy; a client posts three fine-tuning jobs (MiniLM + LoRA,
tiny GPT-2 full fine-tuning, tiny BERT paid in an ERC-20) and runs a client agent that accepts
results whose audit passes. The coordinators allocate with the LP, the worker runtime fine-tunes in
separate processes (fetch, verify, decrypt in memory, train, evaluate, seal to the client, sign),
the agents grant and accept, the operators withdraw, every job is audited, and the client audits the
MiniLM output, serves it (decrypted in memory) as `llmos serve` does and asks it a few sentences over HTTP.

On the embedded chain the worker processes reach eth-tester through a JSON-RPC bridge on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from llmos_chain.agent import AcceptPolicy, Agent, GrantPolicy
from llmos_chain.audit import audit_job
from llmos_chain.basemodel import base_model_hash
from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import DeployParams, Suite, deploy_suite
from llmos_chain.chain.market import JobRequest, JobState, MarketClient, WorkerParams, ZERO_ADDRESS, get_job
from llmos_chain.crypto.keys import EncryptionKey, Keystore, KeyKind
from llmos_chain.datasets import register_dataset, seal_dataset
from llmos_chain.errors import ConfigError, LlmosError
from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.recipe import Recipe
from llmos_chain.serving import ModelServer, ask, audit_and_serve
from llmos_chain.store import Store

Progress = Callable[[str, list[dict[str, Any]]], None]
#: Called once the demo's coordinators exist (before any job is posted) with each provider's name and coordinator:
#: `llmos demo --serve` starts its dashboard there.
OnReady = Callable[[list[tuple[str, Coordinator]]], None]
#: Called with the summary before the demo's chain and directory go away; `step()` steps every coordinator once (so
#: a dashboard kept up stays current): `llmos demo --serve` waits there for Ctrl-C.
Hold = Callable[[dict[str, Any], Callable[[], None]], None]

SENTENCES = ("hi, I still have not received order #12345", "please refund order #55501", "the page for #31337 will not load",
             "can you cancel my purchase #40404")


def sample_dataset() -> Path:
    return Path(str(resources.files("llmos_chain.samples").joinpath("support_intents.jsonl")))


@dataclass
class Provider:
    name: str
    operator: LocalAccount
    signer: LocalAccount
    key: EncryptionKey
    gpus: int
    mem: int
    price: int  # wei per GPU-hour
    token_prices: dict[str, float]


@dataclass(frozen=True)
class JobSpec:
    title: str
    recipe: dict[str, Any]
    gpus: int
    mem: int
    amount: int
    erc20: bool = False


JOBS = (
    JobSpec("intents: MiniLM + LoRA", {
        "task": "sequence-classification", "method": "lora", "base_model": {"kind": "pretrained", "name": "minilm-l6"},
        "hyper": {"steps": 60, "learning_rate": 3e-3, "batch_size": 16, "max_length": 32, "lora_r": 8, "lora_alpha": 16}},
        gpus=1, mem=16, amount=10**15),
    JobSpec("replies LM: tiny GPT-2 full", {
        "task": "causal-lm", "method": "full", "base_model": {"kind": "config", "name": "tiny-gpt2"},
        "hyper": {"steps": 40, "learning_rate": 3e-3, "batch_size": 32, "max_length": 48}},
        gpus=4, mem=40, amount=5 * 10**16),
    JobSpec("intents: tiny BERT full", {
        "task": "sequence-classification", "method": "full", "base_model": {"kind": "config", "name": "tiny-bert"},
        "hyper": {"steps": 80, "learning_rate": 5e-3, "batch_size": 32, "max_length": 48}},
        gpus=1, mem=16, amount=10**18, erc20=True),
)
TERMINAL_STATES = ("settled", "refunded", "failed", "expired", "cancelled")


def _gas(w3: Any, tx_hash: str | None) -> int | None:
    return int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"]) if tx_hash else None


def _intent_hash(store: Store, key: str) -> str | None:
    """The mined transaction of the confirmed intent whose key is `key` or starts with `key:`."""
    row = store.db.execute("SELECT tx_hash, status FROM outbox WHERE (key = ? OR key LIKE ?) AND status = 'confirmed'",
                           (key, key + ":%")).fetchone()
    return str(row["tx_hash"]) if row is not None and row["status"] == "confirmed" else None


def run_demo(rpc: str = "embedded", workdir: Path | None = None, progress: Progress | None = None,
             time_limit_s: float = 900.0, jobs: tuple[JobSpec, ...] = JOBS, on_ready: OnReady | None = None,
             hold: Hold | None = None) -> dict[str, Any]:
    """Run the whole marketplace once and return the summary `llmos demo --json` prints (`jobs`: which of the demo's
    jobs to post; the first one's output is decrypted and used)."""
    started = time.perf_counter()
    with ExitStack() as stack:
        root = Path(workdir) if workdir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmos-demo-")))
        root.mkdir(parents=True, exist_ok=True)
        conn = connect(rpc)
        accounts = conn.dev_accounts()
        if len(accounts) < 8:
            raise ConfigError("the demo needs a dev chain with funded accounts (embedded, or anvil via --rpc)")
        worker_rpc = rpc
        if conn.embedded:
            from llmos_chain.chain.bridge import ProviderBridge

            worker_rpc = stack.enter_context(ProviderBridge(conn.w3)).url
        return _run(conn, accounts, worker_rpc, root, progress or (lambda message, rows: None), started, time_limit_s,
                    jobs, on_ready, hold)
    raise AssertionError("unreachable")  # pragma: no cover


def _run(conn: Any, accounts: list[LocalAccount], worker_rpc: str, root: Path, progress: Progress, started: float,
         time_limit_s: float, specs: tuple[JobSpec, ...] = JOBS, on_ready: OnReady | None = None,
         hold: Hold | None = None) -> dict[str, Any]:
    w3 = conn.w3
    deployer, arbiter, owner, client = accounts[0], accounts[1], accounts[2], accounts[3]
    progress("deploying contracts", [])
    suite = Suite(w3, deploy_suite(Sender(w3, deployer), DeployParams(arbiter=arbiter.address, with_test_token=True)))
    assert suite.token is not None
    deployment_file = root / "deployment.json"
    suite.deployment.save(deployment_file)
    token = suite.token.address

    providers = [
        # expensive and big: only jobs that need many GPUs (or pay a lot) are worth its price
        Provider("a100-node", accounts[4], accounts[5], EncryptionKey.generate(KeyKind.X25519), 8, 80, 5 * 10**18, {}),
        # cheap and small, post-quantum key, accepts the test token at 1 LTT = 0.001 ETH
        Provider("l4-node", accounts[6], accounts[7], EncryptionKey.generate(KeyKind.MLKEM768_X25519), 2, 24, 10**14,
                 {token: 1e-3}),
    ]
    # The three jobs train at once on this host's cores: each gets its share of them (on 2 cores, one thread each)
    cpu_threads = max(1, (os.cpu_count() or 2) // len(specs))
    for folder in ("owner", "client", "results"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    progress("registering workers", [])
    coordinators = []
    for p in providers:
        params = WorkerParams(p.signer.address, p.name.upper(), p.gpus, p.mem, p.price, p.key.public_bytes(), p.key.kind)
        MarketClient(suite, Sender(w3, p.operator)).register_worker(p.signer.address, params, stake=10**18)
        home = root / p.name
        Keystore(home / "keystore").save_encryption_key("worker", p.key)
        command = WorkerCommand(worker_rpc, deployment_file, home / "keystore", "worker", root / "results", home / "work",
                                {"LLMOS_PRIVATE_KEY": "0x" + bytes(p.signer.key).hex()}, file_roots=(root.resolve(),))
        worker = WorkerConfig(p.signer.address, p.gpus, p.mem, p.price, worker_class=p.name, gpu_slots=tuple(range(p.gpus)),
                              command=command)
        coordinators.append(Coordinator(suite, Store(home / "coordinator.db"), p.operator, [worker],
                                        Executor(command, home / "logs", time_limit_s=time_limit_s, cpu_threads=cpu_threads),
                                        token_prices=p.token_prices))
    names = {p.signer.address: p.name for p in providers}
    if on_ready is not None:
        on_ready([(p.name, c) for p, c in zip(providers, coordinators, strict=True)])

    progress("sealing and registering the dataset", [])
    owner_store = Keystore(root / "owner" / "keystore")
    sealed_path = root / "owner" / "support_intents.sealed"
    manifest = seal_dataset(sample_dataset(), sealed_path, owner_store, chunk_size=4096)
    dataset_id, _ = register_dataset(MarketClient(suite, Sender(w3, owner)), manifest, sealed_path.as_uri())
    owner_agent = Agent(suite, Store(root / "owner" / "agent.db"), owner=owner, keystore=owner_store,
                        grants=GrantPolicy({dataset_id: manifest.key_id},
                                           operators=frozenset(p.operator.address.lower() for p in providers), max_jobs=10))

    progress("posting jobs", [])
    client_key = EncryptionKey.generate()
    client_sender = Sender(w3, client)
    client_sender.transact(suite.token.functions.mint(client.address, 10**21))
    client_sender.transact(suite.token.functions.approve(suite.market.address, 2**256 - 1))
    client_c = MarketClient(suite, client_sender)
    client_agent = Agent(suite, Store(root / "client" / "agent.db"), client=client,
                         accepts=AcceptPolicy(str(root / "results"), client_key))
    now = int(w3.eth.get_block("latest")["timestamp"])
    client_key_id, _ = client_c.register_client_key(client_key.kind, client_key.public_bytes())
    jobs: list[dict[str, Any]] = []
    for spec in specs:
        recipe = Recipe.model_validate(spec.recipe)
        path = root / "client" / f"recipe-{len(jobs)}.json"
        path.write_bytes(recipe.canonical_bytes())
        request = JobRequest(dataset_id, base_model_hash(recipe.base_model, recipe.hyper.seed), recipe.hash(), path.as_uri(),
                             spec.gpus, spec.mem, now + 86_400, 3_600, spec.amount, client_key_id,
                             token if spec.erc20 else ZERO_ADDRESS, run_time=6 * 3600)
        job_id, receipt = client_c.post_job(request)
        jobs.append({"id": job_id, "title": spec.title, "recipe": path, "currency": "LTT" if spec.erc20 else "ETH",
                     "gas": {"post": int(receipt["gasUsed"])}})

    def rows() -> list[dict[str, Any]]:
        out = []
        for job in jobs:
            view = get_job(suite, job["id"])
            out.append({"id": job["id"], "title": job["title"], "state": view.state.name.lower(),
                        "worker": names.get(view.worker, "—")})
        return out

    progress("allocating, granting, fine-tuning", rows())
    deadline = time.monotonic() + time_limit_s
    while True:
        for c in coordinators:
            c.step()
        owner_agent.step()
        client_agent.step()
        states = [get_job(suite, j["id"]).state for j in jobs]
        ids = {j["id"] for j in jobs}
        # done when every job is final on chain and each coordinator has seen it and paid itself out
        settled_seen = all(row["state"] in TERMINAL_STATES for c in coordinators for row in c.store.jobs() if row["job_id"] in ids)
        if all(s.terminal for s in states) and settled_seen and all(c.outbox.depth() == 0 for c in coordinators):
            break
        failed = [j["id"] for j, s in zip(jobs, states, strict=True) if s in (JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED)]
        if failed:
            raise LlmosError(f"demo job(s) {failed} did not succeed; see the logs under {root}")
        if time.monotonic() > deadline:
            raise LlmosError(f"the demo did not finish within {time_limit_s:.0f} s (states: {[s.name for s in states]})")
        progress("allocating, granting, fine-tuning, accepting", rows())
        time.sleep(0.2)

    progress("auditing every job", rows())
    data_key = owner_store.load_data_key(manifest.key_id)
    for job, coordinator in ((j, c) for j in jobs for c in coordinators):
        view = get_job(suite, job["id"])
        if view.worker not in coordinator.workers:
            continue
        store = coordinator.store
        job["worker"] = names[view.worker]
        job["worker_address"] = view.worker
        job["gas"]["assign"] = _gas(w3, _intent_hash(store, f"assign:{job['id']}:{view.worker}"))
        job["gas"]["grant"] = _gas(w3, _intent_hash(owner_agent.store, f"grant:{job['id']}"))
        job["gas"]["submit"] = _gas(w3, _intent_hash(store, f"submit:{job['id']}"))
        job["gas"]["accept"] = _gas(w3, _intent_hash(client_agent.store, f"accept:{job['id']}"))
        bundle = root / "results" / str(job["id"])
        metrics = json.loads((bundle / "metrics.json").read_text())
        job.update(state=view.state.name.lower(), metric=metrics["metric"], metric_before=metrics["before"],
                   metric_after=metrics["after"], higher_is_better=metrics["higher_is_better"])
        audit = audit_job(suite, job["id"], bundle, data_key)
        job["audit"] = "pass" if audit.passed else "fail"
        job["audit_checks"] = {c.name: c.ok for c in audit.checks}

    withdrawals = []
    for p, c in zip(providers, coordinators, strict=True):
        for row in c.store.db.execute("SELECT key, tx_hash FROM outbox WHERE function = 'withdraw' AND status = 'confirmed'"):
            withdrawals.append({"provider": p.name, "token": "ETH" if row["key"].split(":")[1] == ZERO_ADDRESS else "LTT",
                                "gas": _gas(w3, row["tx_hash"])})

    progress("the client audits the MiniLM output, serves it and asks it over HTTP", rows())
    first = jobs[0]
    url, used = _use_output(suite, first, client_key, root)
    result = {
        "chain_id": conn.chain_id,
        "rpc": conn.url,
        "dataset": {"id": dataset_id, "content_root": manifest.content_root, "cipher_hash": manifest.cipher_hash},
        "jobs": [{k: v for k, v in j.items() if k != "recipe"} for j in jobs],
        "withdrawals": withdrawals,
        "predictions": {"job": first["id"], "served_at": url, "answers": used},
        "wall_s": round(time.perf_counter() - started, 2),
    }
    if hold is not None:
        def step() -> None:
            for c in coordinators:
                c.safe_step()

        # the client's model stays served (audited, decrypted in memory) for as long as the demo is held up
        with serve_output(suite, first["id"], client_key, root) as server:
            result["serving"] = {"job": first["id"], "url": server.url}
            hold(result, step)
    return result


def _use_output(suite: Suite, job: dict[str, Any], client_key: EncryptionKey, root: Path) -> tuple[str, list[dict[str, Any]]]:
    """The client's side, as `llmos serve` does it: the client audit, the model decrypted in memory and served over HTTP
    (a worker process: torch), then asked the sentences at once (the server batches them); the server is stopped after."""
    with serve_output(suite, job["id"], client_key, root) as server:
        assert server.url is not None
        with ThreadPoolExecutor(len(SENTENCES)) as pool:
            answers = list(pool.map(lambda text: ask(str(server.url), "/v1/classify", {"text": text}), SENTENCES))
        return server.url, [{"text": text, "label": a["label"], "score": a["score"]} for text, a in zip(SENTENCES, answers, strict=True)]


def serve_output(suite: Suite, job_id: int, client_key: EncryptionKey, root: Path, port: int = 0) -> ModelServer:
    """Job `job_id`'s model served on 127.0.0.1:`port` once its client audit passes (the server's log: client/serve.log)."""
    (root / "client").mkdir(parents=True, exist_ok=True)
    with open(root / "client" / "serve.log", "ab") as log:
        report, server = audit_and_serve(suite, job_id, root / "results" / str(job_id), client_key, port=port, log=log)
    if server is None:
        raise LlmosError(f"job {job_id}'s result failed the client audit: {[c.name for c in report.checks if not c.ok]}")
    return server
