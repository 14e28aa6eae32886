"""Sealed-format throughput beside OpenSSL's single-core AES-256-GCM, and streaming memory.

- seal / open: a 256 MiB buffer sealed and opened in memory (best of three, buffers preallocated);
  opening includes authenticating every chunk and recomputing the content root.
- openssl: `openssl speed -evp aes-256-gcm` (one core, 16 KiB blocks), run in the same process tree.
- stream_peak_mib: resident-memory peak above the interpreter's baseline while a child process seals a
  1 GiB file to disk and streams it open again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BUFFER_BYTES = 256 << 20
STREAM_BYTES = 1 << 30


def _best(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def buffer_throughput(size: int = BUFFER_BYTES) -> dict[str, float]:
    from llmos_chain.crypto import stream

    key = stream.new_data_key()
    data = bytearray(os.urandom(size))
    sealed = bytearray(stream.sealed_size_for(size))
    plain = bytearray(size)
    root: list[bytes] = []

    def seal() -> None:
        _, result = stream.seal_buffer(data, key, out=sealed)
        root[:] = [result.content_root]

    seal_s = _best(seal)
    open_s = _best(lambda: stream.open_to_memory(sealed, key, root[0], out=plain))
    if plain != data:
        raise AssertionError("round trip failed")
    return {"seal_gbps": size / seal_s / 1e9, "open_gbps": size / open_s / 1e9}


def openssl_gbps(seconds: int = 1) -> float | None:
    """OpenSSL's single-core AES-256-GCM figure for 16 KiB blocks, in GB/s (None without openssl)."""
    if not shutil.which("openssl"):
        return None
    out = subprocess.run(
        ["openssl", "speed", "-evp", "aes-256-gcm", "-seconds", str(seconds), "-bytes", "16384"],
        capture_output=True, text=True, timeout=120,
    ).stdout
    match = re.search(r"^AES-256-GCM\s+([\d.]+)k", out, re.MULTILINE | re.IGNORECASE)
    return float(match.group(1)) * 1000 / 1e9 if match else None


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def stream_child(directory: str) -> None:
    """Run in a child process: print the peak RSS above baseline (MiB) while streaming 1 GiB both ways."""
    from llmos_chain.crypto import stream

    src, dst = Path(directory) / "plain.bin", Path(directory) / "sealed.bin"
    with open(src, "wb") as f:
        block = os.urandom(8 << 20)
        for _ in range(STREAM_BYTES // len(block)):
            f.write(block)
    key = stream.new_data_key()
    baseline = _rss_kib("VmHWM")
    result = stream.seal_file(src, dst, key)
    src.unlink()

    class Sink:
        def write(self, b: Any) -> int:
            return len(b)

    with stream.SealedFile.open(dst) as sealed:
        opened = stream.open_stream(sealed, Sink(), key, result.content_root)  # type: ignore[arg-type]
    assert opened.plaintext_size == STREAM_BYTES
    print((_rss_kib("VmHWM") - baseline) / 1024)


def stream_peak_mib() -> float:
    with tempfile.TemporaryDirectory(prefix="llmos-bench-") as tmp:
        out = subprocess.run(
            [sys.executable, "-c", f"from llmos_chain.bench.crypto import stream_child; stream_child({tmp!r})"],
            capture_output=True, text=True, timeout=600, check=True,
        ).stdout
    return float(out.strip().splitlines()[-1])


def measure(stream: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = buffer_throughput()
    result["openssl_gbps"] = openssl_gbps()
    result["stream_peak_mib"] = stream_peak_mib() if stream else None
    result["buffer_mib"] = BUFFER_BYTES >> 20
    return result
