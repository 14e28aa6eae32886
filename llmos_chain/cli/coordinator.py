"""`llmos coordinator run|serve`: the provider's daemon and its read-only API."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import typer

from llmos_chain.cli.common import DEPLOYMENT, DEV_ACCOUNT, RPC, open_suite, tx_hex
from llmos_chain.cli.output import console, emit_json, emit_line
from llmos_chain.errors import ConfigError

app = typer.Typer(help="The provider's coordinator daemon (allocates, runs and submits jobs) and its API.", no_args_is_help=True)
CONFIG = typer.Option(Path("coordinator.json"), "--config", help="Coordinator config file (JSON): workers, paths, solver, API.")
DAEMON_JSON = typer.Option(False, "--json", help="With --once: the pass as one JSON object. Running: one JSON line when it starts "
                                                 "and one when it stops (the log goes to stderr).")


def _load_config(config_path: Path):  # noqa: ANN202
    from llmos_chain.market.config import CoordinatorConfig

    config = CoordinatorConfig.load(config_path)
    if not config.workers:
        raise ConfigError(f"coordinator config {config_path}: `workers` is empty: list at least one worker")
    return config


def _prepare(rpc: str | None, deployment: Path | None, config, config_path: Path, dev_account: int):  # noqa: ANN001, ANN202
    """Everything a coordinator needs, checked, with nothing created yet (no state file, no log directory)."""
    from eth_account import Account

    from llmos_chain.crypto.keys import Keystore
    from llmos_chain.market.coordinator import WorkerConfig
    from llmos_chain.market.executor import WorkerCommand
    from llmos_chain.settings import load_settings

    settings, conn, suite = open_suite(rpc, deployment, timeout=config.rpc_timeout_s)
    dev = conn.dev_accounts()
    operator = settings.account(dev, dev_account)
    keystore = Path(config.keystore or load_settings().keystore).expanduser()
    workers = []
    for entry in config.workers:
        if entry.signer_key_env:
            key = os.environ.get(entry.signer_key_env)
            if not key:
                raise ConfigError(f"worker {entry.address}: ${entry.signer_key_env} is not set")
        elif entry.dev_account is not None and dev:
            if not 0 <= entry.dev_account < len(dev):
                raise ConfigError(f"worker {entry.address}: no dev account {entry.dev_account} "
                                  f"(this dev chain has 0 to {len(dev) - 1}) in {config_path}")
            key = dev[entry.dev_account].key.hex()
        else:
            raise ConfigError(f"worker {entry.address}: give signer_key_env (or dev_account on a dev chain)")
        try:
            signer = Account.from_key(key)
        except (ValueError, TypeError):
            raise ConfigError(f"worker {entry.address}: ${entry.signer_key_env} is not a valid private key") from None
        if signer.address.lower() != entry.address.lower():
            raise ConfigError(f"worker {entry.address}: its signing key belongs to another address")
        Keystore(keystore).load_encryption_key(entry.enc_key)  # its process decrypts with it: missing is an error now
        command = WorkerCommand(settings.rpc_url, settings.deployment.resolve(), keystore, entry.enc_key,
                                config.results.resolve(), config.work_dir.resolve(), {"LLMOS_PRIVATE_KEY": "0x" + key.removeprefix("0x")},
                                file_roots=tuple(Path(r).expanduser().resolve() for r in config.file_roots))
        workers.append(WorkerConfig(entry.address, entry.gpus, entry.mem_gib, entry.price_per_gpu_hour_wei, entry.speed,
                                    entry.worker_class, tuple(entry.gpu_slots), command))
    return suite, operator, workers, keystore


def _build(rpc: str | None, deployment: Path | None, config, config_path: Path, dev_account: int):  # noqa: ANN001, ANN202
    from llmos_chain.market.coordinator import Coordinator
    from llmos_chain.market.executor import Executor
    from llmos_chain.store import Store

    from llmos_chain.chain.connect import default_confirmations

    suite, operator, workers, _ = _prepare(rpc, deployment, config, config_path, dev_account)
    if config.executor.kind == "ray":
        from llmos_chain.market.ray_executor import RayExecutor

        e = config.executor
        executor: Executor = RayExecutor(workers[0].command, config.logs.resolve(), e.address, config.job_time_limit_s, e.resource,
                                         e.start_timeout_s, e.collective_timeout_s, e.threads_per_rank)
    else:
        executor = Executor(workers[0].command, config.logs.resolve(), config.job_time_limit_s)
    confirmations = config.confirmations if config.confirmations is not None else default_confirmations(suite.deployment.chain_id)
    return Coordinator(suite, Store(config.state), operator, workers, executor, confirmations, config.solver,
                       config.solve_time_limit_s, config.token_prices, config.withdraw,
                       fee_bump_after_s=config.fee_bump_after_s, max_reorg_depth=config.max_reorg_depth)


def _bind_api(config, config_path: Path) -> socket.socket:  # noqa: ANN001
    """The API's listening socket, bound now, before anything else happens: a port in use (another coordinator,
    most likely) stops the command here instead of leaving a daemon without its API."""
    try:
        infos = socket.getaddrinfo(config.api_host, config.api_port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"api_host {config.api_host!r} in {config_path} does not resolve: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT leftovers are no obstacle
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the API address {config.api_host}:{config.api_port} is in use ({exc.strerror}): is another "
                          f"coordinator running? Set api_port in {config_path}, or pass --no-api") from None
    return sock


def _server(coordinator, config):  # noqa: ANN001, ANN202
    import uvicorn

    from llmos_chain.api import create_app

    return uvicorn.Server(uvicorn.Config(create_app(coordinator), host=config.api_host, port=config.api_port, log_level="warning"))


def _serve(coordinator, config, sock: socket.socket) -> threading.Thread:  # noqa: ANN001
    server = _server(coordinator, config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
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
    json_out: bool = DAEMON_JSON,
) -> None:
    """Run the daemon in the foreground: follow the chain, allocate open jobs, run granted ones, submit results.

    The API's port is taken first: if it is in use (another coordinator?) the command stops before doing anything."""
    cfg = _load_config(config)
    sock = _bind_api(cfg, config) if api and not once else None
    try:
        coordinator = _build(rpc, deployment, cfg, config, dev_account)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        if once:
            report = coordinator.step()
            if json_out:  # job ids per step
                emit_json({"events": report.new_events, "assigned": report.assigned, "started": report.started,
                           "finished": report.finished, "solve_s": report.solve_s})
                return
            console.print(f"events {report.new_events}, assigned {report.assigned}, started {report.started}, finished {report.finished}")
            return
        api_url = f"http://{cfg.api_host}:{cfg.api_port}" if sock is not None else None
        if sock is not None:
            _serve(coordinator, cfg, sock)
        if json_out:
            emit_line({"event": "started", "api": api_url, "workers": list(coordinator.workers),
                       "state": str(cfg.state.resolve())})
        else:
            if api_url:
                console.print(f"API on {api_url} (docs at /docs)")
            console.print(f"coordinating {len(coordinator.workers)} worker(s); Ctrl-C stops")
        coordinator.run_forever(cfg.poll_interval_s)  # SIGTERM / Ctrl-C end it between two steps
        if json_out:
            emit_line({"event": "stopped"})
        else:
            console.print("stopped: running jobs keep their state; the next start adopts finished results and live runs")
    finally:
        if sock is not None:
            sock.close()


