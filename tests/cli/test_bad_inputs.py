"""Every command a person types, given bad input: a non-zero exit, one clear line, no traceback, nothing changed.

One table of bad invocations across every command group. Each row runs `llmos` (in-process through
`llmos_chain.cli.main.main`, or as a real subprocess where marked) in a sandbox directory that holds a keystore,
sealed files, config files and, for chain rows, the deployment file of a suite on one anvil node; every row must:

* exit non-zero;
* print one clear message on stderr, by this rule:
  - exit 1 (an LlmosError, printed by `main()`): stderr is exactly one non-empty line, starting with ``error:``;
  - exit 2 (a usage error typer/click caught before our code ran: a bad type, a value out of range, a missing
    option): stderr is click's usage block, a ``Usage:`` line, a ``Try '… --help'`` line and one boxed message
    titled ``Error``. The box may wrap over several lines; it is one message. Any other exit code fails the row;
  - either way the message names the problem: it contains the row's `expect` fragment (case-insensitive, box
    borders and line breaks removed), so a row cannot pass on an unrelated error;
* show no ``Traceback`` on stdout or stderr (in-process: no exception but SystemExit leaves `main()`);
* change nothing: every file under the sandbox (names, bytes, modes) is as before, and on chain rows the node's
  block number and the balances of the dev accounts and of the market are as before.

Rows marked `sub` run as subprocesses (the honest check that nothing prints a traceback, used for every row of the
issue's list and a share of the rest); the others run in-process, which is what keeps the file fast.

The issue ("Off-chain trust", section "Every command a person types") listed bad inputs that raised a traceback and
others that were accepted; the rows that cover them carry `item=N`, and each of them fails on the code before the fix
(how, in brackets):

 1 LLMOS_RPC_TIMEOUT_S=abc              env-rpc-timeout-not-a-number     [pydantic traceback]
 2 job post --amount -5                 post-amount-negative             [web3 traceback]
 3 job post --amount above uint96       post-amount-over-uint96          [web3 traceback]
 4 job post --token with no code        post-token-without-code          [BadFunctionCallOutput traceback]
 5 --dev-account 99                     post-dev-account-99              [IndexError traceback]
 6 job fetch --out in a missing dir     fetch-out-in-missing-directory   [--out was checked only after downloading and
                                                                           decrypting: the error named another cause]
 7 devnet --port 99999                  devnet-port-out-of-range         [OverflowError traceback]
 8 job post --dataset 999               post-unknown-dataset             [a client-key registration was mined before
                                                                           the JobUnknownDataset revert]
 9 dataset register --uri notauri       register-uri-not-a-uri           [exit 0, a dataset registered]
10 dataset inspect, hash != manifest    inspect-differs-from-manifest    [exit 0]
11 keys list, missing keystore          keys-list-missing-keystore       [exit 0, an empty table]
12 bench alloc --time-limit -1          alloc-time-limit-negative        [exit 0]
13 dataset seal over a sealed file      seal-over-a-sealed-file,         [exit 0, the file and manifest replaced under
                                        seal-over-a-lone-manifest          a new key]
14 coordinator run, API port taken      coordinator-run-api-port-taken   [kept running, state file and logs created]
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "examples" / "recipe-intents-lora.json"
UINT96_OVER = str(2**96)  # one above the escrow's uint96
UINT256_OVER = str(2**256)
NO_CODE = "0x000000000000000000000000000000000000dEaD"  # an address with no contract


@dataclass(frozen=True)
class Row:
    """One bad invocation. `cmd` is split like a shell line; `{name}` placeholders come from the sandbox and the chain,
    and a lone `{chain}` token stands for `--rpc URL --deployment FILE`."""

    id: str
    cmd: str
    expect: str
    chain: bool = False  # needs the anvil node (marked `anvil`)
    sub: bool = False  # run as a subprocess
    env: dict[str, str] = field(default_factory=dict)
    item: int | None = None  # the item this row covers
    timeout: float = 90.0


ROWS: list[Row] = [
    # ---- the environment (settings are read by every command that touches a keystore or a chain)
    Row("env-rpc-timeout-not-a-number", "keys list", "LLMOS_RPC_TIMEOUT_S", env={"LLMOS_RPC_TIMEOUT_S": "abc"}, sub=True, item=1),
    Row("env-rpc-timeout-negative", "job status 1 {chain}", "LLMOS_RPC_TIMEOUT_S", env={"LLMOS_RPC_TIMEOUT_S": "-3"}, chain=True),
    Row("env-rpc-url-not-a-url", "job status 1 --deployment {dep}", "not an RPC URL", env={"LLMOS_RPC_URL": "nope"}),
    Row("env-private-key-bad", "job cancel {open_job} {chain}", "LLMOS_PRIVATE_KEY", env={"LLMOS_PRIVATE_KEY": "0x1234"}, chain=True),
    Row("env-deployment-missing", "job status 1 --rpc {rpc}", "deployment file not found",
        env={"LLMOS_DEPLOYMENT": "{sb}/nope.json"}, chain=True),
    # ---- the root
    Row("root-unknown-command", "nosuchcommand", "No such command", sub=True),
    Row("root-unknown-option", "--bogus", "No such option"),
    # ---- demo
    Row("demo-rpc-not-a-url", "demo --rpc notaurl", "not an RPC URL"),
    Row("demo-rpc-unreachable", "demo --rpc http://127.0.0.1:9", "no JSON-RPC node answers"),
    Row("demo-workdir-is-a-file", "demo --workdir {sb}/d.jsonl --rpc http://127.0.0.1:9", "not a directory", sub=True),
    # ---- audit
    Row("audit-unknown-job", "audit 999 {chain}", "JobNotFound", chain=True),
    Row("audit-bundle-and-from", "audit {sub_job} --bundle {sb}/results --from {sb}/results {chain}", "not both", chain=True),
    Row("audit-bundle-missing", "audit {sub_job} --bundle {sb}/nobundle {chain}", "not a directory", chain=True),
    Row("audit-no-chain", "audit 1", "needs a lasting chain"),
    Row("audit-job-over-uint256", "audit " + UINT256_OVER + " {chain}", "invalid value for 'job'", chain=True),
    # ---- deploy: every parameter is checked before the first contract goes out
    Row("deploy-rpc-not-a-url", "deploy --rpc localhost:8545 --out {sb}/x.json", "not an RPC URL"),
    Row("deploy-arbiter-not-an-address", "deploy --rpc {rpc} --arbiter nope --out {sb}/x.json", "--arbiter", chain=True, sub=True),
    Row("deploy-zero-collateral", "deploy --rpc {rpc} --collateral-per-gpu 0 --out {sb}/x.json", "--allow-zero-collateral", chain=True),
    Row("deploy-collateral-not-gwei", "deploy --rpc {rpc} --collateral-per-gpu 1 --out {sb}/x.json", "gwei", chain=True),
    Row("deploy-collateral-negative", "deploy --rpc {rpc} --collateral-per-gpu -1 --out {sb}/x.json", "--collateral-per-gpu", chain=True),
    Row("deploy-bond-over-uint256", "deploy --rpc {rpc} --dispute-bond " + UINT256_OVER + " --out {sb}/x.json", "--dispute-bond", chain=True),
    Row("deploy-out-is-a-directory", "deploy --rpc {rpc} --out {sb}/results", "is a directory", chain=True),
    # ---- devnet (all refused before anvil starts)
    Row("devnet-port-out-of-range", "devnet --port 99999 --out {sb}/x.json", "--port", sub=True, item=7),
    Row("devnet-port-zero", "devnet --port 0 --out {sb}/x.json", "--port", sub=True),
    Row("devnet-port-in-use", "devnet --port {busy_port} --out {sb}/x.json", "in use", sub=True),
    Row("devnet-block-time-negative", "devnet --block-time -1 --port {free_port} --out {sb}/x.json", "--block-time", sub=True),
    Row("devnet-out-is-a-directory", "devnet --port {free_port} --out {sb}/results", "is a directory", sub=True),
    # ---- job post: everything is checked before the first transaction
    Row("post-amount-negative", "job post --dataset {dataset} --recipe {recipe} --client-key client --amount -5 {chain}",
        "--amount", chain=True, sub=True, item=2),
    Row("post-amount-over-uint96", "job post --dataset {dataset} --recipe {recipe} --client-key client --amount " + UINT96_OVER + " {chain}",
        "--amount", chain=True, sub=True, item=3),
    Row("post-token-without-code", "job post --dataset {dataset} --recipe {recipe} --client-key client --amount 5 --token " + NO_CODE + " {chain}",
        "no contract code", chain=True, sub=True, item=4),
    Row("post-dev-account-99", "job post --dataset {dataset} --recipe {recipe} --client-key client --amount 5 {chain} --dev-account 99",
        "no dev account 99", chain=True, sub=True, item=5),
    # account 7 with a key nobody registered: before the fix the key's registration was mined before the revert
    Row("post-unknown-dataset", "job post --dataset 999 --recipe {recipe} --client-key fresh --amount 5 {chain} --dev-account 7",
        "no dataset 999", chain=True, sub=True, item=8),
    Row("post-amount-zero", "job post --dataset {dataset} --recipe {recipe} --client-key fresh --amount 0 {chain} --dev-account 7", "--amount", chain=True),
    Row("post-dataset-negative", "job post --dataset -1 --recipe {recipe} --client-key client --amount 5 {chain}", "--dataset", chain=True),
    Row("post-mem-over-uint16", "job post --dataset {dataset} --recipe {recipe} --client-key client --amount 5 --mem 70000 {chain}", "--mem", chain=True),
    Row("post-hours-huge", "job post --dataset {dataset} --recipe {recipe} --client-key client --amount 5 --hours 1e9 {chain}", "--hours", chain=True),
    Row("post-run-window-equals-deadline", "job post --dataset {dataset} --recipe {recipe} --client-key fresh --amount 5 --hours 6 --run-hours 6 {chain} --dev-account 7",
        "--run-hours", chain=True),
    Row("post-dev-account-negative", "job post --dataset {dataset} --recipe {recipe} --client-key client --amount 5 {chain} --dev-account -1",
        "--dev-account", chain=True),
    Row("post-more-than-the-balance", "job post --dataset {dataset} --recipe {recipe} --client-key fresh --amount " + str(2**96 - 1) + " {chain} --dev-account 7",
        "less than the escrow", chain=True),
    Row("post-token-not-an-address", "job post --dataset {dataset} --recipe {recipe} --client-key client --amount 5 --token nothex {chain}", "--token", chain=True),
    Row("post-recipe-uri-not-a-uri", "job post --dataset {dataset} --recipe {recipe} --client-key fresh --amount 5 --recipe-uri notauri {chain} --dev-account 7",
        "--recipe-uri", chain=True),
    Row("post-recipe-missing", "job post --dataset {dataset} --recipe {sb}/nope.json --client-key client --amount 5 {chain}", "not found", chain=True),
    Row("post-recipe-not-json", "job post --dataset {dataset} --recipe {sb}/d.jsonl --client-key client --amount 5 {chain}", "invalid recipe", chain=True),
    Row("post-client-key-missing", "job post --dataset {dataset} --recipe {recipe} --client-key nokey --amount 5 {chain}", "nokey", chain=True),
    Row("post-no-chain", "job post --dataset 1 --recipe {recipe} --client-key client --amount 5", "needs a lasting chain"),
    # ---- job status / accept / cancel / drop / reclaim / finalize / timeout-grant / dispute
    Row("status-unknown-job", "job status 999 {chain}", "JobNotFound", chain=True, sub=True),
    Row("status-job-not-a-number", "job status abc {chain}", "invalid value for 'job'", chain=True),
    Row("status-job-over-uint256", "job status " + UINT256_OVER + " {chain}", "invalid value for 'job'", chain=True),
    Row("status-watch-interval-zero", "job status {open_job} --watch --interval 0 {chain}", "--interval", chain=True),
    Row("status-interval-without-watch", "job status {open_job} --interval 1 {chain}", "only applies with --watch", chain=True),
    Row("accept-open-job", "job accept {open_job} {chain} --dev-account 3", "JobInvalidState", chain=True),
    Row("accept-unknown-job", "job accept 999 {chain} --dev-account 3", "JobNotFound", chain=True),
    Row("cancel-not-the-client", "job cancel {open_job} {chain} --dev-account 6", "JobNotClient", chain=True, sub=True),
    Row("drop-open-job", "job drop {open_job} {chain} --dev-account 3", "JobInvalidState", chain=True),
    Row("reclaim-open-job", "job reclaim {open_job} {chain}", "JobInvalidState", chain=True),
    Row("finalize-open-job", "job finalize {open_job} {chain}", "JobInvalidState", chain=True),
    Row("timeout-grant-open-job", "job timeout-grant {open_job} {chain}", "JobInvalidState", chain=True),
    Row("dispute-open-job", "job dispute {open_job} --reason bad {chain} --dev-account 3", "JobInvalidState", chain=True),
    Row("withdraw-nothing-to-withdraw", "job withdraw {chain} --dev-account 6", "nothing to withdraw", chain=True, sub=True),
    Row("withdraw-token-not-an-address", "job withdraw --token nothex {chain} --dev-account 6", "--token", chain=True),
    Row("withdraw-no-chain", "job withdraw", "needs a lasting chain"),
    Row("dispute-no-reason", "job dispute {sub_job} {chain} --dev-account 3", "--reason", chain=True),
    # ---- job fetch: --out is checked before anything is downloaded (before the fix: only after downloading and
    # decrypting, so here the error named another cause)
    Row("fetch-out-in-missing-directory", "job fetch {sub_job} --from {sb}/results --client-key client --out {sb}/missing/model.safetensors {chain}",
        "--out", chain=True, sub=True, item=6),
    Row("fetch-out-is-a-directory", "job fetch {sub_job} --from {sb}/results --client-key client --out {sb}/results {chain}", "is a directory", chain=True),
    Row("fetch-no-result", "job fetch {open_job} --from {sb}/results --client-key client --out {sb}/m.safetensors {chain}", "no submitted result", chain=True),
    # ---- agent run (state file, keys: nothing is created on a refusal)
    Row("agent-config-missing", "agent run --config {sb}/nope.json {chain}", "not found", chain=True, sub=True),
    Row("agent-config-not-json", "agent run --config {sb}/bad.json {chain}", "not JSON", chain=True),
    Row("agent-config-no-roles", "agent run --config {sb}/agent-empty.json {chain}", "grants", chain=True),
    Row("agent-dev-account-99", "agent run --config {sb}/agent-dev99.json {chain}", "no dev account 99", chain=True, sub=True),
    Row("agent-key-env-unset", "agent run --config {sb}/agent-env.json {chain}", "NOPE_KEY", chain=True, sub=True),
    Row("agent-unknown-field", "agent run --config {sb}/agent-extra.json {chain}", "surprise", chain=True),
    # ---- arbiter run / verify
    Row("arbiter-config-missing", "arbiter run --config {sb}/nope.json {chain}", "not found", chain=True),
    Row("arbiter-config-incomplete", "arbiter run --config {sb}/agent-empty.json {chain}", "encryption_key", chain=True),
    Row("verify-unknown-key", "verify 1 --key nokey", "nokey"),
    Row("verify-negative-job", "verify -1 --key client", "no such option: -1"),
    Row("verify-negative-interval", "verify 1 --key client --interval -2", "--interval"),
    # ---- coordinator register / run / serve (no state file, no log directory on a refusal)
    Row("coordinator-run-config-missing", "coordinator run --config {sb}/nope.json {chain}", "not found", chain=True),
    Row("coordinator-run-no-workers", "coordinator run --config {sb}/coord-empty.json {chain}", "workers", chain=True, sub=True),
    Row("coordinator-run-worker-dev-account-99", "coordinator run --config {sb}/coord-dev99.json {chain}", "no dev account 99", chain=True, sub=True),
    Row("coordinator-run-signer-mismatch", "coordinator run --config {sb}/coord-mismatch.json {chain}", "another address", chain=True),
    Row("coordinator-run-api-port-taken", "coordinator run --config {sb}/coord-busy.json {chain} --dev-account 4", "in use",
        chain=True, sub=True, item=14, timeout=25.0),
    Row("coordinator-serve-api-port-taken", "coordinator serve --config {sb}/coord-busy.json {chain} --dev-account 4", "in use",
        chain=True, sub=True, timeout=25.0),
    Row("coordinator-register-stake-negative", "coordinator register --config {sb}/coord-new.json {chain} --dev-account 4 --stake-eth -1",
        "--stake-eth", chain=True),
    Row("coordinator-register-stake-nan", "coordinator register --config {sb}/coord-new.json {chain} --dev-account 4 --stake-eth nan",
        "--stake-eth", chain=True),
    Row("coordinator-register-enc-key-missing", "coordinator register --config {sb}/coord-nokey.json {chain} --dev-account 4", "nokey", chain=True),
    # ---- dataset seal / inspect / open
    Row("seal-src-missing", "dataset seal {sb}/nope.jsonl {sb}/n.sealed", "no such file"),
    Row("seal-chunk-size-zero", "dataset seal {sb}/d.jsonl {sb}/n.sealed --chunk-size 0", "--chunk-size"),
    Row("seal-key-id-malformed", "dataset seal {sb}/d.jsonl {sb}/n.sealed --key-id zz", "invalid data key id"),
    Row("seal-key-id-unknown", "dataset seal {sb}/d.jsonl {sb}/n.sealed --key-id " + "0" * 32, "no data key"),
    Row("seal-dst-in-missing-directory", "dataset seal {sb}/d.jsonl {sb}/missing/n.sealed", "does not exist"),
    Row("seal-over-a-sealed-file", "dataset seal {sb}/d.jsonl {sb}/d.sealed", "already exists", sub=True, item=13),
    Row("seal-over-a-lone-manifest", "dataset seal {sb}/d.jsonl {sb}/lone.sealed", "already exists", item=13),
    Row("seal-onto-its-source-forced", "dataset seal {sb}/d.jsonl {sb}/d.jsonl --force", "would overwrite"),
    Row("inspect-missing", "dataset inspect {sb}/nope.sealed", "not found"),
    Row("inspect-not-sealed", "dataset inspect {sb}/d.jsonl", "not a llmos sealed file"),
    Row("inspect-a-directory", "dataset inspect {sb}/results", "is a directory"),
    Row("inspect-differs-from-manifest", "dataset inspect {sb}/t.sealed", "does not match its manifest", sub=True, item=10),
    Row("open-tampered", "dataset open {sb}/t.sealed --key-id {key_id} --out {sb}/o.jsonl", "mismatch"),
    Row("open-unknown-key", "dataset open {sb}/d.sealed --key-id " + "0" * 32 + " --out {sb}/o.jsonl", "no data key"),
    Row("open-out-in-missing-directory", "dataset open {sb}/d.sealed --key-id {key_id} --out {sb}/missing/o.jsonl", "does not exist", sub=True),
    Row("open-out-is-a-directory", "dataset open {sb}/d.sealed --key-id {key_id} --out {sb}/results", "is a directory"),
    Row("open-remote-without-hash", "dataset open http://127.0.0.1:9/x.sealed --key-id {key_id} --out {sb}/o.jsonl", "--cipher-hash"),
    Row("open-cipher-hash-malformed", "dataset open {sb}/d.sealed --key-id {key_id} --out {sb}/o.jsonl --cipher-hash 0x12", "--cipher-hash"),
    # ---- dataset register / grant / drop
    Row("register-uri-not-a-uri", "dataset register {sb}/d.sealed --uri notauri {chain} --dev-account 2", "--uri", chain=True, sub=True, item=9),
    Row("register-uri-ftp", "dataset register {sb}/d.sealed --uri ftp://host/d.sealed {chain} --dev-account 2", "--uri", chain=True),
    Row("register-uri-relative-file", "dataset register {sb}/d.sealed --uri file:d.sealed {chain} --dev-account 2", "--uri", chain=True),
    Row("register-tampered", "dataset register {sb}/t.sealed --uri file:///data/t.sealed {chain} --dev-account 2", "mismatch", chain=True),
    Row("register-no-manifest", "dataset register {sb}/d.jsonl --uri file:///data/d.jsonl {chain} --dev-account 2", "no manifest", chain=True),
    Row("register-dev-account-99", "dataset register {sb}/d.sealed --uri file:///data/d.sealed {chain} --dev-account 99", "no dev account 99", chain=True),
    Row("grant-other-dataset", "dataset grant 999 --job {open_job} --key-id {key_id} {chain} --dev-account 2", "not 999", chain=True),
    Row("grant-unknown-job", "dataset grant {dataset} --job 999 --key-id {key_id} {chain} --dev-account 2", "JobNotFound", chain=True),
    Row("grant-open-job", "dataset grant {dataset} --job {open_job} --key-id {key_id} {chain} --dev-account 2", "not assigned", chain=True),
    Row("grant-job-negative", "dataset grant {dataset} --job -1 --key-id {key_id} {chain} --dev-account 2", "--job", chain=True),
    Row("drop-other-dataset", "dataset drop 5 --job {open_job} {chain} --dev-account 2", "not 5", chain=True),
    Row("drop-open-job-as-owner", "dataset drop {dataset} --job {open_job} {chain} --dev-account 2", "JobInvalidState", chain=True),
    Row("drop-unknown-job", "dataset drop {dataset} --job 999 {chain} --dev-account 2", "JobNotFound", chain=True),
    # ---- recipe hash / model hash
    Row("recipe-hash-missing", "recipe hash {sb}/nope.json", "not found"),
    Row("recipe-hash-not-json", "recipe hash {sb}/d.jsonl", "invalid recipe", sub=True),
    Row("recipe-hash-directory", "recipe hash {sb}/results", "is a directory"),
    Row("model-hash-not-json", "model hash notjson", "invalid base model SPEC", sub=True),
    Row("model-hash-unknown-kind", "model hash '{{\"kind\": \"nope\"}}'", "kind"),
    Row("model-hash-unknown-config", "model hash '{{\"kind\": \"config\", \"name\": \"huge\"}}'", "unknown model config"),
    Row("model-hash-local-missing", "model hash '{{\"kind\": \"local\", \"path\": \"{sb}/nomodel\"}}'", "not found"),
    Row("model-hash-seed-negative", "model hash '{{\"kind\": \"config\", \"name\": \"tiny-bert\"}}' --seed -1", "--seed"),
    # ---- keys
    Row("keys-generate-existing", "keys generate client", "never overwrites"),
    Row("keys-generate-bad-name", "keys generate a/b", "invalid key name"),
    Row("keys-generate-bad-kind", "keys generate x --kind foo", "--kind"),
    Row("keys-list-missing-keystore", "keys list --keystore {sb}/nope", "no keystore", sub=True, item=11),
    Row("keys-list-keystore-is-a-file", "keys list --keystore {sb}/d.jsonl", "not a directory"),
    Row("keys-export-missing", "keys export nokey", "nokey"),
    Row("keys-export-missing-keystore", "keys export client --keystore {sb}/nope", "no keystore"),
    # ---- bench
    Row("alloc-time-limit-negative", "bench alloc --time-limit -1 --sizes 10x2", "--time-limit", sub=True, item=12),
    Row("alloc-time-limit-zero", "bench alloc --time-limit 0 --sizes 10x2", "--time-limit"),
    Row("alloc-sizes-garbage", "bench alloc --sizes abc", "--sizes"),
    Row("alloc-sizes-zero-jobs", "bench alloc --sizes 0x5", "--sizes"),
    Row("gas-extra-argument", "bench gas extra", "unexpected extra argument"),
    Row("crypto-unknown-option", "bench crypto --bogus", "No such option"),
    Row("pipeline-zero-jobs", "bench pipeline --jobs 0", "--jobs", sub=True),
    Row("finetune-zero-steps", "bench finetune --steps 0", "--steps"),
    Row("scale-zero-ranks", "bench scale --ranks 0", "--ranks"),
    Row("scale-batch-below-ranks", "bench scale --ranks 4 --batch-size 2", "cannot be split"),
    Row("scale-unknown-model", "bench scale --model gpt-17", "tiny-bert or minilm-l6"),
    Row("soak-zero-jobs", "bench soak --jobs 0", "--jobs"),
    Row("startup-zero-runs", "bench startup --runs 0", "--runs"),
    Row("bench-serve-zero-seconds", "bench serve --seconds 0", "--seconds"),
    Row("bench-verify-one-interval", "bench verify --intervals 1", "--intervals"),
    # ---- serve
    Row("serve-port-out-of-range", "serve --job 1 --client-key client --port 70000", "--port"),
    Row("serve-job-over-uint256", "serve --job " + UINT256_OVER + " --client-key client", "--job"),
    Row("serve-unknown-client-key", "serve --job {sub_job} --client-key nosuchkey {chain}", "nosuchkey", chain=True),
    Row("startup-baseline-not-a-checkout", "bench startup --runs 1 --baseline .", "holds no llmos_chain", sub=True),
]

ITEMS = {row.item for row in ROWS if row.item is not None}
assert ITEMS == set(range(1, 15)), f"every item of the issue needs a row: missing {set(range(1, 15)) - ITEMS}"
assert len({row.id for row in ROWS}) == len(ROWS)

HAS_ANVIL = ANVIL_IN_NODE_MODULES.exists()


def _params() -> list[Any]:
    needs_anvil = [pytest.mark.anvil, pytest.mark.skipif(not HAS_ANVIL, reason="needs anvil from `npm ci` (make setup)")]
    return [pytest.param(row, id=row.id, marks=needs_anvil if row.chain else []) for row in ROWS]


# ------------------------------------------------------------------------------------------------ the sandbox


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files the rows point at: a keystore with keys, a sealed file, a tampered copy, configs. Rows must not touch it."""
    from llmos_chain.crypto.keys import EncryptionKey, Keystore
    from llmos_chain.datasets import seal_dataset

    sb = tmp_path_factory.mktemp("bad-inputs")
    store = Keystore(sb / "ks")
    store.save_encryption_key("client", EncryptionKey.generate())
    store.save_encryption_key("fresh", EncryptionKey.generate())  # never registered on chain by anyone
    (sb / "d.jsonl").write_text("".join(json.dumps({"text": f"order {i}", "label": i % 3}) + "\n" for i in range(200)))
    manifest = seal_dataset(sb / "d.jsonl", sb / "d.sealed", store, chunk_size=1024)
    shutil.copyfile(sb / "d.sealed", sb / "t.sealed")
    shutil.copyfile(sb / "d.sealed.json", sb / "t.sealed.json")
    tampered = bytearray((sb / "t.sealed").read_bytes())
    tampered[-7] ^= 0x01
    (sb / "t.sealed").write_bytes(bytes(tampered))
    shutil.copyfile(sb / "d.sealed.json", sb / "lone.sealed.json")  # a manifest whose sealed file was moved away
    (sb / "results").mkdir()
    (sb / "bad.json").write_text("not json\n")
    _write_json(sb / "agent-empty.json", {})
    _write_json(sb / "agent-dev99.json", {"state": str(sb / "agent.db"), "grants": {"datasets": {"1": manifest.key_id}, "dev_account": 99}})
    _write_json(sb / "agent-env.json", {"state": str(sb / "agent.db"), "grants": {"datasets": {"1": manifest.key_id}, "key_env": "NOPE_KEY"}})
    _write_json(sb / "agent-extra.json", {"state": str(sb / "agent.db"), "surprise": 1, "grants": {"datasets": {}}})
    from eth_account import Account

    from llmos_chain.chain.connect import ANVIL_DEV_KEYS

    addresses = [Account.from_key(k).address for k in ANVIL_DEV_KEYS]
    paths = {"state": str(sb / "c.db"), "results": str(sb / "results"), "logs": str(sb / "logs"), "work_dir": str(sb / "work"),
             "keystore": str(sb / "ks")}

    def worker(index: int, **extra: Any) -> dict[str, Any]:
        return {"address": addresses[index], "gpus": 1, "mem_gib": 24, "price_per_gpu_hour_wei": 10**14, "enc_key": "client",
                "dev_account": index, **extra}

    _write_json(sb / "coord-empty.json", {"workers": [], **paths})
    _write_json(sb / "coord-dev99.json", {"workers": [worker(5, dev_account=99)], **paths})
    _write_json(sb / "coord-mismatch.json", {"workers": [worker(5, dev_account=8)], **paths})
    _write_json(sb / "coord-new.json", {"workers": [worker(8)], **paths})  # a worker not registered yet
    _write_json(sb / "coord-nokey.json", {"workers": [worker(8, enc_key="nokey")], **paths})
    return {"sb": str(sb), "recipe": str(RECIPE), "key_id": manifest.key_id}


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port something already listens on (as another coordinator's API, or another node, would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chain(sandbox: dict[str, str], busy_port: int) -> Iterator[dict[str, Any]]:
    """One anvil node with the suite deployed: a registered worker and dataset, an open job and a submitted one."""
    from llmos_chain.chain.connect import connect
    from llmos_chain.chain.devchain import Anvil
    from tests.helpers import deploy_world

    sb = Path(sandbox["sb"])
    with Anvil() as node:
        world = deploy_world(connect(node.url))
        world.register_worker()
        world.register_dataset()
        open_job = world.post()
        sub_job = world.submitted_job()
        world.suite.deployment.save(sb / "deployment.json")
        worker5 = json.loads((sb / "coord-mismatch.json").read_text())["workers"][0]
        _write_json(sb / "coord-busy.json", {**json.loads((sb / "coord-new.json").read_text()), "api_port": busy_port,
                                             "workers": [{**worker5, "dev_account": 5}]})
        yield {"rpc": node.url, "dep": str(sb / "deployment.json"), "world": world, "dataset": world.dataset_id,
               "open_job": open_job, "sub_job": sub_job}


# ------------------------------------------------------------------------------------------------ running and checking


@dataclass
class Outcome:
    code: int | str
    stdout: str
    stderr: str


def _argv(row: Row, values: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for token in shlex.split(row.cmd):
        if token == "{chain}":
            argv += ["--rpc", str(values["rpc"]), "--deployment", str(values["dep"])]
        else:
            argv.append(token.format(**values))
    return argv


def _environment(row: Row, values: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")}
    env["LLMOS_KEYSTORE"] = str(Path(values["sb"]) / "ks")
    env.update({k: v.format(**values) for k, v in row.env.items()})
    return env


def _run_subprocess(argv: list[str], env: dict[str, str], cwd: str, timeout: float) -> Outcome:
    proc = subprocess.Popen([sys.executable, "-m", "llmos_chain.cli.main", *argv], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Outcome(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # a daemon (or devnet's anvil) stops cleanly on SIGTERM
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return Outcome(f"still running after {timeout:.0f} s (stopped)", out, err)


def _run_in_process(argv: list[str], env: dict[str, str], cwd: str, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """`main()` as the `llmos` script runs it, with its streams captured; an exception other than SystemExit
    leaving it is what a user would see as a traceback."""
    from llmos_chain.cli.main import main

    for key in [k for k in os.environ if k.startswith("LLMOS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("LLMOS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["llmos", *argv])
    out, err = io.StringIO(), io.StringIO()
    code: int | str
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - what the user would have seen
            err.write(traceback.format_exc())
            code = "uncaught exception"
    return Outcome(code, out.getvalue(), err.getvalue())


def _file_state(root: Path) -> dict[str, tuple[str, ...]]:
    """Every entry under `root`: its kind, mode and (for files) a hash of its bytes."""
    state: dict[str, tuple[str, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            state[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            state[rel] = ("dir", oct(info.st_mode & 0o7777))
        else:
            state[rel] = ("file", oct(info.st_mode & 0o7777), hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def _chain_state(chain: dict[str, Any]) -> dict[str, int]:
    world = chain["world"]
    w3 = world.w3
    state = {"block": int(w3.eth.block_number), "market": int(w3.eth.get_balance(world.suite.market.address))}
    state.update({a.address: int(w3.eth.get_balance(a.address)) for a in world.accounts})
    return state


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BOX = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]")


def _normalised(text: str) -> str:
    return " ".join(_BOX.sub(" ", text).split()).lower()


def _check_output(row: Row, got: Outcome) -> None:
    shown = f"exit {got.code!r}\n--- stderr\n{got.stderr}\n--- stdout\n{got.stdout[-2000:]}"
    assert "Traceback" not in got.stderr and "Traceback" not in got.stdout, f"a traceback:\n{shown}"
    assert got.code in (1, 2), f"expected exit 1 (error) or 2 (usage), got {shown}"
    stderr = _ANSI.sub("", got.stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    if got.code == 1:
        assert len(lines) == 1 and lines[0].startswith("error: "), f"expected exactly one 'error: …' line:\n{shown}"
    else:
        assert lines and lines[0].startswith("Usage: "), f"a usage error starts with its usage line:\n{shown}"
        assert any("--help" in line for line in lines[1:3]), f"a usage error says where help is:\n{shown}"
        assert re.search(r"^\W*Error\b", stderr, re.M), f"a usage error has one 'Error' message:\n{shown}"
    assert _normalised(row.expect) in _normalised(stderr), f"the message should name the problem ({row.expect!r}):\n{shown}"


@pytest.mark.parametrize("row", _params())
def test_bad_input_is_refused_cleanly_and_changes_nothing(row: Row, request: pytest.FixtureRequest, sandbox: dict[str, str],
                                                          busy_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    values: dict[str, Any] = {**sandbox, "busy_port": busy_port, "free_port": _free_port(),
                              "rpc": "http://127.0.0.1:9", "dep": str(Path(sandbox["sb"]) / "deployment.json")}
    chain = request.getfixturevalue("chain") if row.chain else None
    if chain is not None:
        values.update({k: v for k, v in chain.items() if k != "world"})
    root = Path(sandbox["sb"])
    files_before = _file_state(root)
    chain_before = _chain_state(chain) if chain is not None else None
    argv, env = _argv(row, values), _environment(row, values)

    got = _run_subprocess(argv, env, str(root), row.timeout) if row.sub else _run_in_process(argv, env, str(root), monkeypatch)

    problems = []  # all of them, not just the first: a row's report says everything that went wrong
    try:
        _check_output(row, got)
    except AssertionError as exc:
        problems.append(str(exc))
    files_after = _file_state(root)
    changed = sorted(k for k in files_before.keys() | files_after.keys() if files_before.get(k) != files_after.get(k))
    if changed:
        problems.append(f"files changed under the sandbox: {changed}")
    if chain is not None and (chain_after := _chain_state(chain)) != chain_before:
        moved = {k: (chain_before.get(k), v) for k, v in chain_after.items() if chain_before.get(k) != v}  # type: ignore[union-attr]
        problems.append(f"the chain changed (a transaction was mined or a balance moved): {moved}")
    assert not problems, "\n".join(problems)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_table_reaches_every_command() -> None:
    """At least 60 rows, and a row for every command `llmos --help` and each group's `--help` list."""
    from typer.main import get_command

    from llmos_chain.cli.main import app

    root = get_command(app)
    commands = set()
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)  # a group (typer may bring its own click: no isinstance)
        commands |= {f"{name} {sub}" for sub in subcommands} if subcommands is not None else {name}
    assert len(commands) > 20, sorted(commands)
    covered = {" ".join(row.cmd.split()[:2]) for row in ROWS} | {row.cmd.split()[0] for row in ROWS}
    assert len(ROWS) >= 60
    assert not commands - covered, f"commands without a bad-input row: {sorted(commands - covered)}"
