"""`llmos coordinator run|serve`: the provider's daemon and its read-only API."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import typer

from llmos_chain.cli.common import DEPLOYMENT, DEV_ACCOUNT, RPC, open_suite
from llmos_chain.cli.output import console
from llmos_chain.errors import ConfigError

app = typer.Typer(help="The provider's coordinator daemon (allocates, runs and submits jobs) and its API.", no_args_is_help=True)
CONFIG = typer.Option(Path("coordinator.json"), "--config", help="Coordinator config file (JSON): workers, paths, solver, API.")


def _build(rpc: str | None, deployment: Path | None, config_path: Path, dev_account: int):  # noqa: ANN202
    from eth_account import Account

    from llmos_chain.market.config import CoordinatorConfig
    from llmos_chain.market.coordinator import Coordinator, WorkerConfig
    from llmos_chain.market.executor import Executor, WorkerCommand
    from llmos_chain.settings import load_settings
    from llmos_chain.store import Store

    config = CoordinatorConfig.load(config_path)
    settings, conn, suite = open_suite(rpc, deployment)
    operator = settings.account(conn.dev_accounts(), dev_account)
    keystore = config.keystore or load_settings().keystore
    workers = []
    for entry in config.workers:
        if entry.signer_key_env:
            key = os.environ.get(entry.signer_key_env)
            if not key:
                raise ConfigError(f"worker {entry.address}: ${entry.signer_key_env} is not set")
        elif entry.dev_account is not None and conn.dev_accounts():
            key = conn.dev_accounts()[entry.dev_account].key.hex()
        else:
            raise ConfigError(f"worker {entry.address}: give signer_key_env (or dev_account on a dev chain)")
        if Account.from_key(key).address.lower() != entry.address.lower():
            raise ConfigError(f"worker {entry.address}: its signing key belongs to another address")
        command = WorkerCommand(settings.rpc_url, settings.deployment.resolve(), Path(keystore).expanduser(), entry.enc_key,
                                config.results.resolve(), config.work_dir.resolve(), {"LLMOS_PRIVATE_KEY": "0x" + key.removeprefix("0x")},
                                file_roots=tuple(Path(r).expanduser().resolve() for r in config.file_roots))
        workers.append(WorkerConfig(entry.address, entry.gpus, entry.mem_gib, entry.price_per_gpu_hour_wei, entry.speed,
                                    entry.worker_class, tuple(entry.gpu_slots), command))
    executor = Executor(workers[0].command, config.logs.resolve(), config.job_time_limit_s)
    coordinator = Coordinator(suite, Store(config.state), operator, workers, executor, config.confirmations, config.solver,
                              config.solve_time_limit_s, config.token_prices, config.withdraw)
    return config, coordinator


def _serve(coordinator, host: str, port: int) -> threading.Thread:  # noqa: ANN001
    import uvicorn

    from llmos_chain.api import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(coordinator), host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return thread


@app.command("run")
def run(
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    config: Path = CONFIG,
    dev_account: int = DEV_ACCOUNT,
    api: bool = typer.Option(True, "--api/--no-api", help="Serve the read-only API beside the daemon."),
    once: bool = typer.Option(False, "--once", help="Do one pass and exit (for cron jobs and checks)."),
) -> None:
    """Run the daemon in the foreground: follow the chain, allocate open jobs, run granted ones, submit results."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg, coordinator = _build(rpc, deployment, config, dev_account)
    if once:
        report = coordinator.step()
        console.print(f"events {report.new_events}, assigned {report.assigned}, started {report.started}, finished {report.finished}")
        return
    if api:
        _serve(coordinator, cfg.api_host, cfg.api_port)
        console.print(f"API on http://{cfg.api_host}:{cfg.api_port} (docs at /docs)")
    console.print(f"coordinating {len(coordinator.workers)} worker(s); Ctrl-C stops")
    try:
        coordinator.run_forever(cfg.poll_interval_s)
    except KeyboardInterrupt:
        console.print("stopping: running jobs keep their state and resume on the next start")


@app.command("serve")
def serve(rpc: str = RPC, deployment: Path = DEPLOYMENT, config: Path = CONFIG, dev_account: int = DEV_ACCOUNT) -> None:
    """Serve only the read-only API over the coordinator's state."""
    import uvicorn

    from llmos_chain.api import create_app

    cfg, coordinator = _build(rpc, deployment, config, dev_account)
    uvicorn.run(create_app(coordinator), host=cfg.api_host, port=cfg.api_port, log_level="warning")


@app.command("register")
def register(
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    config: Path = CONFIG,
    dev_account: int = DEV_ACCOUNT,
    stake: str = typer.Option("1", "--stake-eth", help="Stake per worker, in ETH (locked as collateral while it holds jobs)."),
) -> None:
    """Register the config's workers on chain (GPUs, memory, price, their HPKE public keys); skips registered ones."""
    from decimal import Decimal, InvalidOperation

    from llmos_chain.chain.contracts import Sender, call
    from llmos_chain.chain.market import MarketClient, WorkerParams
    from llmos_chain.crypto.keys import Keystore
    from llmos_chain.settings import load_settings

    try:
        stake_wei = int(Decimal(stake) * 10**18)
    except InvalidOperation:
        raise ConfigError(f"--stake-eth must be a number, got {stake!r}") from None
    cfg, coordinator = _build(rpc, deployment, config, dev_account)
    suite = coordinator.suite
    client = MarketClient(suite, Sender(suite.w3, coordinator.operator))
    keystore = Keystore(Path(cfg.keystore or load_settings().keystore).expanduser())
    for entry in cfg.workers:
        if int(call(suite.workers.functions.idOf(entry.address))) != 0:
            console.print(f"{entry.address}: already registered")
            continue
        key = keystore.load_encryption_key(entry.enc_key)
        params = WorkerParams(entry.address, entry.worker_class.upper(), entry.gpus, entry.mem_gib, entry.price_per_gpu_hour_wei,
                              key.public_bytes(), key.kind)
        receipt = client.register_worker(entry.address, params, stake_wei)
        console.print(f"{entry.address}: registered with {stake} ETH stake (gas {int(receipt['gasUsed']):,})")