@app.command("serve")
def serve(
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    config: Path = CONFIG,
    dev_account: int = DEV_ACCOUNT,
    json_out: bool = typer.Option(False, "--json", help="One JSON line with the API's URL once it is about to serve."),
) -> None:
    """Serve only the read-only API over the coordinator's state (its port is taken first, before anything else)."""
    cfg = _load_config(config)
    sock = _bind_api(cfg, config)
    try:
        coordinator = _build(rpc, deployment, cfg, config, dev_account)
        url = f"http://{cfg.api_host}:{cfg.api_port}"
        if json_out:
            emit_line({"event": "serving", "api": url})
        else:
            console.print(f"API on {url} (docs at /docs); Ctrl-C stops")
        _server(coordinator, cfg).run(sockets=[sock])
    finally:
        sock.close()


@app.command("register")
def register(
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    config: Path = CONFIG,
    dev_account: int = DEV_ACCOUNT,
    stake: str = typer.Option("1", "--stake-eth", help="Stake per worker, in ETH (locked as collateral while it holds jobs)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object for scripts: each worker, registered now or before."),
) -> None:
    """Register the config's workers on chain (GPUs, memory, price, their HPKE public keys); skips registered ones."""
    from decimal import Decimal, InvalidOperation

    from llmos_chain.chain.contracts import Sender, call
    from llmos_chain.chain.market import MarketClient, WorkerParams
    from llmos_chain.crypto.keys import Keystore

    try:
        amount = Decimal(stake)
    except InvalidOperation:
        amount = Decimal("nan")
    if not amount.is_finite() or amount < 0 or amount * 10**18 != int(amount * 10**18) or amount * 10**18 >= 2**256:
        raise ConfigError(f"--stake-eth must be a number of ETH, at least 0 and at most 18 decimals, got {stake!r}")
    stake_wei = int(amount * 10**18)
    cfg = _load_config(config)
    suite, operator, _, keystore_dir = _prepare(rpc, deployment, cfg, config, dev_account)  # registering needs no state file
    client = MarketClient(suite, Sender(suite.w3, operator))
    keystore = Keystore(keystore_dir)
    results = []
    for entry in cfg.workers:
        if int(call(suite.workers.functions.idOf(entry.address))) != 0:
            results.append({"worker": entry.address, "registered": False, "reason": "already registered"})
            if not json_out:
                console.print(f"{entry.address}: already registered")
            continue
        key = keystore.load_encryption_key(entry.enc_key)
        params = WorkerParams(entry.address, entry.worker_class.upper(), entry.gpus, entry.mem_gib, entry.price_per_gpu_hour_wei,
                              key.public_bytes(), key.kind)
        receipt = client.register_worker(entry.address, params, stake_wei)
        results.append({"worker": entry.address, "registered": True, "stake": str(stake_wei), "tx": tx_hex(receipt),
                        "gas": int(receipt["gasUsed"])})
        if not json_out:
            console.print(f"{entry.address}: registered with {stake} ETH stake (gas {int(receipt['gasUsed']):,})")
    if json_out:
        emit_json({"operator": operator.address, "workers": results})
