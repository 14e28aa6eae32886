"""Fetch a sealed dataset from its URI (file://, http://, https://) and check its cipher hash first.

Nothing is decrypted until the whole file has been fetched and its BLAKE3 matches the registry's
cipher hash; a mismatching download is deleted. Every fetch follows a `FetchPolicy` (allowed schemes, the local
directories a daemon may read, same-origin redirects only) and a size cap: a daemon passes the registered size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmos_chain.crypto.stream import HEADER_LEN, Header, Progress, sealed_size_for, verify_cipher_hash
from llmos_chain.errors import SealedDataError
from llmos_chain.net import CLI_POLICY, FetchError, FetchPolicy, download, local_path

#: With no registered size to go by (a person opening a URL by hand), the largest sealed file fetched.
DEFAULT_MAX_BYTES = 64 << 30


def fetch(uri: str, dest_dir: Path, expected_cipher_hash: bytes, progress: Progress | None = None,
          on_size: Callable[[int | None], None] | None = None, timeout: float = 60.0,
          policy: FetchPolicy = CLI_POLICY, plaintext_size: int | None = None) -> Path:
    """A local path holding the verified sealed file named by `uri`.

    file:// URIs (and plain paths) are verified in place; http(s) downloads go to `dest_dir` under a fixed name
    (a URI's own name could point outside it). With `plaintext_size` (the registered size) the file must be exactly
    as large as a sealed file of that size; without it, at most `DEFAULT_MAX_BYTES`.
    """
    if timeout != policy.timeout_s:
        policy = FetchPolicy(policy.schemes, policy.file_roots, timeout)
    try:
        path = local_path(uri, policy)
        if path is not None:
            size = path.stat().st_size
            _check_size(uri, path, size, plaintext_size)
            if on_size is not None:
                on_size(size)
            verify_cipher_hash(path, expected_cipher_hash, progress)
            return path
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / "dataset.sealed"
        tmp = dest_dir / "dataset.sealed.download"
        tmp.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        # Before the header is in, the chunk size is unknown: the cap allows the smallest chunks; the exact size is
        # checked once the file is complete.
        cap = DEFAULT_MAX_BYTES if plaintext_size is None else sealed_size_for(plaintext_size, 1)
        try:
            download(uri, tmp, cap, policy, progress, on_size)
            _check_size(uri, tmp, tmp.stat().st_size, plaintext_size)
            verify_cipher_hash(tmp, expected_cipher_hash)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target
    except FetchError as exc:
        raise SealedDataError(str(exc)) from None


def _check_size(uri: str, path: Path, size: int, plaintext_size: int | None) -> None:
    """A sealed file's size follows from its header's chunk size and the registered plaintext size, exactly."""
    if plaintext_size is None:
        if size > DEFAULT_MAX_BYTES:
            raise SealedDataError(f"{uri} is {size:,} bytes, more than the {DEFAULT_MAX_BYTES:,} allowed")
        return
    with open(path, "rb") as f:
        head = f.read(HEADER_LEN)
    header = Header.parse(head)
    expected = sealed_size_for(plaintext_size, header.chunk_size)
    if size != expected:
        raise SealedDataError(f"{uri} is {size:,} bytes; a sealed file of the registered {plaintext_size:,} bytes is {expected:,}")

