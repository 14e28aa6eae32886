"""The crypto benchmark: its JSON interface (ours beside the format's floor and OpenSSL on equal cores), the
OpenSSL parser, and the streaming-memory probe. Sizes and relationships only, never speeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_chain.bench import crypto
from llmos_chain.crypto import stream

# OpenSSL 3 names the cipher on the result line; with -multi the children's "+F" lines come first.
OPENSSL3_MULTI = """Got: +H:16384 from 0
Got: +F:25:AES-256-GCM:609793013.86 from 0
Got: +H:16384 from 1
Got: +F:25:AES-256-GCM:694649475.63 from 1
version: 3.0.19
options: bn(64,64)
CPUINFO: OPENSSL_ia32cap=0xfffa3203078bffff:0x400684219c07ab
AES-256-GCM    1304442.49k
"""
OPENSSL3_SINGLE = """version: 3.0.19
The 'numbers' are in 1000s of bytes per second processed.
type          16384 bytes
AES-256-GCM    3295305.52k
"""
# OpenSSL 1.1's -multi summary calls an -evp cipher "evp".
OPENSSL11_MULTI = """Got: +F:6:evp:3500000.00 from 0
type           16384 bytes
evp             7100000.00k
"""


def test_openssl_output_is_parsed_in_gb_per_s() -> None:
    assert crypto.parse_openssl_speed(OPENSSL3_MULTI) == pytest.approx(1.30444249)
    assert crypto.parse_openssl_speed(OPENSSL3_SINGLE) == pytest.approx(3.29530552)
    assert crypto.parse_openssl_speed(OPENSSL11_MULTI) == pytest.approx(7.1)
    assert crypto.parse_openssl_speed("speed: Unknown algorithm aes-256-gcm\n") is None


def test_openssl_missing_gives_null(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto.shutil, "which", lambda _: None)
    assert crypto.openssl_gbps() is None and crypto.openssl_gbps(multi=2) is None


def test_floor_round_trips_on_the_format_threads() -> None:
    size, chunk = 3 * 4096 + 5, 4096
    seal, open_ = crypto._floor(size, stream.THREADS, chunk)
    data = bytearray(range(256)) * (size // 256) + bytearray(size % 256)
    sealed = bytearray(stream.sealed_size_for(size, chunk) - stream.HEADER_LEN)
    plain = bytearray(size)
    try:
        assert len(seal(memoryview(data), memoryview(sealed))) == 32  # the ciphertext's BLAKE3, as the format's cipher hash
        open_(memoryview(sealed), memoryview(plain))
    finally:
        seal.pool.shutdown()  # type: ignore[attr-defined]
    assert plain == data and sealed[:size] != data[:size]


def _check(result: dict[str, object]) -> None:
    keys = {"threads", "seal_gbps", "open_gbps", "floor_seal_gbps", "floor_open_gbps", "seal_vs_floor", "open_vs_floor",
            "openssl_gbps", "openssl_multi_gbps", "stream_peak_mib", "buffer_mib", "chunk_kib", "cpus"}
    assert keys <= set(result)
    assert result["threads"] == stream.THREADS and isinstance(result["threads"], int) and result["threads"] >= 1
    for key in ("seal_gbps", "open_gbps", "floor_seal_gbps", "floor_open_gbps", "seal_vs_floor", "open_vs_floor"):
        assert isinstance(result[key], float) and result[key] > 0, key
    # the ratios are our time over the floor's: the inverse of the throughputs' ratio
    assert result["seal_vs_floor"] == pytest.approx(result["floor_seal_gbps"] / result["seal_gbps"])  # type: ignore[operator]
    assert result["open_vs_floor"] == pytest.approx(result["floor_open_gbps"] / result["open_gbps"])  # type: ignore[operator]
    for key in ("openssl_gbps", "openssl_multi_gbps"):
        assert result[key] is None or (isinstance(result[key], float) and result[key] > 0), key  # type: ignore[operator]
    assert result["chunk_kib"] == stream.DEFAULT_CHUNK_SIZE >> 10


def test_measure_reports_floor_and_equal_core_openssl_on_a_small_buffer() -> None:
    result = crypto.measure(stream=False, size=2 << 20, rounds=1)
    _check(result)
    assert result["stream_peak_mib"] is None and result["buffer_mib"] == 2


def test_cli_json_interface_on_a_small_buffer() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llmos_chain.cli.main", "bench", "crypto", "--json", "--no-stream", "--buffer-mib", "4"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    _check(result)
    assert result["buffer_mib"] == 4


@pytest.mark.slow
def test_stream_peak_is_measured_and_bounded() -> None:
    peak = crypto.stream_peak_mib()
    assert 0 < peak < 64, f"streaming 1 GiB used {peak:.1f} MiB above baseline"
