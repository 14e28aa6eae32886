"""Bounded fetching: what a stranger's URI can make a daemon read, follow or write."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import blake3
import pytest

from llmos_chain.crypto import stream
from llmos_chain.crypto.fetch import fetch
from llmos_chain.errors import IntegrityError, RecipeError, SealedDataError
from llmos_chain.net import FetchError, FetchPolicy, download, local_path, read_bytes, safe_name
from llmos_chain.recipe import MAX_RECIPE_BYTES, Recipe, fetch_recipe

RECIPE = Recipe.parse('{"task": "sequence-classification", "method": "lora", "base_model": {"kind": "config", "name": "tiny-bert"}}')


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802
        status, headers, body = self.routes.get(self.path, (404, {}, b"no"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[tuple[str, dict[str, tuple[int, dict[str, str], bytes]]]]:
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    handler = type("H", (_Handler,), {"routes": routes})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_dev_zero_and_other_non_files_are_refused_not_read() -> None:
    """v1: a recipe URI file:///dev/zero made every coordinator read until MemoryError."""
    for uri in ("file:///dev/zero", "/dev/zero", "file:///proc/self/fd/0", "file:///tmp"):
        with pytest.raises(FetchError):
            read_bytes(uri, 1 << 20)
    with pytest.raises(RecipeError, match="not a regular file"):
        fetch_recipe("file:///dev/zero", RECIPE.hash())


def test_size_caps_hold_for_files_and_http(tmp_path: Path, server: tuple[str, dict]) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_RECIPE_BYTES + 1))
    with pytest.raises(RecipeError, match="larger than"):
        fetch_recipe(big.as_uri(), RECIPE.hash())
    base, routes = server
    routes["/big"] = (200, {}, b"x" * 5000)
    assert len(read_bytes(f"{base}/big", 5000)) == 5000  # exactly at the cap: fine
    with pytest.raises(FetchError, match="larger than"):
        read_bytes(f"{base}/big", 4999)
    routes["/liar"] = (200, {"Content-Length": str(10**12)}, b"x" * 10)
    with pytest.raises(FetchError, match="declares"):
        download(f"{base}/liar", tmp_path / "liar", 1 << 20)
    routes["/stream"] = (200, {"Content-Length": "4000"}, b"y" * 4000)
    with pytest.raises(FetchError, match="declares"):
        download(f"{base}/stream", tmp_path / "stream", 3999)
    routes["/undeclared"] = (200, {"Content-Length": ""}, b"z" * 4000)  # no length: counted as it streams
    with pytest.raises(FetchError, match="sent more than"):
        download(f"{base}/undeclared", tmp_path / "undeclared", 3999)
    assert not (tmp_path / "stream").exists() and not (tmp_path / "undeclared").exists()
    assert download(f"{base}/undeclared", tmp_path / "ok", 4000).stat().st_size == 4000


def test_daemons_read_local_files_only_under_their_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "served", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (root / "ok.json").write_bytes(RECIPE.canonical_bytes())
    (outside / "shadow").write_text("root:x:0:0")
    (root / "link").symlink_to(outside / "shadow")
    policy = FetchPolicy.for_daemon([str(root)])
    assert fetch_recipe((root / "ok.json").as_uri(), RECIPE.hash(), policy=policy).hash() == RECIPE.hash()
    for uri in ((outside / "shadow").as_uri(), (root / "link").as_uri(), f"file://{root}/../secret/shadow", str(outside / "shadow")):
        with pytest.raises(FetchError, match="outside the directories"):
            local_path(uri, policy)
    with pytest.raises(FetchError, match="none are configured"):
        local_path((root / "ok.json").as_uri(), FetchPolicy.for_daemon([]))
    with pytest.raises(FetchError, match="names host"):
        local_path("file://evil.example/etc/passwd", FetchPolicy())


def test_redirects_only_to_the_same_scheme_and_host(tmp_path: Path, server: tuple[str, dict]) -> None:
    base, routes = server
    routes["/recipe.json"] = (200, {}, RECIPE.canonical_bytes())
    routes["/moved"] = (302, {"Location": "/recipe.json"}, b"")
    routes["/to-file"] = (302, {"Location": (tmp_path / "x").as_uri()}, b"")
    routes["/to-other-host"] = (302, {"Location": "http://127.0.0.2:9/recipe.json"}, b"")
    assert fetch_recipe(f"{base}/moved", RECIPE.hash()).hash() == RECIPE.hash()
    for path in ("/to-file", "/to-other-host"):
        with pytest.raises(RecipeError, match="[Rr]edirect"):
            fetch_recipe(f"{base}{path}", RECIPE.hash())
    with pytest.raises(RecipeError, match="redirects to another scheme or host"):
        fetch_recipe(f"{base}/to-other-host", RECIPE.hash())


def test_a_transient_failure_is_not_the_jobs_fault(server: tuple[str, dict]) -> None:
    base, routes = server
    routes["/busy"] = (503, {}, b"")
    with pytest.raises(FetchError) as info:
        fetch_recipe(f"{base}/busy", RECIPE.hash())
    assert info.value.transient
    with pytest.raises(FetchError) as info:
        fetch_recipe("http://127.0.0.1:9/recipe.json", RECIPE.hash())  # nothing listens: retry later
    assert info.value.transient
    with pytest.raises(IntegrityError):
        routes["/other.json"] = (200, {}, RECIPE.model_copy(update={"eval_fraction": 0.3}).canonical_bytes())
        fetch_recipe(f"{base}/other.json", RECIPE.hash())


def test_a_dataset_url_cannot_name_a_file_outside_the_download_dir(tmp_path: Path, server: tuple[str, dict]) -> None:
    key = stream.new_data_key()
    sealed, result = stream.seal_bytes(os.urandom(3000), key, chunk_size=1024)
    base, routes = server
    routes["/data/.."] = (200, {}, sealed)
    routes["/data/%2e%2e"] = (200, {}, sealed)
    dest = tmp_path / "downloads" / "job"
    for path in ("/data/..", "/data/%2e%2e"):
        got = fetch(f"{base}{path}", dest, blake3.blake3(sealed).digest(), plaintext_size=3000)
        assert got.parent == dest and got.name == "dataset.sealed"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["dataset.sealed"]
    assert safe_name("..", "f") == "f" and safe_name("a/../../b", "f") == "b" and safe_name(".hidden", "f") == "f"


def test_a_dataset_must_be_exactly_the_size_its_registration_implies(tmp_path: Path, server: tuple[str, dict]) -> None:
    key = stream.new_data_key()
    sealed, _ = stream.seal_bytes(os.urandom(3000), key, chunk_size=1024)
    base, routes = server
    routes["/d"] = (200, {}, sealed)
    digest = blake3.blake3(sealed).digest()
    assert fetch(f"{base}/d", tmp_path / "a", digest, plaintext_size=3000).stat().st_size == len(sealed)
    with pytest.raises(SealedDataError, match="registered"):
        fetch(f"{base}/d", tmp_path / "b", digest, plaintext_size=2000)
    local = tmp_path / "local.sealed"
    local.write_bytes(sealed)
    with pytest.raises(SealedDataError, match="registered"):
        fetch(local.as_uri(), tmp_path / "c", digest, plaintext_size=10)
