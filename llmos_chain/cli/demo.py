"""`llmos demo`: the marketplace end to end on the embedded chain."""

from __future__ import annotations

import typer

from llmos_chain.cli.output import console, emit_json, err_console, table


def demo(
    rpc: str = typer.Option("embedded", "--rpc", help="'embedded' (default, in-process) or a dev node's URL (anvil)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with every job."),
) -> None:
    """Run the whole marketplace once: workers, a sealed dataset, three jobs, grants, attestations, payouts."""
    from llmos_chain.demo import run_demo

    if json_out:
        result = run_demo(rpc)
        emit_json(result)
        return
    with err_console.status("starting") as status:
        result = run_demo(rpc, progress=lambda message: status.update(message))
    rows = [[j["id"], j["spec"], j["state"], j["worker_name"], j["currency"], j["gas_total"]] for j in result["jobs"]]
    table(f"Jobs on chain {result['chain_id']} (dataset {result['dataset']['id']})",
          ["job", "spec", "state", "worker", "paid in", "gas"], rows)
    opened = result["client_opened"]
    console.print(f"client opened job {opened['job']}'s sealed result: {opened['report']}")
    console.print(f"done in {result['wall_s']} s")
