"""The coordinator and CLI start without torch, and llmos_chain never imports the worker."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmos_chain"


def test_no_llmos_chain_module_imports_torch_or_the_worker() -> None:
    modules = sorted(
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft', 'worker'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported by llmos_chain: {out}"


def test_worker_is_not_imported_anywhere_in_llmos_chain_source() -> None:
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "worker", f"{path} imports {node.module}"
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "worker" for a in node.names), f"{path} imports worker"
