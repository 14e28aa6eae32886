"""Pieces several commands share: opening the deployed suite, the acting account, progress bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from llmos_chain.chain.connect import Connection, connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import Deployment, Suite
from llmos_chain.chain.market import MarketClient
from llmos_chain.cli.output import err_console
from llmos_chain.crypto.keys import Keystore
from llmos_chain.settings import Settings, load_settings

RPC = typer.Option(None, "--rpc", help="JSON-RPC URL of the node (env LLMOS_RPC_URL).")
DEPLOYMENT = typer.Option(None, "--deployment", help="Deployment file written by `llmos deploy` (env LLMOS_DEPLOYMENT).")
DEV_ACCOUNT = typer.Option(0, "--dev-account", help="On a dev chain without LLMOS_PRIVATE_KEY: which funded dev account acts.")
KEYSTORE = typer.Option(None, "--keystore", help="Keystore directory (env LLMOS_KEYSTORE; default ~/.llmos/keystore).")
JSON = typer.Option(False, "--json", help="Print one JSON object for scripts.")


def keystore(path: Path | None) -> Keystore:
    return Keystore(load_settings(keystore=path).keystore)


def open_suite(rpc: str | None, deployment: Path | None) -> tuple[Settings, Connection, Suite]:
    settings = load_settings(rpc_url=rpc, deployment=deployment)
    if settings.rpc_url == "embedded":
        from llmos_chain.errors import ConfigError

        raise ConfigError("this command needs a lasting chain: pass --rpc URL (or set LLMOS_RPC_URL) and --deployment FILE")
    conn = connect(settings.rpc_url, timeout=settings.rpc_timeout_s)
    suite = Suite(conn.w3, Deployment.load(settings.deployment))
    suite.verify()
    return settings, conn, suite


def acting_client(settings: Settings, conn: Connection, suite: Suite, dev_account: int) -> MarketClient:
    account = settings.account(conn.dev_accounts(), dev_account)
    return MarketClient(suite, Sender(conn.w3, account))


def acting(rpc: str | None, deployment: Path | None, dev_account: int) -> MarketClient:
    """The acting account (LLMOS_PRIVATE_KEY, or a dev account) on the lasting chain the flags or settings name."""
    settings, conn, suite = open_suite(rpc, deployment)
    return acting_client(settings, conn, suite, dev_account)


def tx_hex(receipt: Any) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


@contextmanager
def byte_progress(description: str, total: int | None, enabled: bool = True) -> Iterator[object]:
    """A transfer-style progress bar on stderr; yields a callback taking a byte count."""
    if not enabled:
        yield lambda n: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
