"""`llmos job …`: the client's commands: post, status, accept, dispute, cancel, reclaim, withdraw, fetch."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import typer

from llmos_chain.cli.common import (
    DEPLOYMENT,
    DEV_ACCOUNT,
    JSON,
    KEYSTORE,
    RPC,
    UINT256_MAX,
    acting,
    check_output_file,
    check_uri,
    keystore,
    open_suite,
    tx_hex,
)
from llmos_chain.cli.output import console, emit_json, emit_line, table
from llmos_chain.errors import ChainError, ConfigError, SealedDataError

if TYPE_CHECKING:
    from llmos_chain.chain.deploy import Suite
    from llmos_chain.chain.market import MarketClient

app = typer.Typer(help="The client's side of a job: post it, follow it, accept or dispute the result, fetch the model.",
                  no_args_is_help=True)
JOB = typer.Argument(..., min=0, max=UINT256_MAX, help="Job id.")
#: The widths of the fields of a job request on chain (IJobMarket.JobRequest).
UINT96_MAX, UINT32_MAX = 2**96 - 1, 2**32 - 1
#: Slack between the latest block's time (the deadline's base) and the block the post lands in: the contract wants a
#: whole run window between that block and the deadline.
POST_SLACK_S = 60


def _done(json_out: bool, job_id: int, action: str, receipt: Any, client: MarketClient) -> None:
    from llmos_chain.chain.market import get_job

    state = get_job(client.suite, job_id).state.name.lower()
    if json_out:
        emit_json({"job": job_id, "action": action, "state": state, "tx": tx_hex(receipt), "gas": int(receipt["gasUsed"])})
    else:
        console.print(f"job {job_id}: {action} → {state} (tx {tx_hex(receipt)}, gas {int(receipt['gasUsed']):,})")


@app.command("post")
def post(
    dataset: int = typer.Option(..., "--dataset", min=1, max=2**64 - 1, help="Registered dataset id to fine-tune on."),
    recipe: Path = typer.Option(..., "--recipe", help="Recipe file (JSON); its canonical hash goes on chain."),
    recipe_uri: str = typer.Option(None, "--recipe-uri", help="Where workers fetch the recipe (default: file:// of --recipe)."),
    client_key: str = typer.Option(..., "--client-key", help="Name of your encryption key in the keystore: the output is sealed to it."),
    amount: int = typer.Option(..., "--amount", min=1, max=UINT96_MAX, help="Escrow in wei (or token base units with --token)."),
    gpus: int = typer.Option(1, "--gpus", min=1, max=255, help="GPUs the job needs."),
    mem: int = typer.Option(16, "--mem", min=1, max=2**16 - 1, help="GPU memory per GPU, GiB."),
    hours: float = typer.Option(24.0, "--hours", min=0.01, max=10**6, help="Deadline: this many hours from now."),
    run_hours: float = typer.Option(6.0, "--run-hours", min=0.001, max=UINT32_MAX // 3600,
                                    help="The worker's run window, from the grant: it is slashed if it holds the data this long "
                                         "without a result. No grant is possible once a full window no longer fits before the deadline."),
    challenge_window: int = typer.Option(3600, "--challenge-window", min=0, max=2**24 - 1,
                                         help="Seconds you have to dispute a submitted result or failure report."),
    token: str = typer.Option(None, "--token", help="Pay in this ERC-20 instead of ETH (approved automatically)."),
    keystore_dir: Path = KEYSTORE,
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    dev_account: int = DEV_ACCOUNT,
    json_out: bool = JSON,
) -> None:
    """Post a fine-tuning job with its escrow; prints the job id.

    Everything is checked before the first transaction (the dataset exists, the token is an ERC-20, the balance
    covers the escrow), so a refused post leaves the chain as it was."""
    from web3 import Web3

    from llmos_chain.basemodel import base_model_hash
    from llmos_chain.chain.contracts import abi, call
    from llmos_chain.chain.market import JobRequest, ZERO_ADDRESS
    from llmos_chain.recipe import Recipe

    # Local checks first: nothing is read from the chain for a request that cannot be right.
    run_time = max(1, int(run_hours * 3600))
    if run_time + POST_SLACK_S > int(hours * 3600):
        raise ConfigError(f"--run-hours ({run_hours}) must fit before the deadline (--hours {hours}), with a minute to spare")
    if recipe_uri is not None:
        check_uri(recipe_uri, "--recipe-uri")
    if token is not None and not Web3.is_address(token):
        raise ConfigError(f"--token must be an address, got {token!r}")
    parsed = Recipe.load(recipe)
    base_hash = base_model_hash(parsed.base_model, parsed.hyper.seed)
    key = keystore(keystore_dir).load_encryption_key(client_key)
    client = acting(rpc, deployment, dev_account)
    w3 = client.suite.w3
    # Then what the contract would refuse, read before anything is sent (approval, client key, post).
    if not call(client.suite.datasets.functions.exists(dataset)):
        raise ConfigError(f"no dataset {dataset} in the DatasetRegistry (--dataset)")
    pay_in = ZERO_ADDRESS
    erc20 = None
    if token is not None:
        pay_in = Web3.to_checksum_address(token)
        if not bytes(w3.eth.get_code(pay_in)):
            raise ConfigError(f"--token {pay_in} has no contract code on this chain: not an ERC-20")
        erc20 = w3.eth.contract(pay_in, abi=abi("TestToken"))  # only the ERC-20 part (balanceOf, allowance, approve) is used
        try:
            balance = int(call(erc20.functions.balanceOf(client.address)))
            allowance = int(call(erc20.functions.allowance(client.address, client.suite.market.address)))
        except ChainError:
            raise ConfigError(f"--token {pay_in} does not answer as an ERC-20 (balanceOf, allowance)") from None
        if balance < amount:
            raise ConfigError(f"{client.address} holds {balance:,} of token {pay_in}, less than the escrow {amount:,}")
    else:
        balance = int(w3.eth.get_balance(client.address))
        if balance < amount:
            raise ConfigError(f"{client.address} holds {balance:,} wei, less than the escrow {amount:,} wei (and gas)")
    now = int(w3.eth.get_block("latest")["timestamp"])
    deadline = now + int(hours * 3600)  # --hours' bound keeps it far inside the contract's 40-bit timestamps
    if erc20 is not None and allowance < amount:
        client.sender.transact(erc20.functions.approve(client.suite.market.address, amount))
    key_id = client.ensure_client_key(key.kind, key.public_bytes())  # registered once, then named by id
    request = JobRequest(dataset, base_hash, parsed.hash(), recipe_uri or recipe.resolve().as_uri(), gpus, mem,
                         deadline, challenge_window, amount, key_id, pay_in, run_time)
    job_id, receipt = client.post_job(request)
    if json_out:
        emit_json({"job": job_id, "tx": tx_hex(receipt), "gas": int(receipt["gasUsed"]), "client_key_id": key_id,
                   "recipe_hash": "0x" + parsed.hash().hex(),
                   "base_model_hash": "0x" + base_hash.hex(), "recipe_uri": request.recipe_uri})
        return
    console.print(f"posted job {job_id} (tx {tx_hex(receipt)}, gas {int(receipt['gasUsed']):,})")


@app.command("status")
def status(
    job: int = JOB,
    watch: bool = typer.Option(False, "--watch", help="Print the state, then each change of state until the job ends (a terminal "
                                                       "state); Ctrl-C stops (exit 130). With --json: one JSON object per line."),
    interval: float = typer.Option(None, "--interval", min=0.1, max=3600,
                                   help="With --watch: seconds between two looks at the chain (default 2)."),
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    json_out: bool = JSON,
) -> None:
    """A job's state, terms and history, from the chain; with --watch, its state as it changes."""
    from llmos_chain.audit import history_row, job_events
    from llmos_chain.chain.market import ZERO_ADDRESS, get_job

    if interval is not None and not watch:
        raise ConfigError("--interval only applies with --watch")
    _, _, suite = open_suite(rpc, deployment)
    if watch:
        _watch(suite, job, 2.0 if interval is None else interval, json_out)
        return
    view = get_job(suite, job)
    history = [history_row(name, log, skip=("jobId",)) for name, log in job_events(suite, job)]
    info = {"job": job, "state": view.state.name.lower(), "state_since": view.since, "client": view.client,
            "worker": None if view.worker == ZERO_ADDRESS else view.worker, "dataset": view.dataset_id, "gpus": view.gpu_count,
            "gpu_mem_gib": view.gpu_mem_gib, "escrow": str(view.escrow), "token": "ETH" if view.token == ZERO_ADDRESS else view.token,
            "deadline": view.deadline, "run_time": view.run_time, "due_at": view.due_at, "latest_start": view.terms.latest_start,
            "challenge_window": view.challenge_window, "client_key_id": view.client_key_id,
            # what every later call passes back, in cast's tuple syntax (IJobMarket.JobTerms order)
            "terms": "(" + ",".join(str(v) for v in view.terms.as_tuple()) + ")", "history": history}
    if json_out:
        emit_json(info)
        return
    deadline = dt.datetime.fromtimestamp(view.deadline, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table(f"Job {job}: {info['state']}", ["field", "value"], [
        ["client", view.client], ["worker", info["worker"] or "—"], ["dataset", view.dataset_id],
        ["needs", f"{view.gpu_count} GPU × {view.gpu_mem_gib} GiB"], ["escrow", f"{view.escrow:,} ({info['token']})"],
        ["deadline", deadline], ["run window", f"{view.run_time:,} s from the grant"]])
    table("History", ["block", "event", "tx"], [[h["block"], h["event"], h["tx"][:18] + "…"] for h in history])


def _watch(suite: Suite, job: int, interval: float, json_out: bool) -> None:
    """Print the job's state now, then each state it is seen in, until a terminal one. The chain is read every
    `interval` seconds: two changes within one interval show as the later state."""
    import time

    from llmos_chain.chain.market import get_job

    last = None
    try:
        while True:
            block = int(suite.w3.eth.block_number)
            view = get_job(suite, job)
            if view.state != last:
                last = view.state
                state = view.state.name.lower()
                if json_out:  # one object per line, flushed: a pipe reader sees each change as it happens
                    emit_line({"job": job, "state": state, "state_since": view.since, "block": block, "terminal": view.state.terminal})
                else:
                    since = dt.datetime.fromtimestamp(view.since, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
                    console.print(f"job {job}: {state} (since {since}, seen at block {block:,})", soft_wrap=True)
            if view.state.terminal:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None  # Ctrl-C is how a watch ends early: no error, no traceback


def _simple(action: str, method: str) -> Any:
    def command(job: int = JOB, rpc: str = RPC, deployment: Path = DEPLOYMENT, dev_account: int = DEV_ACCOUNT,
                json_out: bool = JSON) -> None:
        client = acting(rpc, deployment, dev_account)
        _done(json_out, job, action, getattr(client, method)(job), client)
    return command


app.command("accept", help="Accept a submitted result (the worker's operator is credited the escrow) or a failure report (you are "
                           "credited the escrow). Credits are paid out by `llmos job withdraw`.")(
    _simple("accept", "accept"))
app.command("cancel", help="Cancel a job nobody was granted yet (open or assigned): the escrow is credited to you (withdraw with "
                           "`llmos job withdraw`), the worker released.")(
    _simple("cancel", "cancel"))
app.command("drop", help="Client or dataset owner: send an assigned, ungranted job back to the market (that worker cannot retake it for a grant timeout).")(
    _simple("drop", "drop_assignment"))
app.command("reclaim", help="Expire a job whose worker ran past its run window (slashed), or an assigned job that can no longer start in time.")(
    _simple("reclaim", "reclaim"))
app.command("finalize", help="Anyone: settle a result or failure report after its challenge window, or a dispute after its deadline.")(
    _simple("finalize", "finalize"))
app.command("timeout-grant", help="Anyone: reopen an assigned job whose owner did not grant within the grant timeout.")(
    _simple("timeout-grant", "timeout_grant"))


@app.command("withdraw")
def withdraw(
    token: str = typer.Option("eth", "--token", help="`eth` (default) or the ERC-20's address: which credit to pay out."),
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    dev_account: int = DEV_ACCOUNT,
    json_out: bool = JSON,
) -> None:
    """Pay out your credit in the market: everything the market owes the acting account in one token.

    The market never pays anyone during a job: a cancel, a refund, a settlement, a dispute's bond or a slash only
    credits the account, and this command sends the credit to it (`JobMarket.withdraw`). Nothing to withdraw is an
    error, checked before anything is sent."""
    from web3 import Web3
    from web3.logs import DISCARD

    from llmos_chain.chain.contracts import call
    from llmos_chain.chain.market import ZERO_ADDRESS

    if token.lower() == "eth":
        pay_in, token_name = ZERO_ADDRESS, "ETH"
    elif Web3.is_address(token):
        pay_in = token_name = Web3.to_checksum_address(token)
    else:
        raise ConfigError(f"--token must be `eth` or an ERC-20 address, got {token!r}")
    client = acting(rpc, deployment, dev_account)
    credit = int(call(client.suite.market.functions.credits(pay_in, client.address)))
    if credit == 0:  # what the contract would revert with (JobNothingToWithdraw): said before a transaction is sent
        raise ConfigError(f"nothing to withdraw: {client.address} has no credit in {token_name} in the market "
                          "(JobNothingToWithdraw); credits come from settled, cancelled, refunded or failed jobs")
    receipt = client.withdraw(pay_in)
    events = client.suite.market.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    amount = int(events[0]["args"]["amount"]) if events else credit
    if json_out:
        emit_json({"account": client.address, "token": "eth" if pay_in == ZERO_ADDRESS else pay_in, "amount": str(amount),
                   "tx": tx_hex(receipt), "gas": int(receipt["gasUsed"])})
        return
    unit = "wei" if pay_in == ZERO_ADDRESS else f"base units of {token_name}"
    console.print(f"withdrew {amount:,} {unit} to {client.address} (tx {tx_hex(receipt)}, gas {int(receipt['gasUsed']):,})")


@app.command("dispute")
def dispute(
    job: int = JOB,
    reason: str = typer.Option(..., "--reason", help="Why (its BLAKE3 goes on chain; keep the text for the arbiter)."),
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    dev_account: int = DEV_ACCOUNT,
    json_out: bool = JSON,
) -> None:
    """Dispute a submitted result or failure report within the challenge window, paying the dispute bond.

    The arbiter decides by the dispute deadline; if it stays silent, the worker's claim stands and the bond goes to
    its operator. Upheld: the escrow, the bond and the worker's slashed collateral are credited to
    you (withdraw with `llmos job withdraw`)."""
    client = acting(rpc, deployment, dev_account)
    _done(json_out, job, "dispute", client.dispute(job, blake3.blake3(reason.encode()).digest()), client)


@app.command("fetch")
def fetch_cmd(
    job: int = JOB,
    source: str = typer.Option(..., "--from", help="Result source: the coordinator's API URL or its results directory."),
    client_key: str = typer.Option(..., "--client-key", help="Your encryption key's name (the one the job was posted with)."),
    out: Path = typer.Option(None, "--out", help="Where to write the decrypted model (default: job-<id>.safetensors)."),
    keystore_dir: Path = KEYSTORE,
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    json_out: bool = JSON,
) -> None:
    """Download the job's result, check it against the hashes on chain, unwrap its key, decrypt the model and check it
    is the attested one (the weights hash in the attested metrics); written 0600."""
    from llmos_chain.chain.market import get_job
    from llmos_chain.crypto import stream
    from llmos_chain.crypto.keys import OutputContext, unwrap_key
    from llmos_chain.results import fetch_bundle

    target = check_output_file(out or Path(f"job-{job}.safetensors"), "--out")  # before any download
    _, conn, suite = open_suite(rpc, deployment)
    view = get_job(suite, job)
    submitted = suite.market.events.ResultSubmitted().get_logs(from_block=suite.deployment.start_block, argument_filters={"jobId": job})
    if not submitted:
        raise ConfigError(f"job {job} has no submitted result (state {view.state.name.lower()})")
    key = keystore(keystore_dir).load_encryption_key(client_key)
    with tempfile.TemporaryDirectory(prefix="llmos-fetch-") as tmp:
        bundle = fetch_bundle(source, job, Path(tmp))
        sealed = (bundle / "output.sealed").read_bytes()
        expected = bytes(submitted[-1]["args"]["outputHash"])
        if blake3.blake3(sealed).digest() != expected:
            raise SealedDataError(f"the sealed output from {source} does not match the output hash on chain (0x{expected.hex()})")
        # The decrypted model must be the one the worker attested: metrics.json is bound by the attested metrics
        # hash, and it names the weights' hash.
        metrics_raw = (bundle / "metrics.json").read_bytes() if (bundle / "metrics.json").is_file() else b""
        if blake3.blake3(metrics_raw).digest() != bytes(submitted[-1]["args"]["metricsHash"]):
            raise SealedDataError(f"metrics.json from {source} does not match the metrics hash on chain")
        try:
            weights_hash = str(json.loads(metrics_raw)["weights_hash"])
        except (ValueError, KeyError, TypeError):
            raise SealedDataError("the attested metrics.json names no weights_hash") from None
        context = OutputContext(conn.chain_id, suite.market.address, job, view.client)
        data_key = unwrap_key((bundle / "output.key").read_bytes(), key, context)
        model = stream.open_to_memory(sealed, data_key)
        if "0x" + blake3.blake3(bytes(model)).hexdigest() != weights_hash.lower():
            model[:] = bytes(len(model))
            raise SealedDataError(f"the decrypted model does not hash to the attested weights hash {weights_hash}")
        check_output_file(target, "--out")  # again: it may have changed while downloading
        partial = target.with_name(target.name + ".partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise ConfigError(f"{partial} exists (another fetch in progress, or left over): remove it and retry") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(model))
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    if json_out:
        emit_json({"job": job, "out": str(target), "bytes": len(model), "output_hash": "0x" + expected.hex(), "weights_hash": weights_hash})
        return
    console.print(f"job {job}: verified and decrypted the output model → {target} ({len(model):,} bytes, weights hash {weights_hash})")
