"""Pieces several commands share: opening the deployed suite, the acting account, progress bars."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from llmos_chain.errors import ConfigError

if TYPE_CHECKING:  # the CLI answers --help and usage errors without web3, pydantic or the bindings: imported where used
    from llmos_chain.chain.connect import Connection
    from llmos_chain.chain.deploy import Suite
    from llmos_chain.chain.market import MarketClient
    from llmos_chain.crypto.keys import Keystore
    from llmos_chain.settings import Settings

#: Largest value of the contracts' uint256 ids (jobs, datasets) and wei amounts.
UINT256_MAX = 2**256 - 1

RPC = typer.Option(None, "--rpc", help="JSON-RPC URL of the node (env LLMOS_RPC_URL).")
DEPLOYMENT = typer.Option(None, "--deployment", help="Deployment file written by `llmos deploy` (env LLMOS_DEPLOYMENT).")
DEV_ACCOUNT = typer.Option(0, "--dev-account", min=0, help="On a dev chain without LLMOS_PRIVATE_KEY: which funded dev account acts.")
KEYSTORE = typer.Option(None, "--keystore", help="Keystore directory (env LLMOS_KEYSTORE; default ~/.llmos/keystore).")
JSON = typer.Option(False, "--json", help="Print one JSON object for scripts.")


def keystore(path: Path | None) -> Keystore:
    from llmos_chain.crypto.keys import Keystore
    from llmos_chain.settings import load_settings

    return Keystore(load_settings(keystore=path).keystore)


def existing_keystore(path: Path | None) -> Keystore:
    """The keystore, which must already exist (for commands that only read it)."""
    store = keystore(path)
    if not store.root.exists():
        raise ConfigError(f"no keystore at {store.root} (--keystore / LLMOS_KEYSTORE): `llmos keys generate` creates one")
    if not store.root.is_dir():
        raise ConfigError(f"keystore {store.root} is not a directory")
    return store


#: URI schemes a worker can fetch from (what `llmos_chain.net` allows).
FETCHABLE_SCHEMES = ("file", "http", "https")


def check_uri(uri: str, what: str) -> str:
    """A URI workers can fetch: file:///absolute/path or http(s)://host/…; anything else is a ConfigError."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in FETCHABLE_SCHEMES:
        raise ConfigError(f"{what} must be a file://, http:// or https:// URI, got {uri!r}")
    if parsed.scheme == "file" and (parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/")):
        raise ConfigError(f"{what} must name an absolute local path (file:///path/to/file), got {uri!r}")
    if parsed.scheme != "file" and not parsed.hostname:
        raise ConfigError(f"{what} has no host: {uri!r}")
    if any(c.isspace() for c in uri):
        raise ConfigError(f"{what} must not contain whitespace, got {uri!r}")
    return uri


def check_output_file(path: Path, what: str, *, parents: bool = False) -> Path:
    """Fail early, before any work, unless a file can be written at `path`: it is not a directory and its directory
    exists (with `parents`: could be created, no file in the way)."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory: name a file")
    parent = path.parent
    if parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise ConfigError(f"{what} {path}: {parent} is not a directory")
    elif not parent.is_dir():
        raise ConfigError(f"{what}: directory {parent} does not exist" if not parent.exists() else f"{what}: {parent} is not a directory")
    return path


def open_suite(rpc: str | None, deployment: Path | None, timeout: float | None = None) -> tuple[Settings, Connection, Suite]:
    from llmos_chain.chain.connect import connect
    from llmos_chain.chain.deploy import Deployment, Suite
    from llmos_chain.settings import load_settings

    settings = load_settings(rpc_url=rpc, deployment=deployment)
    if settings.rpc_url == "embedded":
        raise ConfigError("this command needs a lasting chain: pass --rpc URL (or set LLMOS_RPC_URL) and --deployment FILE")
    conn = connect(settings.rpc_url, timeout=timeout or settings.rpc_timeout_s)
    suite = Suite(conn.w3, Deployment.load(settings.deployment))
    suite.verify()
    return settings, conn, suite


def acting_client(settings: Settings, conn: Connection, suite: Suite, dev_account: int) -> MarketClient:
    from llmos_chain.chain.contracts import Sender
    from llmos_chain.chain.market import MarketClient

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
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from llmos_chain.cli.output import err_console

    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
