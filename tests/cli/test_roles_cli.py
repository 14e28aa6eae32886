"""`llmos devnet`, `llmos job …` and `llmos agent …` on bad input and across restarts: clear errors, no tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, free_port
from tests.cli.test_dataset_cli import ENTRY, llmos


def _devnet(tmp: Path, port: int, *extra: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen([*ENTRY, "devnet", "--port", str(port), "--out", str(tmp / "deployment.json"), "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:  # the JSON document ends with a lone closing brace
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "devnet exited"
        lines.append(line)
        if line.rstrip() == "}":
            return proc, json.loads("".join(lines))
    raise AssertionError("devnet did not come up")


def _stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
    assert proc.wait(timeout=30) == 0


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_devnet_keeps_its_chain_across_restarts_with_state(tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "chain-state.json"
    proc, first = _devnet(tmp_path, port, "--state", str(state))
    try:
        assert first["resumed"] is False and set(first["contracts"]) >= {"JobMarket", "DatasetRegistry", "WorkerRegistry", "TestToken"}
        env = ["--rpc", first["rpc"], "--deployment", str(tmp_path / "deployment.json")]
        busy = llmos(tmp_path, "devnet", "--port", str(port), "--out", str(tmp_path / "other.json"), check=False)
        assert busy.returncode != 0 and "in use" in busy.stderr
        # a job status for a job that does not exist is a clear error
        missing = llmos(tmp_path, "job", "status", "5", *env, check=False)
        assert missing.returncode != 0 and "JobNotFound" in missing.stderr
    finally:
        _stop(proc)
    assert state.exists()
    proc, second = _devnet(tmp_path, port, "--state", str(state))
    try:
        assert second["resumed"] is True and second["contracts"] == first["contracts"]
    finally:
        _stop(proc)


def test_bad_input_to_the_role_commands(tmp_path: Path) -> None:
    missing = llmos(tmp_path, "agent", "run", "--config", str(tmp_path / "nope.json"), check=False)
    assert missing.returncode != 0 and "agent config not found" in missing.stderr
    (tmp_path / "agent.json").write_text(json.dumps({"grants": {"datasets": {"1": "ab"}, "max_jobs": -1}}))
    invalid = llmos(tmp_path, "agent", "run", "--config", str(tmp_path / "agent.json"), check=False)
    assert invalid.returncode != 0 and "grants.max_jobs" in invalid.stderr
    (tmp_path / "empty.json").write_text("{}")
    empty = llmos(tmp_path, "agent", "run", "--config", str(tmp_path / "empty.json"), check=False)
    assert empty.returncode != 0 and "give `grants`, `accepts` or both" in empty.stderr

    (tmp_path / "recipe.json").write_text('{"task": "sequence-classification", "method": "sideways"}')
    bad_recipe = llmos(tmp_path, "job", "post", "--dataset", "1", "--recipe", str(tmp_path / "recipe.json"), "--client-key", "c",
                       "--amount", "1", "--rpc", "http://127.0.0.1:9", "--deployment", str(tmp_path / "d.json"), check=False)
    assert bad_recipe.returncode != 0 and "invalid recipe" in bad_recipe.stderr
    no_node = llmos(tmp_path, "job", "accept", "1", "--rpc", f"http://127.0.0.1:{free_port()}", "--deployment", str(tmp_path / "d.json"),
                    check=False)
    assert no_node.returncode != 0 and "no JSON-RPC node answers" in no_node.stderr


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_devnet_never_wraps_machine_readable_lines_on_a_narrow_pipe(tmp_path: Path) -> None:
    """Piped stdout is rendered at COLUMNS (80 by default): the export line, addresses and paths must stay whole."""
    out = tmp_path / ("a-deep-directory-name-" * 3) / "deployment.json"  # the export line is far over 40 columns
    proc = subprocess.Popen([*ENTRY, "devnet", "--port", str(free_port()), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, "COLUMNS": "40"})
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lines and lines[-1].startswith("Ctrl-C stops")):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "devnet exited"
            lines.append(line.rstrip("\n"))
    finally:
        _stop(proc)
    exports = [line for line in lines if line.startswith("export ")]
    assert exports == [f"export LLMOS_RPC_URL={exports[0].split('=')[1].split()[0]} LLMOS_DEPLOYMENT={out.resolve()}"], lines
    deployment = json.loads(out.read_text())
    text = "\n".join(lines)
    addresses = [a for a in json.dumps(deployment).split('"') if a.startswith("0x") and len(a) == 42]
    assert addresses and all(a in text for a in addresses), text  # every contract's address whole on one line
    assert any(line == f"deployment file: {out}" for line in lines)
