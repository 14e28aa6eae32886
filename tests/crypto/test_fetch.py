"""Fetching sealed files by URI, verified against the cipher hash before anything is decrypted."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import blake3
import pytest

from llmos_chain.crypto.fetch import fetch
from llmos_chain.errors import SealedDataError


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_http_fetch_with_progress(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    payload = b"sealed bytes" * 100_000
    (root / "d.sealed").write_bytes(payload)
    seen: list[int] = []
    sizes: list[int | None] = []
    path = fetch(f"{base}/d.sealed", tmp_path / "dl", blake3.blake3(payload).digest(), seen.append, sizes.append)
    assert path.read_bytes() == payload
    assert sum(seen) == len(payload) and sizes == [len(payload)]


def test_http_fetch_rejects_a_wrong_hash_and_keeps_nothing(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    (root / "d.sealed").write_bytes(b"tampered")
    with pytest.raises(SealedDataError, match="cipher hash mismatch"):
        fetch(f"{base}/d.sealed", tmp_path / "dl", b"\x00" * 32)
    assert list((tmp_path / "dl").iterdir()) == []


def test_http_errors(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    with pytest.raises(SealedDataError, match="HTTP 404"):
        fetch(f"{base}/missing", tmp_path, b"\x00" * 32)
    with pytest.raises(SealedDataError, match="failed"):
        fetch("http://127.0.0.1:9/x", tmp_path, b"\x00" * 32, timeout=5)
    with pytest.raises(SealedDataError, match="unsupported URI scheme"):
        fetch("ftp://host/x", tmp_path, b"\x00" * 32)


def test_file_uri_and_plain_path(tmp_path: Path) -> None:
    path = tmp_path / "a b.sealed"
    path.write_bytes(b"abc")
    digest = blake3.blake3(b"abc").digest()
    assert fetch(path.as_uri(), tmp_path / "dl", digest) == path
    assert fetch(str(path), tmp_path / "dl", digest) == path
    with pytest.raises(SealedDataError, match="not found"):
        fetch((tmp_path / "nope").as_uri(), tmp_path, digest)
