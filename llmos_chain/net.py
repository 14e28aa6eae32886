"""Bounded fetching of what jobs point at (recipes, sealed datasets, result bundles): schemes on an allow list,
local files only under configured roots, no redirect to another host or scheme, a size cap and a timeout on every
read, and names that cannot leave their directory.

A job's URIs are chosen by whoever posted it, so a daemon fetching them is fetching for a stranger: `file:///dev/zero`,
`file:///etc/shadow`, a redirect to `file://` or to an internal host, or an endless body must each end in a clear
`FetchError`, never in a crash, a hang or a leak of the host's files.
"""

from __future__ import annotations

import os
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from llmos_chain.errors import LlmosError

_STEP = 1 << 20


class FetchError(LlmosError):
    """A URI could not be fetched within the policy (scheme, root, redirect, size, time) or the source failed."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        #: True for failures worth retrying later (timeouts, refused connections, 5xx), False for the URI's fault.
        self.transient = transient


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may touch. `file_roots=None` allows any local path (a person at the CLI fetching their own
    files); a daemon passes the directories it serves from (an empty tuple refuses every local path)."""

    schemes: frozenset[str] = frozenset({"file", "http", "https"})
    file_roots: tuple[Path, ...] | None = None
    timeout_s: float = 30.0

    @classmethod
    def for_daemon(cls, file_roots: list[str] | tuple[str | Path, ...] = (), timeout_s: float = 30.0) -> FetchPolicy:
        return cls(file_roots=tuple(Path(r).expanduser().resolve() for r in file_roots), timeout_s=timeout_s)


CLI_POLICY = FetchPolicy()


def local_path(uri: str, policy: FetchPolicy) -> Path | None:
    """The regular file a `file://` URI or plain path names, checked against the policy; None for a remote URI."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    if "file" not in policy.schemes:
        raise FetchError(f"file:// sources are not allowed here ({uri})")
    raw = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise FetchError(f"file:// URIs name a local file; {uri!r} names host {parsed.netloc!r}")
    path = Path(raw).expanduser()
    try:
        resolved = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        raise FetchError(f"not found: {uri}") from None
    if policy.file_roots is not None and not any(resolved.is_relative_to(root) for root in policy.file_roots):
        raise FetchError(f"{uri} is outside the directories this daemon may read"
                         + (f" ({', '.join(str(r) for r in policy.file_roots)})" if policy.file_roots else " (none are configured)"))
    mode = resolved.stat().st_mode
    if not stat.S_ISREG(mode):
        raise FetchError(f"{uri} is not a regular file")
    return resolved


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme and host: never to file://, never to another (internal) host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        old, new = urllib.parse.urlparse(req.full_url), urllib.parse.urlparse(urllib.parse.urljoin(req.full_url, newurl))
        if (old.scheme, old.netloc) != (new.scheme, new.netloc):
            raise FetchError(f"{req.full_url} redirects to another scheme or host ({new.scheme}://{new.netloc}); refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects())


def _open_remote(uri: str, policy: FetchPolicy) -> BinaryIO:
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme not in policy.schemes or scheme not in ("http", "https"):
        raise FetchError(f"unsupported URI scheme {scheme!r} in {uri!r} (allowed: {', '.join(sorted(policy.schemes))})")
    try:
        return _OPENER.open(uri, timeout=policy.timeout_s)  # type: ignore[no-any-return]
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"fetching {uri} failed: HTTP {exc.code} {exc.reason}", transient=exc.code >= 500 or exc.code == 429) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise FetchError(f"fetching {uri} failed: {getattr(exc, 'reason', exc)}", transient=True) from None


def read_bytes(uri: str, max_bytes: int, policy: FetchPolicy = CLI_POLICY) -> bytes:
    """The whole content of `uri`, refusing anything over `max_bytes` (read at most one byte more to know)."""
    path = local_path(uri, policy)
    if path is not None:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    else:
        with _open_remote(uri, policy) as response:
            try:
                data = response.read(max_bytes + 1)
            except (OSError, TimeoutError) as exc:
                raise FetchError(f"reading {uri} failed: {exc}", transient=True) from None
    if len(data) > max_bytes:
        raise FetchError(f"{uri} is larger than the {max_bytes:,} bytes allowed for it")
    return data


def download(uri: str, dest: Path, max_bytes: int, policy: FetchPolicy = CLI_POLICY,
             progress: Callable[[int], None] | None = None, on_size: Callable[[int | None], None] | None = None) -> Path:
    """Stream `uri` into the new file `dest` (0600, never through an existing file or link), at most `max_bytes`;
    on any failure `dest` is removed."""
    with _open_remote(uri, policy) as response:
        length = response.headers.get("Content-Length")
        declared = int(length) if length and length.isdigit() else None
        if declared is not None and declared > max_bytes:
            raise FetchError(f"{uri} declares {declared:,} bytes, more than the {max_bytes:,} allowed")
        if on_size is not None:
            on_size(declared)
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise FetchError(f"{dest} already exists") from None
        total = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while block := response.read(_STEP):
                    total += len(block)
                    if total > max_bytes:
                        raise FetchError(f"{uri} sent more than the {max_bytes:,} bytes allowed for it")
                    out.write(block)
                    if progress is not None:
                        progress(len(block))
        except (OSError, TimeoutError) as exc:
            dest.unlink(missing_ok=True)
            raise FetchError(f"reading {uri} failed: {exc}", transient=True) from None
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    return dest


def safe_name(name: str, fallback: str) -> str:
    """A file name taken from a URI that stays inside its directory (no separators, no `.`/`..`, printable)."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    if name in ("", ".", "..") or not name.isprintable() or name.startswith("."):
        return fallback
    return name[:128]
