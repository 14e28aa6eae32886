"""`llmos deploy`: put the contract suite on a chain and write the deployment file."""

from __future__ import annotations

from pathlib import Path

import typer

from llmos_chain.cli.common import UINT256_MAX, check_output_file
from llmos_chain.cli.output import console, emit_json, table
from llmos_chain.errors import ConfigError

UINT40_MAX = 2**40 - 1


def deploy(
    rpc: str = typer.Option(None, "--rpc", help="JSON-RPC URL of the node (env LLMOS_RPC_URL); 'embedded' for a throw-away in-process chain."),
    out: Path = typer.Option(Path("deployment.json"), "--out", help="Where to write the deployment file."),
    arbiter: str = typer.Option(None, "--arbiter", help="Dispute arbiter address (default: the deployer)."),
    collateral_per_gpu: int = typer.Option(10**16, "--collateral-per-gpu", min=0, max=UINT256_MAX,
                                           help="Collateral locked per GPU of a job, in wei (a whole number of gwei)."),
    grant_timeout: int = typer.Option(24 * 3600, "--grant-timeout", min=0, max=UINT40_MAX, help="Seconds a data owner has to grant access after assignment (also how long a dropped worker waits to retake the job)."),
    dispute_window: int = typer.Option(3 * 24 * 3600, "--dispute-window", min=0, max=UINT40_MAX, help="Seconds the arbiter has to decide a dispute; then the worker's claim stands."),
    dispute_bond: int = typer.Option(10**16, "--dispute-bond", min=0, max=UINT256_MAX, help="ETH (wei) a client pays to dispute: back if upheld, else to the worker's operator."),
    allow_zero_collateral: bool = typer.Option(False, "--allow-zero-collateral", help="Accept --collateral-per-gpu 0 (workers then risk nothing)."),
    unbonding_delay: int = typer.Option(7 * 24 * 3600, "--unbonding-delay", min=0, max=UINT40_MAX, help="Seconds between a worker's exit request and its stake withdrawal."),
    test_token: bool = typer.Option(False, "--test-token", help="Also deploy a freely mintable ERC-20 (dev chains only)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Deploy WorkerRegistry, DatasetRegistry and JobMarket, wire them, and write the deployment file.

    The deployer key comes from LLMOS_PRIVATE_KEY; on a dev chain (embedded, anvil) the first dev account is used.
    Every parameter is checked before the first contract is sent: a refused deploy leaves nothing half-deployed.
    """
    from pydantic import ValidationError
    from web3 import Web3

    from llmos_chain.chain.connect import connect
    from llmos_chain.chain.contracts import Sender
    from llmos_chain.chain.deploy import DeployParams, deploy_suite
    from llmos_chain.settings import load_settings

    # What the constructors would refuse, refused here: the first contracts would otherwise be deployed for nothing.
    if arbiter is not None and (not Web3.is_address(arbiter) or int(arbiter, 16) == 0):
        raise ConfigError(f"--arbiter must be a non-zero address, got {arbiter!r}")
    if collateral_per_gpu == 0 and not allow_zero_collateral:
        raise ConfigError("--collateral-per-gpu 0 lets workers risk nothing: pass --allow-zero-collateral if that is meant")
    if collateral_per_gpu % 10**9:
        raise ConfigError(f"--collateral-per-gpu must be a whole number of gwei (a multiple of 10^9 wei), got {collateral_per_gpu}")
    try:
        params = DeployParams(
            arbiter=arbiter,
            collateral_per_gpu_wei=collateral_per_gpu,
            grant_timeout_s=grant_timeout,
            dispute_window_s=dispute_window,
            dispute_bond_wei=dispute_bond,
            allow_zero_collateral=allow_zero_collateral,
            unbonding_delay_s=unbonding_delay,
            with_test_token=test_token,
        )
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
    check_output_file(out, "--out", parents=True)
    settings = load_settings(rpc_url=rpc)
    conn = connect(settings.rpc_url, timeout=settings.rpc_timeout_s)
    account = settings.account(conn.dev_accounts())
    deployment = deploy_suite(Sender(conn.w3, account), params)
    deployment.save(out)
    if json_out:
        emit_json({"deployment": str(out.resolve()), "chain_id": deployment.chain_id, "start_block": deployment.start_block,
                   "contracts": {k: v.address for k, v in deployment.contracts.items()}})
        return
    table(f"Deployed to chain {deployment.chain_id} from block {deployment.start_block}", ["contract", "address"],
          [[name, rec.address] for name, rec in deployment.contracts.items()])
    console.print(f"deployment file: {out}")
    if conn.embedded:
        console.print("[yellow]note:[/] the embedded chain ends with this process; use --rpc URL for a lasting deployment")
