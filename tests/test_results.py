"""Fetching result bundles from a coordinator's API that lies about sizes: small files past their limit and endless
streams are refused with a clear error, and nothing partial is left behind (a loopback HTTP server)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmos_chain import results
from llmos_chain.errors import LlmosError
from llmos_chain.results import fetch_bundle, fetch_checkpoints

LIMIT = 1 << 20


@contextmanager
def _serving(routes: dict[str, Callable[[], Iterator[bytes]]]) -> Iterator[str]:
    """A loopback API answering `routes` (path → body chunks; 404 elsewhere); yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.end_headers()
            try:
                for chunk in body():
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _bytes(n: int) -> Callable[[], Iterator[bytes]]:
    return lambda: iter([b"x" * n])


def _endless() -> Iterator[bytes]:
    while True:
        yield b"\0" * 65536


def _bundle(**override: Callable[[], Iterator[bytes]]) -> dict[str, Callable[[], Iterator[bytes]]]:
    files = {name: _bytes(10) for name in results.BUNDLE_FILES}
    files.update({k.replace("_", "."): v for k, v in override.items()})
    return {f"/jobs/1/result/{name}": body for name, body in files.items()}


@pytest.fixture(autouse=True)
def _small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "SMALL_FILE_LIMIT", LIMIT)
    monkeypatch.setattr(results, "_CHUNK", 64 << 10)
    monkeypatch.setattr(results, "_CHECK_SPACE_EVERY", 256 << 10)


def _disk(monkeypatch: pytest.MonkeyPatch, root: Path, free: int) -> None:
    """The file system under `root` as one with `free` bytes before the test wrote anything (other tests running beside
    this one write to the real disk, so its free space is no fixed reference)."""

    def usage(path: object) -> SimpleNamespace:
        return SimpleNamespace(free=free - sum(f.stat().st_size for f in root.rglob("*") if f.is_file()))

    monkeypatch.setattr(results.shutil, "disk_usage", usage)


@pytest.mark.parametrize("size, refused", [(LIMIT, False), (LIMIT + 1, True)])
def test_a_small_file_at_its_limit_is_fetched_and_one_byte_more_is_refused(size: int, refused: bool, tmp_path: Path) -> None:
    with _serving(_bundle(metrics_json=_bytes(size))) as url:
        if refused:
            with pytest.raises(LlmosError, match=f"sent more than {LIMIT} bytes"):
                fetch_bundle(url, 1, tmp_path)
            assert not (tmp_path / "1").exists()  # nothing partial is left
        else:
            bundle = fetch_bundle(url, 1, tmp_path)
            assert (bundle / "metrics.json").stat().st_size == LIMIT


def test_an_endless_output_stops_before_the_disk_fills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealed output has no fixed limit (it grows with the model), so the free-space reserve stops it: here the
    reserve is 4 MiB below what is free."""
    _disk(monkeypatch, tmp_path, results.FREE_SPACE_RESERVE + (4 << 20))
    with _serving(_bundle(output_sealed=_endless)) as url:
        with pytest.raises(LlmosError, match="would leave less than .* free .*: stopped"):
            fetch_bundle(url, 1, tmp_path)
        assert not (tmp_path / "1").exists()


def test_a_large_output_within_the_reserve_is_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _disk(monkeypatch, tmp_path, results.FREE_SPACE_RESERVE + (64 << 20))
    with _serving(_bundle(output_sealed=_bytes(3 * LIMIT))) as url:
        assert (fetch_bundle(url, 1, tmp_path) / "output.sealed").stat().st_size == 3 * LIMIT


def test_checkpoints_obey_the_same_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An oversized checkpoint key is refused; an endless checkpoint stops at the reserve; the partial file is removed."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "trajectory.jsonl").write_text(json.dumps({"checkpoint": "ab" * 32}) + "\n")
    with _serving({"/jobs/1/result/checkpoints.key": _bytes(LIMIT + 1)}) as url:
        with pytest.raises(LlmosError, match="sent more than"):
            fetch_checkpoints(url, 1, bundle)
        assert not (bundle / "checkpoints.key").exists()
    _disk(monkeypatch, tmp_path, results.FREE_SPACE_RESERVE + (4 << 20))
    with _serving({"/jobs/1/result/checkpoints.key": _bytes(100), "/jobs/1/checkpoint/1": _endless}) as url:
        with pytest.raises(LlmosError, match="stopped"):
            fetch_checkpoints(url, 1, bundle)
        assert not (bundle / "checkpoints" / "1.sealed").exists()
