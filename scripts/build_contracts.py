#!/usr/bin/env python3
"""Compile contracts/ and write the ABI + bytecode artifacts shipped in llmos_chain/chain/artifacts/.

Run after editing any .sol file and commit the result; tests/chain/test_compiler.py fails while the
committed artifacts differ from what the sources compile to.
"""

from __future__ import annotations

import sys

from llmos_chain.chain.compiler import compile_contracts, write_artifacts
from llmos_chain.errors import LlmosError


def main() -> int:
    try:
        paths = write_artifacts(compile_contracts())
    except LlmosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        size = (len(path.read_text()))
        print(f"wrote {path} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
