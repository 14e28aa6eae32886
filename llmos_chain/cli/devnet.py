"""`llmos devnet`: a local chain for trying the multi-process setup (anvil + the suite + funded accounts)."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import typer

from llmos_chain.cli.common import check_output_file
from llmos_chain.cli.output import console, emit_json, table
from llmos_chain.errors import ConfigError

#: Which anvil dev account plays which role in the README's walkthrough (any split works).
ROLES = ("deployer", "arbiter", "data owner", "client", "provider operator", "worker signer", "provider operator 2",
         "worker signer 2", "spare", "spare")
TOKENS_PER_ACCOUNT = 10**24


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server would: TIME_WAIT leftovers are no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def devnet(
    port: int = typer.Option(8545, "--port", min=1, max=65535, help="Port for anvil's JSON-RPC on 127.0.0.1."),
    out: Path = typer.Option(Path("deployment.json"), "--out", help="Where to write the deployment file."),
    state: Path = typer.Option(None, "--state", help="Load the chain from this file and save it there on exit (anvil --state)."),
    block_time: float = typer.Option(None, "--block-time", min=0.001, max=86400.0,
                                     help="Mine a block every N seconds (default: one per transaction)."),
    json_out: bool = typer.Option(False, "--json", help="Print the deployment and accounts as one JSON object once it is up."),
) -> None:
    """Start anvil, deploy the contracts (with a test ERC-20), fund the dev accounts, write the deployment file, stay up.

    Ctrl-C (or SIGTERM) stops the node; with --state it is saved first and the next start resumes it.
    """
    from llmos_chain.chain.connect import connect
    from llmos_chain.chain.contracts import Sender
    from llmos_chain.chain.deploy import DeployParams, Deployment, Suite, deploy_suite
    from llmos_chain.chain.devchain import Anvil

    check_output_file(out, "--out", parents=True)
    if state is not None:
        check_output_file(state, "--state")
    if not _port_free(port):
        raise ConfigError(f"port {port} is in use on 127.0.0.1: pick another with --port")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Anvil(port=port, state_file=state, block_time=block_time) as node:
        conn = connect(node.url)
        accounts = conn.dev_accounts()
        resumed = state is not None and out.exists() and _deployed(conn, out)
        if resumed:
            suite = Suite(conn.w3, Deployment.load(out))
        else:
            suite = Suite(conn.w3, deploy_suite(Sender(conn.w3, accounts[0]), DeployParams(arbiter=accounts[1].address, with_test_token=True)))
            assert suite.token is not None
            sender = Sender(conn.w3, accounts[0])
            for account in accounts:
                sender.transact(suite.token.functions.mint(account.address, TOKENS_PER_ACCOUNT))
            suite.deployment.save(out)
        info = {"rpc": node.url, "chain_id": conn.chain_id, "deployment": str(out.resolve()), "resumed": resumed,
                "contracts": {k: v.address for k, v in suite.deployment.contracts.items()},
                "accounts": [{"index": i, "address": a.address, "role": ROLES[i]} for i, a in enumerate(accounts)]}
        if json_out:
            emit_json(info)
        else:
            table(f"devnet on {node.url} (chain {conn.chain_id})" + (", resumed from state" if resumed else ""),
                  ["contract", "address"], [[k, v] for k, v in info["contracts"].items()])
            table("Funded dev accounts (10,000 ETH and 1,000,000 LTT each; pick one with --dev-account N)",
                  ["N", "address", "suggested role"], [[a["index"], a["address"], a["role"]] for a in info["accounts"]])
            console.print(f"deployment file: {out}\nexport LLMOS_RPC_URL={node.url} LLMOS_DEPLOYMENT={out.resolve()}\n"
                          "Ctrl-C stops the node" + (f" (state saved to {state})" if state else ""))
        while not stop.wait(0.5):
            if node.process is None or node.process.poll() is not None:
                raise ConfigError("anvil exited unexpectedly")
    if not json_out:
        console.print("devnet stopped")


def _deployed(conn: object, out: Path) -> bool:
    """Whether the deployment file's contracts exist on the resumed chain (same chain, code present)."""
    from llmos_chain.chain.deploy import Deployment, Suite
    from llmos_chain.errors import LlmosError

    try:
        Suite(conn.w3, Deployment.load(out)).verify()  # type: ignore[attr-defined]
    except LlmosError:
        return False
    return True
