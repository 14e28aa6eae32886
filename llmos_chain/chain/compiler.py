"""Compile `contracts/` to the committed artifacts with a pinned solc (native when on PATH, else solc-js).

The artifacts are what the package ships: installing and running llmos-chain needs no compiler. Only
`scripts/build_contracts.py` and the test that proves the artifacts match the sources call this module.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from llmos_chain.errors import ToolchainError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = PROJECT_ROOT / "contracts"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
SOLC_JS = PROJECT_ROOT / "scripts" / "solc-js"

#: Contracts whose artifacts are shipped (source path relative to the project root, contract name).
SHIPPED: tuple[tuple[str, str], ...] = (
    ("contracts/WorkerRegistry.sol", "WorkerRegistry"),
    ("contracts/DatasetRegistry.sol", "DatasetRegistry"),
    ("contracts/JobMarket.sol", "JobMarket"),
    ("contracts/test/TestToken.sol", "TestToken"),
    ("contracts/test/TestSmartWallet.sol", "TestSmartWallet"),
)

SETTINGS: dict[str, Any] = {
    "evmVersion": "prague",
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 10000},
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}},
}


def pinned_version() -> str:
    """The solc version pinned in package.json (e.g. ``0.8.37``)."""
    package = json.loads((PROJECT_ROOT / "package.json").read_text())
    return str(package["dependencies"]["solc"])


def find_solc() -> Path:
    """A native `solc` of the pinned version on PATH, else the solc-js wrapper (needs `npm ci`)."""
    want = pinned_version()
    native = shutil.which("solc")
    if native and _binary_version(Path(native)) == want:
        return Path(native)
    if not (PROJECT_ROOT / "node_modules" / "solc").is_dir():
        raise ToolchainError(f"no solc {want}: install the pinned toolchain with `npm ci` in {PROJECT_ROOT}")
    if _binary_version(SOLC_JS) != want:
        raise ToolchainError(f"node_modules/solc is not the pinned {want}: run `npm ci`")
    return SOLC_JS


def _binary_version(binary: Path) -> str | None:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else None


def _sources() -> dict[str, dict[str, str]]:
    files = sorted(CONTRACTS_DIR.rglob("*.sol"))
    return {f.relative_to(PROJECT_ROOT).as_posix(): {"content": f.read_text()} for f in files}


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compile every source and return the shipped artifacts keyed by contract name."""
    import solcx  # build-time dependency only

    solc = find_solc()
    standard_input = {"language": "Solidity", "sources": _sources(), "settings": SETTINGS}
    try:
        output = solcx.compile_standard(standard_input, solc_binary=solc, allow_paths=str(PROJECT_ROOT))
    except solcx.exceptions.SolcError as exc:
        raise ToolchainError(f"solc failed:\n{exc}") from exc
    artifacts: dict[str, dict[str, Any]] = {}
    for source, name in SHIPPED:
        out = output["contracts"][source][name]
        metadata = json.loads(out["metadata"])
        artifacts[name] = {
            "contractName": name,
            "sourceName": source,
            "compiler": metadata["compiler"]["version"],
            "abi": out["abi"],
            "bytecode": "0x" + out["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + out["evm"]["deployedBytecode"]["object"],
            "sourceHashes": {k: v["keccak256"] for k, v in sorted(metadata["sources"].items())},
            "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
        }
    return artifacts


def render(artifact: dict[str, Any]) -> str:
    """The exact text an artifact is committed as (stable key order, trailing newline)."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def write_artifacts(artifacts: dict[str, dict[str, Any]], directory: Path = ARTIFACTS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in artifacts.items():
        path = directory / f"{name}.json"
        path.write_text(render(artifact))
        written.append(path)
    return written


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
