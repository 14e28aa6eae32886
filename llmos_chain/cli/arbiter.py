"""`llmos arbiter run`: the arbiter's daemon: decides disputed results by replaying the training."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from llmos_chain.cli.agent import _account
from llmos_chain.cli.common import DEPLOYMENT, RPC, open_suite
from llmos_chain.cli.output import console, emit_json, emit_line

app = typer.Typer(help="The arbiter: decides disputed results by replaying the worker's training (`llmos verify`).",
                  no_args_is_help=True)


@app.command("run")
def run(
    config: Path = typer.Option(Path("arbiter.json"), "--config", help="Arbiter config (JSON): account, key, result sources."),
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    once: bool = typer.Option(False, "--once", help="Do one pass and exit."),
    json_out: bool = typer.Option(False, "--json", help="With --once: the pass's decisions as one JSON object."),
) -> None:
    """Follow disputes; with the owner's verifier grant, replay the training and resolve each dispute before its deadline."""
    from llmos_chain.arbiter import Arbiter, ArbiterPolicy
    from llmos_chain.cli.arbiter_config import ArbiterConfig
    from llmos_chain.chain.connect import default_confirmations
    from llmos_chain.crypto.keys import Keystore
    from llmos_chain.settings import load_json_config, load_settings
    from llmos_chain.store import Store

    cfg = load_json_config(ArbiterConfig, config, "arbiter config")
    _, conn, suite = open_suite(rpc, deployment)
    account = _account(cfg, conn.dev_accounts(), "arbiter")
    key = Keystore(Path(cfg.keystore or load_settings().keystore).expanduser()).load_encryption_key(cfg.encryption_key)
    policy = ArbiterPolicy(tuple(cfg.results), cfg.margin_s, cfg.replay_timeout_s, cfg.threads, cfg.every)
    confirmations = cfg.confirmations if cfg.confirmations is not None else default_confirmations(suite.deployment.chain_id)
    arbiter = Arbiter(suite, Store(cfg.state), account, key, policy, cfg.reports, confirmations)
    key_id = arbiter.ensure_key()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if once:
        report = arbiter.step()
        if json_out:
            emit_json({"key_id": key_id, "resolved": {str(k): v for k, v in report.resolved.items()}, "waiting": report.waiting,
                       "left_to_default": report.left_to_default})
        else:
            console.print(f"arbiter key {key_id}; resolved {report.resolved}, waiting {report.waiting}, "
                          f"left to the default {report.left_to_default}")
        return
    if json_out:
        emit_line({"event": "started", "key_id": key_id, "state": str(cfg.state.resolve())})
    else:
        console.print(f"arbiter running with key {key_id}; Ctrl-C stops")
    arbiter.run_forever(cfg.poll_interval_s)
    if json_out:
        emit_line({"event": "stopped"})
    else:
        console.print("stopped: decisions and pending transactions are kept in the state file")
