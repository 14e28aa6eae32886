"""The committed artifacts are exactly what the sources compile to with the pinned solc."""

from __future__ import annotations

import json

import pytest

from llmos_chain.chain.compiler import ARTIFACTS_DIR, PROJECT_ROOT, SHIPPED, compile_contracts, find_solc, pinned_version, render


@pytest.mark.skipif(not (PROJECT_ROOT / "node_modules" / "solc").is_dir(), reason="needs `npm ci` (make setup)")
def test_committed_artifacts_match_the_sources() -> None:
    fresh = compile_contracts()
    assert set(fresh) == {name for _, name in SHIPPED}
    stale = [name for name, artifact in fresh.items() if (ARTIFACTS_DIR / f"{name}.json").read_text() != render(artifact)]
    assert not stale, f"artifacts differ from contracts/ for {stale}: run scripts/build_contracts.py and commit"


def test_pinned_compiler_is_what_built_the_artifacts() -> None:
    import json

    for _, name in SHIPPED:
        artifact = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
        assert artifact["compiler"].startswith(pinned_version() + "+")
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 100


@pytest.mark.skipif(not (PROJECT_ROOT / "node_modules" / "solc").is_dir(), reason="needs `npm ci` (make setup)")
def test_solc_js_wrapper_answers_like_native_solc() -> None:
    import subprocess

    out = subprocess.run([str(find_solc()), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"Version: {pinned_version()}" in out


def test_every_deployed_contract_fits_the_eip170_size_limit() -> None:
    """A node refuses to deploy runtime code over 24,576 bytes (EIP-170); anvil and eth-tester enforce it too."""
    for name in ("JobMarket", "WorkerRegistry", "DatasetRegistry"):
        code = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())["deployedBytecode"]
        assert 0 < (len(code) - 2) // 2 <= 24_576, name
