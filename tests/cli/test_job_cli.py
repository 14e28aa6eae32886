"""`llmos job …` on anvil as a client runs it: withdraw pays out what cancel/accept only credit, status --watch
follows a job to its end, and the hashes `recipe hash` / `model hash` print are the ones `job post` puts on chain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES
from tests.cli.test_dataset_cli import ENTRY, llmos
from tests.helpers import PRICE, World, ctrl_c_reaches_it

pytestmark = [pytest.mark.anvil, pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One anvil node with the suite deployed, a registered worker and dataset, and the deployment file."""
    from llmos_chain.chain.connect import connect
    from llmos_chain.chain.devchain import Anvil
    from tests.helpers import deploy_world

    tmp = tmp_path_factory.mktemp("job-cli")
    with Anvil() as node:
        world = deploy_world(connect(node.url))
        world.register_worker()
        world.register_dataset()
        world.suite.deployment.save(tmp / "deployment.json")
        yield {"world": world, "tmp": tmp, "args": ["--rpc", node.url, "--deployment", str(tmp / "deployment.json")]}


def _gas_cost(world: World, tx: str) -> int:
    receipt = world.w3.eth.get_transaction_receipt(tx)  # type: ignore[arg-type]
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def test_cancel_credits_and_withdraw_pays_out_eth(chain: dict[str, Any]) -> None:
    world, tmp, args = chain["world"], chain["tmp"], chain["args"]
    client = world.client.address
    help_text = " ".join(llmos(tmp, "job", "cancel", "--help").stdout.split())
    assert "credited" in help_text and "refunded" not in help_text and "llmos job withdraw" in help_text
    job = world.post()
    llmos(tmp, "job", "cancel", str(job), *args, "--dev-account", "3")
    assert world.credits(client) == PRICE  # cancel only credits: nothing paid yet

    before = world.balance(client)
    out = json.loads(llmos(tmp, "job", "withdraw", *args, "--dev-account", "3", "--json").stdout)
    assert out["amount"] == str(PRICE) and out["token"] == "eth" and out["account"] == client
    assert world.balance(client) == before + PRICE - _gas_cost(world, out["tx"])
    assert world.credits(client) == 0

    again = llmos(tmp, "job", "withdraw", *args, "--dev-account", "3", check=False)
    assert again.returncode == 1 and again.stderr.startswith("error: nothing to withdraw") and len(again.stderr.splitlines()) == 1


def test_withdraw_pays_out_an_erc20_credit(chain: dict[str, Any]) -> None:
    world, tmp, args = chain["world"], chain["tmp"], chain["args"]
    token = world.fund_token()
    job = world.post(token=token.address)
    llmos(tmp, "job", "cancel", str(job), *args, "--dev-account", "3")
    nothing_in_eth = llmos(tmp, "job", "withdraw", *args, "--dev-account", "3", check=False)
    assert nothing_in_eth.returncode == 1 and "no credit in ETH" in nothing_in_eth.stderr
    before = int(token.functions.balanceOf(world.client.address).call())
    out = json.loads(llmos(tmp, "job", "withdraw", "--token", token.address.lower(), *args, "--dev-account", "3", "--json").stdout)
    assert out["token"] == token.address and out["amount"] == str(PRICE)
    assert int(token.functions.balanceOf(world.client.address).call()) == before + PRICE
    text = llmos(tmp, "job", "withdraw", "--token", token.address, *args, "--dev-account", "3", check=False)
    assert text.returncode == 1 and f"no credit in {token.address}" in text.stderr


def _watch(chain: dict[str, Any], job: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*ENTRY, "job", "status", str(job), "--watch", "--interval", "0.2", *chain["args"], *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "60"},
                            preexec_fn=ctrl_c_reaches_it)


def test_status_watch_prints_each_state_until_the_end(chain: dict[str, Any]) -> None:
    world = chain["world"]
    job = world.post()
    proc = _watch(chain, job, "--json")
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # one compact object per line
        assert first["job"] == job and first["state"] == "open" and first["terminal"] is False
        world.assign(job)
        assert json.loads(proc.stdout.readline())["state"] == "assigned"
        world.act(world.client).cancel(job)
        last = json.loads(proc.stdout.readline())
        assert last["state"] == "cancelled" and last["terminal"] is True and last["block"] >= first["block"]
        assert proc.wait(timeout=30) == 0 and proc.stdout.read() == ""
    finally:
        proc.kill()
    # a job already over: its state, once, and done
    ended = llmos(chain["tmp"], "job", "status", str(job), "--watch", *chain["args"])
    assert ended.stdout.count(f"job {job}: cancelled") == 1 and len(ended.stdout.splitlines()) == 1


def test_status_watch_ends_cleanly_on_ctrl_c(chain: dict[str, Any]) -> None:
    job = chain["world"].post()
    proc = _watch(chain, job)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"job {job}: open")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()


def test_interval_without_watch_is_refused(chain: dict[str, Any]) -> None:
    proc = llmos(chain["tmp"], "job", "status", "1", "--interval", "1", *chain["args"], check=False)
    assert proc.returncode == 1 and "--interval only applies with --watch" in proc.stderr


def test_recipe_and_model_hash_are_what_job_post_puts_on_chain(chain: dict[str, Any]) -> None:
    """A wallet user posting with cast computes the two hashes with these commands: they must be the posted ones."""
    from llmos_chain.chain.market import get_job

    world, tmp, args = chain["world"], chain["tmp"], chain["args"]
    recipe = Path(__file__).resolve().parents[2] / "examples" / "recipe-intents-lora.json"
    llmos(tmp, "keys", "generate", "client")
    posted = json.loads(llmos(tmp, "job", "post", "--dataset", str(world.dataset_id), "--recipe", str(recipe), "--client-key", "client",
                              "--amount", "1000", *args, "--dev-account", "3", "--json").stdout)
    on_chain = get_job(world.suite, posted["job"])

    recipe_hash = llmos(tmp, "recipe", "hash", str(recipe)).stdout.strip()
    described = json.loads(llmos(tmp, "recipe", "hash", str(recipe), "--json").stdout)
    assert recipe_hash == described["recipe_hash"] == "0x" + on_chain.recipe_hash.hex()
    spec = json.dumps(described["base_model"])
    model_hash = llmos(tmp, "model", "hash", spec, "--seed", str(described["seed"])).stdout.strip()
    assert model_hash == json.loads(llmos(tmp, "model", "hash", spec, "--json").stdout)["base_model_hash"]
    assert model_hash == "0x" + on_chain.base_model_hash.hex()
    # and the terms a wallet passes back to accept or cancel, as `job status --json` gives them for cast
    terms = json.loads(llmos(tmp, "job", "status", str(posted["job"]), *args, "--json").stdout)["terms"]
    fields = terms.strip("()").split(",")
    assert len(fields) == 11 and fields[0] == world.client.address and int(fields[3]) == 1000
    assert tuple(int(v) if not v.startswith("0x") else v for v in fields) == on_chain.terms.as_tuple()


def test_a_random_init_models_hash_depends_on_the_seed(tmp_path: Path) -> None:
    spec = '{"kind": "config", "name": "tiny-gpt2"}'
    seeds = {llmos(tmp_path, "model", "hash", spec, "--seed", str(seed)).stdout.strip() for seed in (0, 1)}
    assert len(seeds) == 2 and all(len(bytes.fromhex(h[2:])) == 32 for h in seeds)
