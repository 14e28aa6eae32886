"""`llmos agent run`: the data owner's (and client's) daemon: grant by policy, accept what audits."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from llmos_chain.cli.common import DEPLOYMENT, RPC, open_suite
from llmos_chain.cli.output import console, emit_json, emit_line
from llmos_chain.errors import ConfigError

if TYPE_CHECKING:
    from llmos_chain.cli.agent_config import RoleKey

app = typer.Typer(help="The data owner's and client's agent: grants keys by policy, accepts results whose audit passes.",
                  no_args_is_help=True)


def _account(role: RoleKey, dev_accounts: list, what: str):  # noqa: ANN001, ANN202
    from eth_account import Account

    if role.key_env:
        key = os.environ.get(role.key_env)
        if not key:
            raise ConfigError(f"{what}: ${role.key_env} is not set")
        try:
            return Account.from_key(key)
        except (ValueError, TypeError):
            raise ConfigError(f"{what}: ${role.key_env} is not a valid private key") from None
    if role.dev_account is not None and dev_accounts:
        if not 0 <= role.dev_account < len(dev_accounts):
            raise ConfigError(f"{what}: no dev account {role.dev_account} (this dev chain has 0 to {len(dev_accounts) - 1})")
        return dev_accounts[role.dev_account]
    raise ConfigError(f"{what}: give key_env (or dev_account on a dev chain)")


@app.command("run")
def run(
    config: Path = typer.Option(Path("agent.json"), "--config", help="Agent config (JSON): grant policy, accept policy, state file."),
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    once: bool = typer.Option(False, "--once", help="Do one pass and exit."),
    json_out: bool = typer.Option(False, "--json", help="With --once: the pass's decisions as one JSON object. Running: one JSON "
                                                        "line when it starts and one when it stops (the log goes to stderr)."),
) -> None:
    """Follow the chain; grant the data key to workers assigned to your datasets (per policy); accept results that audit."""
    from llmos_chain.agent import AcceptPolicy, Agent, GrantPolicy
    from llmos_chain.cli.agent_config import AgentConfig
    from llmos_chain.crypto.keys import Keystore
    from llmos_chain.settings import load_settings
    from llmos_chain.store import Store

    cfg = AgentConfig.load(config)
    _, conn, suite = open_suite(rpc, deployment)
    dev = conn.dev_accounts()
    owner = _account(cfg.grants, dev, "grants") if cfg.grants else None
    client = _account(cfg.accepts, dev, "accepts") if cfg.accepts else None
    grants = None
    if cfg.grants:
        g = cfg.grants
        grants = GrantPolicy(dict(g.datasets), frozenset(a.lower() for a in g.workers), frozenset(a.lower() for a in g.operators),
                             g.max_jobs)
    keystore = Keystore(Path(cfg.keystore or load_settings().keystore).expanduser())
    accepts = AcceptPolicy(cfg.accepts.results, keystore.load_encryption_key(cfg.accepts.client_key), cfg.accepts.dispute_failed) \
        if cfg.accepts else None
    from llmos_chain.chain.connect import default_confirmations

    confirmations = cfg.confirmations if cfg.confirmations is not None else default_confirmations(suite.deployment.chain_id)
    agent = Agent(suite, Store(cfg.state), owner, keystore if grants else None, grants, client, accepts, confirmations)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if once:
        report = agent.step()
        if json_out:  # job ids per decision
            emit_json({"granted": report.granted, "refused": report.refused, "accepted": report.accepted,
                       "disputed": report.disputed, "audit_failed": report.audit_failed})
            return
        console.print(f"granted {report.granted}, refused {report.refused}, accepted {report.accepted}, "
                      f"disputed {report.disputed}, audit failed {report.audit_failed}")
        return
    roles = [r for r, on in (("granting", grants), ("accepting", accepts)) if on]
    if json_out:
        emit_line({"event": "started", "roles": roles, "state": str(cfg.state.resolve())})
    else:
        console.print(f"agent {' and '.join(roles)}; Ctrl-C stops")
    agent.run_forever(cfg.poll_interval_s)  # SIGTERM / Ctrl-C end it between two steps
    if json_out:
        emit_line({"event": "stopped"})
    else:
        console.print("stopped: decisions and pending transactions are kept in the state file")
