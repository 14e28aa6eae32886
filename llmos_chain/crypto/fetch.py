"""Fetch a sealed dataset from its URI (file://, http://, https://) and check its cipher hash first.

Nothing is decrypted until the whole file has been fetched and its BLAKE3 matches the registry's
cipher hash; a mismatching download is deleted.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from llmos_chain.crypto.stream import Progress, verify_cipher_hash
from llmos_chain.errors import SealedDataError

_STEP = 1 << 20


def fetch(uri: str, dest_dir: Path, expected_cipher_hash: bytes, progress: Progress | None = None,
          on_size: Callable[[int | None], None] | None = None, timeout: float = 60.0) -> Path:
    """A local path holding the verified sealed file named by `uri`.

    file:// URIs (and plain paths) are verified in place; http(s) downloads go to `dest_dir`.
    """
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
        if not path.is_file():
            raise SealedDataError(f"dataset file not found: {path}")
        if on_size is not None:
            on_size(path.stat().st_size)
        verify_cipher_hash(path, expected_cipher_hash, progress)
        return path
    if parsed.scheme not in ("http", "https"):
        raise SealedDataError(f"unsupported dataset URI scheme {parsed.scheme!r} (use file://, http:// or https://)")
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = Path(parsed.path).name or "dataset.sealed"
    target = dest_dir / name
    tmp = target.with_name(target.name + ".download")
    try:
        with urllib.request.urlopen(uri, timeout=timeout) as response, open(tmp, "wb") as out:  # noqa: S310 (scheme checked)
            length = response.headers.get("Content-Length")
            if on_size is not None:
                on_size(int(length) if length and length.isdigit() else None)
            while block := response.read(_STEP):
                out.write(block)
                if progress is not None:
                    progress(len(block))
        verify_cipher_hash(tmp, expected_cipher_hash)
        shutil.move(tmp, target)
        return target
    except urllib.error.HTTPError as exc:
        raise SealedDataError(f"fetching {uri} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise SealedDataError(f"fetching {uri} failed: {getattr(exc, 'reason', exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
