"""One vocabulary across every `--json` output: every command has --json, a job id is `job`, a dataset id `dataset`,
and amounts (wei or token base units) are decimal strings. Checked on the outputs of real runs on anvil."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES
from tests.cli.test_dataset_cli import llmos

#: Keys whose values are amounts of wei or token base units: always decimal strings.
AMOUNT_KEYS = {"amount", "escrow", "refund", "bond", "slashed", "stake"}
#: The old spellings of the ids: never used.
RETIRED_KEYS = {"job_id", "dataset_id", "jobId", "datasetId"}


def _check_vocabulary(data: Any, where: str) -> int:
    """Asserts the vocabulary over a JSON document; returns how many amounts it saw (so a test knows it saw some)."""
    seen = 0
    if isinstance(data, dict):
        for key, value in data.items():
            assert key not in RETIRED_KEYS, f"{where}: `{key}` (say `job` / `dataset`)"
            if key in AMOUNT_KEYS:
                assert isinstance(value, str) and value.isdigit(), f"{where}: `{key}` = {value!r} is not a decimal string"
                seen += 1
            else:
                seen += _check_vocabulary(value, where)
    elif isinstance(data, list):
        seen += sum(_check_vocabulary(item, where) for item in data)
    return seen


def test_every_command_takes_json() -> None:
    from typer.main import get_command

    from llmos_chain.cli.main import app

    missing: list[str] = []

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
            return
        if "--json" not in {opt for param in command.params for opt in getattr(param, "opts", [])}:
            missing.append(" ".join(path))

    walk(get_command(app), [])
    assert not missing, f"commands without --json: {missing}"


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_json_outputs_share_one_vocabulary(tmp_path: Path) -> None:
    from eth_account import Account

    from llmos_chain.chain.connect import ANVIL_DEV_KEYS, connect
    from llmos_chain.chain.devchain import Anvil
    from tests.helpers import deploy_world

    with Anvil() as node:
        world = deploy_world(connect(node.url))
        deployment = tmp_path / "deployment.json"
        world.suite.deployment.save(deployment)
        chain = ["--rpc", node.url, "--deployment", str(deployment)]
        amounts = 0

        def run(*args: str) -> Any:
            out = json.loads(llmos(tmp_path, *args, "--json").stdout)
            nonlocal amounts
            amounts += _check_vocabulary(out, " ".join(args[:2]))
            return out

        # the owner: a dataset (its id is `dataset`)
        src = tmp_path / "d.jsonl"
        src.write_text('{"text": "hi", "label": 0}\n' * 200)
        sealed = tmp_path / "d.sealed"
        key_id = run("dataset", "seal", str(src), str(sealed))["key_id"]
        dataset = run("dataset", "register", str(sealed), "--uri", sealed.as_uri(), *chain, "--dev-account", "2")["dataset"]
        world.dataset_id = dataset

        # the provider: register (amounts as strings), a coordinator pass and an agent pass, each with --json
        run("keys", "generate", "worker")
        worker = Account.from_key(ANVIL_DEV_KEYS[5]).address
        paths = {k: str(tmp_path / k) for k in ("results", "logs", "work")}
        (tmp_path / "coordinator.json").write_text(json.dumps({
            "workers": [{"address": worker, "gpus": 1, "mem_gib": 24, "price_per_gpu_hour_wei": 10**14, "enc_key": "worker",
                         "dev_account": 5}],
            "state": str(tmp_path / "c.db"), "results": paths["results"], "logs": paths["logs"], "work_dir": paths["work"],
            "keystore": str(tmp_path / "keystore")}))
        coordinator = ["--config", str(tmp_path / "coordinator.json"), *chain, "--dev-account", "4"]
        registered = run("coordinator", "register", *coordinator)
        assert registered["workers"][0] == {**registered["workers"][0], "worker": worker, "registered": True, "stake": str(10**18)}
        assert run("coordinator", "register", *coordinator)["workers"][0]["registered"] is False
        job = world.post()  # its recipe URI names no file: the coordinator's pass skips it, a clean pass to report
        step = run("coordinator", "run", *coordinator, "--once", "--no-api")
        assert set(step) >= {"events", "assigned", "started", "finished"} and isinstance(step["events"], int)
        world.assign(job)
        (tmp_path / "agent.json").write_text(json.dumps({"state": str(tmp_path / "a.db"), "keystore": str(tmp_path / "keystore"),
                                                         "grants": {"datasets": {str(dataset): key_id}, "operators": [], "dev_account": 2}}))
        decisions = run("agent", "run", "--config", str(tmp_path / "agent.json"), *chain, "--once")
        assert decisions == {"granted": [job], "refused": [], "accepted": [], "disputed": [], "audit_failed": []}

        # the owner refuses an assigned worker; the client cancels: status and history, the withdrawal, the audit
        dropped = world.post()
        world.assign(dropped)
        assert run("dataset", "drop", str(dataset), "--job", str(dropped), *chain, "--dev-account", "2")["job"] == dropped
        assert run("job", "cancel", str(dropped), *chain, "--dev-account", "3")["job"] == dropped
        status = run("job", "status", str(dropped), *chain)
        assert {h["event"] for h in status["history"]} >= {"JobPosted", "JobReopened", "JobCancelled"}
        cancelled = next(h for h in status["history"] if h["event"] == "JobCancelled")
        assert cancelled["refund"] == status["escrow"]
        assert run("job", "withdraw", *chain, "--dev-account", "3")["amount"] == status["escrow"]
        assert run("audit", str(job), *chain)["job"] == job
        assert amounts >= 5  # stake, escrow, the history's amounts, the withdrawal
        assert Path(run("deploy", "--rpc", node.url, "--out", str(tmp_path / "second.json"))["deployment"]).is_absolute()
