"""The sealed-file format, version 1 (spec: docs/sealed-format.md).

A sealed file is a 69-byte header followed by chunks. Each chunk is AES-256-GCM over at most
`chunk_size` plaintext bytes under a per-file key (HKDF-SHA256 of the data key and the header's
random salt), with nonce = prefix (7) ‖ chunk counter (4, big-endian) ‖ last-chunk flag (1) and the
whole header as associated data (the STREAM construction). Truncation, reordering, splicing from
another file and header edits all fail authentication, chunk by chunk; nothing unauthenticated is
ever returned. Every file ends with a chunk flagged last (an empty input seals to one empty chunk).

The content root is the Merkle root (llmos_chain.crypto.merkle) over the plaintext chunks; the
cipher hash is BLAKE3 over the whole sealed file. Both are what the dataset registry records.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from llmos_chain.crypto import merkle
from llmos_chain.errors import SealedDataError

MAGIC = b"llmosSD\x00"
VERSION = 1
AEAD_AES_256_GCM = 1
TAG_LEN = 16
KEY_LEN = 32
SALT_LEN = 32
PREFIX_LEN = 7
KEY_ID_LEN = 16
DEFAULT_CHUNK_SIZE = 512 << 10  # fits L2 twice over: each chunk is encrypted and hashed in cache
#: The largest chunk a header may declare. Chunks bound the memory an opener allocates (two batches of at least
#: two chunks each), so a header cannot make an opener allocate more than a few times this.
MAX_CHUNK_SIZE = 1 << 24
MAX_CHUNKS = 1 << 32
_HEADER = struct.Struct(f">8sBBI{SALT_LEN}s{PREFIX_LEN}s{KEY_ID_LEN}s")
HEADER_LEN = _HEADER.size  # 69
_FILE_KEY_INFO = b"llmos-sealed/1 file key"

Progress = Callable[[int], None]


def key_id(data_key: bytes) -> bytes:
    """A 16-byte public name for a data key (a keyed hash: it reveals nothing about the key)."""
    _check_key(data_key)
    return blake3.blake3(b"llmos data key id", key=data_key).digest(KEY_ID_LEN)


def new_data_key() -> bytes:
    return os.urandom(KEY_LEN)


def _check_key(data_key: bytes) -> None:
    if not isinstance(data_key, (bytes, bytearray)) or len(data_key) != KEY_LEN:
        raise SealedDataError(f"a data key is {KEY_LEN} bytes")


@dataclass(frozen=True)
class Header:
    chunk_size: int
    salt: bytes
    nonce_prefix: bytes
    key_id: bytes
    version: int = VERSION
    aead: int = AEAD_AES_256_GCM

    def to_bytes(self) -> bytes:
        return _HEADER.pack(MAGIC, self.version, self.aead, self.chunk_size, self.salt, self.nonce_prefix, self.key_id)

    @classmethod
    def parse(cls, raw: bytes) -> Header:
        if len(raw) < HEADER_LEN:
            raise SealedDataError(f"truncated header: {len(raw)} of {HEADER_LEN} bytes")
        magic, version, aead, chunk_size, salt, prefix, kid = _HEADER.unpack(raw[:HEADER_LEN])
        if magic != MAGIC:
            raise SealedDataError("not a llmos sealed file (bad magic)")
        if version != VERSION:
            raise SealedDataError(f"unsupported sealed-file version {version} (this build reads {VERSION})")
        if aead != AEAD_AES_256_GCM:
            raise SealedDataError(f"unsupported AEAD id {aead}")
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise SealedDataError(f"invalid chunk size {chunk_size}")
        return cls(chunk_size=chunk_size, salt=salt, nonce_prefix=prefix, key_id=kid, version=version, aead=aead)

    @classmethod
    def fresh(cls, data_key: bytes, chunk_size: int) -> Header:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise SealedDataError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE} bytes, got {chunk_size}")
        return cls(chunk_size, os.urandom(SALT_LEN), os.urandom(PREFIX_LEN), key_id(data_key))


@dataclass(frozen=True)
class SealResult:
    content_root: bytes
    cipher_hash: bytes
    key_id: bytes
    plaintext_size: int
    sealed_size: int
    chunks: int
    chunk_size: int

    def to_json(self) -> dict[str, object]:
        return {
            "content_root": "0x" + self.content_root.hex(),
            "cipher_hash": "0x" + self.cipher_hash.hex(),
            "key_id": self.key_id.hex(),
            "plaintext_size": self.plaintext_size,
            "sealed_size": self.sealed_size,
            "chunks": self.chunks,
            "chunk_size": self.chunk_size,
        }


class _Cipher:
    """The per-file AEAD with the nonce layout and header binding."""

    def __init__(self, data_key: bytes, header: Header) -> None:
        _check_key(data_key)
        if header.key_id != key_id(data_key):
            raise SealedDataError(f"wrong data key: the file was sealed under key {header.key_id.hex()}")
        file_key = HKDF(hashes.SHA256(), KEY_LEN, header.salt, _FILE_KEY_INFO).derive(bytes(data_key))
        self.aead = AESGCM(file_key)
        self.header = header
        self.aad = header.to_bytes()

    def nonce(self, index: int, last: bool) -> bytes:
        if index >= MAX_CHUNKS:
            raise SealedDataError("too many chunks for one sealed file")
        return self.header.nonce_prefix + struct.pack(">IB", index, 1 if last else 0)

    def encrypt_into(self, index: int, last: bool, plaintext: memoryview, out: memoryview) -> None:
        self.aead.encrypt_into(self.nonce(index, last), plaintext, self.aad, out)

    def decrypt_into(self, index: int, last: bool, ciphertext: memoryview, out: memoryview) -> None:
        """Decrypt one chunk into `out`; on a failed tag `out` is zeroed, so no caller ever holds unauthenticated bytes."""
        try:
            self.aead.decrypt_into(self.nonce(index, last), ciphertext, self.aad, out)
        except InvalidTag:
            out[: len(ciphertext) - TAG_LEN] = bytes(len(ciphertext) - TAG_LEN)
            raise SealedDataError(_why(index, last)) from None


def _why(index: int, last: bool) -> str:
    where = "final chunk" if last else "chunk"
    return (
        f"{where} {index} failed authentication: the file was altered, truncated, reordered, spliced from "
        "another file, or its header edited (or the key is wrong)"
    )


def _read_full(src: BinaryIO, buf: memoryview) -> int:
    """Fill `buf` from `src` (pipes return short reads); returns the bytes read (short only at EOF)."""
    got = 0
    while got < len(buf):
        n = src.readinto(buf[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


# --------------------------------------------------------------------------------------------- core
#
# Chunks are processed a batch at a time (about 8 MiB), split between two threads: AES-GCM and BLAKE3
# both release the GIL, and each chunk is encrypted and hashed while it is still in cache. The cipher
# hash is one sequential BLAKE3 over the sealed bytes, which BLAKE3 itself spreads over the cores.

_BATCH_BYTES = 8 << 20
#: Threads that seal and open chunks (AES-GCM and the leaf hashes); `llmos bench crypto` compares on this many.
THREADS = 2


def _batch_chunks(chunk_size: int) -> int:
    return max(2, _BATCH_BYTES // chunk_size)


def _seal_batch(
    pool: ThreadPoolExecutor, cipher: _Cipher, first: int, plain: memoryview, out: memoryview, final: bool
) -> list[bytes]:
    """Encrypt `plain` (whole chunks, the last possibly short) into `out`; returns the chunks' leaf hashes."""
    size = cipher.header.chunk_size
    count = max(1, -(-len(plain) // size))
    leaves: list[bytes] = [b""] * count

    def work(part: int) -> None:
        for j in range(part, count, THREADS):
            p = plain[j * size : (j + 1) * size]
            o = out[j * (size + TAG_LEN) : j * (size + TAG_LEN) + len(p) + TAG_LEN]
            cipher.encrypt_into(first + j, final and j == count - 1, p, o)
            leaves[j] = merkle.leaf_hash(p)

    if count == 1:
        work(0)
    else:
        for f in [pool.submit(work, part) for part in range(THREADS)]:
            f.result()
    return leaves


def _open_batch(
    pool: ThreadPoolExecutor, cipher: _Cipher, first: int, sealed: memoryview, out: memoryview, final: bool, hash_leaves: bool
) -> list[bytes]:
    """Authenticate and decrypt whole sealed chunks from `sealed` into `out`."""
    size = cipher.header.chunk_size
    stride = size + TAG_LEN
    count = -(-len(sealed) // stride)
    leaves: list[bytes] = [b""] * count
    failed: dict[int, SealedDataError] = {}

    def work(part: int) -> None:
        for j in range(part, count, THREADS):
            if failed and j > min(failed):
                return  # a chunk before this one already failed; its error is the one to report
            c = sealed[j * stride : (j + 1) * stride]
            o = out[j * size : j * size + len(c) - TAG_LEN]
            try:
                cipher.decrypt_into(first + j, final and j == count - 1, c, o)
            except SealedDataError as exc:
                failed[j] = exc
                return
            if hash_leaves:
                leaves[j] = merkle.leaf_hash(o)

    if count == 1:
        work(0)
    else:
        for f in [pool.submit(work, part) for part in range(THREADS)]:
            f.result()
    if failed:
        # The earliest failing chunk is reported; the caller releases nothing from this batch.
        raise failed[min(failed)]
    return leaves


# --------------------------------------------------------------------------------------------- sealing


def seal_stream(
    src: BinaryIO, dst: BinaryIO, data_key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Progress | None = None
) -> SealResult:
    """Seal everything `src` yields into `dst` in bounded memory (three batches, about 24 MiB)."""
    header = Header.fresh(data_key, chunk_size)
    cipher = _Cipher(data_key, header)
    head = header.to_bytes()
    dst.write(head)
    cipher_hasher = blake3.blake3(head, max_threads=blake3.blake3.AUTO)
    per_batch = _batch_chunks(chunk_size)
    batch = per_batch * chunk_size
    bufs = [bytearray(batch), bytearray(batch)]
    out = bytearray(per_batch * (chunk_size + TAG_LEN))
    leaves: list[bytes] = []
    index = 0
    plain_total = 0
    sealed_total = len(head)
    with ThreadPoolExecutor(max_workers=THREADS + 1) as pool:
        cur = memoryview(bufs[0])
        n_cur = _read_full(src, cur)
        k = 0
        while True:
            nxt = memoryview(bufs[(k + 1) % 2])
            ahead = pool.submit(_read_full, src, nxt) if n_cur == batch else None
            # A batch that fills up may be followed by more data; its last chunk is final only if not.
            n_next = ahead.result() if ahead is not None else 0
            final = n_next == 0
            batch_leaves = _seal_batch(pool, cipher, index, cur[:n_cur], memoryview(out), final)
            count = len(batch_leaves)
            sealed_len = n_cur + count * TAG_LEN
            sealed = memoryview(out)[:sealed_len]
            cipher_hasher.update(sealed)
            dst.write(sealed)
            leaves += batch_leaves
            index += count
            plain_total += n_cur
            sealed_total += sealed_len
            if progress is not None:
                progress(n_cur)
            if final:
                break
            cur, n_cur = nxt, n_next
            k += 1
    return SealResult(
        content_root=merkle.root(leaves),
        cipher_hash=cipher_hasher.digest(),
        key_id=header.key_id,
        plaintext_size=plain_total,
        sealed_size=sealed_total,
        chunks=index,
        chunk_size=chunk_size,
    )


def sealed_size_for(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_LEN + plaintext_size + chunks * TAG_LEN


def seal_buffer(
    data: bytes | bytearray | memoryview, data_key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE, out: bytearray | None = None
) -> tuple[bytearray, SealResult]:
    """Seal an in-memory buffer without copying it; `out` may be a preallocated buffer of the sealed size."""
    header = Header.fresh(data_key, chunk_size)
    cipher = _Cipher(data_key, header)
    plain = memoryview(data).cast("B")
    total = sealed_size_for(len(plain), chunk_size)
    if out is None or len(out) != total:
        out = bytearray(total)
    view = memoryview(out)
    view[:HEADER_LEN] = header.to_bytes()
    # The whole buffer is one batch: a single hand-off to the two threads, no intermediate copies.
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        leaves = _seal_batch(pool, cipher, 0, plain, view[HEADER_LEN:], True)
    index = len(leaves)
    cipher_hash = blake3.blake3(view, max_threads=blake3.blake3.AUTO).digest()
    result = SealResult(merkle.root(leaves), cipher_hash, header.key_id, len(plain), total, index, chunk_size)
    return out, result


def seal_file(
    src: Path, dst: Path, data_key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Progress | None = None
) -> SealResult:
    """Seal `src` to `dst`, atomically: `dst` appears only once complete."""
    tmp = dst.with_name(dst.name + ".partial")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            result = seal_stream(fin, fout, data_key, chunk_size, progress)
        tmp.replace(dst)
    except FileNotFoundError as exc:
        raise SealedDataError(f"cannot seal: {exc.filename} does not exist") from None
    finally:
        tmp.unlink(missing_ok=True)
    return result


def seal_bytes(data: bytes, data_key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[bytes, SealResult]:
    out, result = seal_buffer(data, data_key, chunk_size)
    return bytes(out), result


# --------------------------------------------------------------------------------------------- opening


@dataclass(frozen=True)
class Layout:
    """Where each chunk of a sealed file of known size lies."""

    header: Header
    chunks: int
    last_plain: int
    sealed_size: int

    @property
    def plaintext_size(self) -> int:
        return (self.chunks - 1) * self.header.chunk_size + self.last_plain

    def chunk_offset(self, index: int) -> int:
        return HEADER_LEN + index * (self.header.chunk_size + TAG_LEN)

    def chunk_plain_len(self, index: int) -> int:
        return self.last_plain if index == self.chunks - 1 else self.header.chunk_size

    @classmethod
    def of(cls, header: Header, sealed_size: int) -> Layout:
        body = sealed_size - HEADER_LEN
        stride = header.chunk_size + TAG_LEN
        if body < TAG_LEN:
            raise SealedDataError("truncated: the file ends before its final chunk")
        chunks = -(-body // stride)
        last_sealed = body - (chunks - 1) * stride
        if last_sealed < TAG_LEN:
            raise SealedDataError("truncated: the final chunk is shorter than its tag")
        last_plain = last_sealed - TAG_LEN
        if chunks > 1 and last_plain == 0:
            raise SealedDataError("malformed: an empty final chunk after full chunks (the file was cut at a chunk boundary)")
        if chunks > MAX_CHUNKS:
            raise SealedDataError("malformed: more chunks than the format allows")
        return cls(header, chunks, last_plain, sealed_size)


class _MemorySource:
    """A read-only file over a buffer whose chunks are handed out as views, never copied."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.view = memoryview(data).cast("B").toreadonly()
        self.pos = 0

    def seek(self, pos: int) -> int:
        self.pos = pos
        return pos

    def read(self, n: int) -> bytes:
        chunk = bytes(self.view[self.pos : self.pos + n])
        self.pos += len(chunk)
        return chunk

    def close(self) -> None:
        self.view.release()


class SealedFile:
    """Random access to one sealed file (on disk or in memory): its header, layout and any chunk."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        f.seek(0)
        head = f.read(HEADER_LEN)
        self.header = Header.parse(head)
        self.layout = Layout.of(self.header, size)

    @classmethod
    def open(cls, path: Path) -> SealedFile:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise SealedDataError(f"sealed file not found: {path}") from None
        return cls(f, os.fstat(f.fileno()).st_size)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> SealedFile:
        source = _MemorySource(data)
        return cls(source, len(source.view))  # type: ignore[arg-type]

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SealedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_chunk(self, data_key: bytes, index: int) -> bytes:
        """Decrypt and authenticate chunk `index` alone."""
        layout = self.layout
        if not 0 <= index < layout.chunks:
            raise SealedDataError(f"chunk {index} out of range: the file has {layout.chunks}")
        cipher = _Cipher(data_key, self.header)
        n = layout.chunk_plain_len(index)
        self._f.seek(layout.chunk_offset(index))
        sealed = self._f.read(n + TAG_LEN)
        if len(sealed) != n + TAG_LEN:
            raise SealedDataError(f"truncated: chunk {index} is incomplete")
        out = bytearray(n)
        cipher.decrypt_into(index, index == layout.chunks - 1, memoryview(sealed), memoryview(out))
        return bytes(out)

    def iter_batches(
        self, data_key: bytes, progress: Progress | None = None, hash_leaves: bool = True, into: memoryview | None = None
    ) -> Iterator[tuple[memoryview, list[bytes]]]:
        """Authenticated plaintext a batch of chunks at a time, with the chunks' leaf hashes.

        Each batch view is valid until the next is requested, unless `into` (a buffer of the plaintext
        size) is given: then batches are decrypted in place there.
        """
        layout = self.layout
        cipher = _Cipher(data_key, self.header)
        size = self.header.chunk_size
        stride = size + TAG_LEN
        if isinstance(self._f, _MemorySource) and into is not None:
            # In memory, decrypt straight from the sealed buffer into the output in one batch.
            body = self._f.view[HEADER_LEN : layout.sealed_size]
            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                leaves = _open_batch(pool, cipher, 0, body, into[: layout.plaintext_size], True, hash_leaves)
            if progress is not None:
                progress(layout.plaintext_size)
            yield into[: layout.plaintext_size], leaves
            return
        # Never more chunks per batch than the file has: a header's chunk size alone cannot size the buffers.
        per_batch = min(_batch_chunks(size), layout.chunks)
        body = layout.sealed_size - HEADER_LEN
        raw = [bytearray(min(per_batch * stride, body)), bytearray(min(per_batch * stride, body) if layout.chunks > per_batch else 0)]
        scratch = bytearray(min(per_batch * size, layout.plaintext_size)) if into is None else None
        self._f.seek(HEADER_LEN)

        def span(first: int) -> int:
            last = min(first + per_batch, layout.chunks)
            return (last - first) * stride - (size - layout.last_plain if last == layout.chunks else 0)

        with ThreadPoolExecutor(max_workers=THREADS + 1) as pool:
            want = span(0)
            pending = pool.submit(_read_full, self._f, memoryview(raw[0])[:want])
            first, k = 0, 0
            while first < layout.chunks:
                got = pending.result()
                if got != want:
                    raise SealedDataError(f"truncated: chunks from {first} have {got} of {want} bytes (did the file change?)")
                buf = memoryview(raw[k % 2])[:want]
                nxt_first = first + per_batch
                if nxt_first < layout.chunks:
                    nxt_want = span(nxt_first)
                    pending = pool.submit(_read_full, self._f, memoryview(raw[(k + 1) % 2])[:nxt_want])
                count = min(per_batch, layout.chunks - first)
                plain_len = want - count * TAG_LEN
                if into is not None:
                    out = into[first * size : first * size + plain_len]
                else:
                    out = memoryview(scratch)[:plain_len]  # type: ignore[arg-type]
                final = first + count == layout.chunks
                leaves = _open_batch(pool, cipher, first, buf, out, final, hash_leaves)
                if progress is not None:
                    progress(plain_len)
                yield out, leaves
                first, k, want = nxt_first, k + 1, (span(nxt_first) if nxt_first < layout.chunks else 0)


@dataclass(frozen=True)
class OpenResult:
    content_root: bytes
    plaintext_size: int
    chunks: int


def _check_root(leaves: list[bytes], expected_root: bytes | None) -> bytes:
    content_root = merkle.root(leaves)
    if expected_root is not None and content_root != expected_root:
        raise SealedDataError(
            f"content root mismatch: the plaintext hashes to 0x{content_root.hex()}, expected 0x{expected_root.hex()}"
        )
    return content_root


def open_stream(
    sealed: SealedFile,
    dst: BinaryIO,
    data_key: bytes,
    expected_root: bytes | None = None,
    progress: Progress | None = None,
) -> OpenResult:
    """Write the authenticated plaintext to `dst` a batch at a time; a failing batch is never written."""
    leaves: list[bytes] = []
    for out, batch_leaves in sealed.iter_batches(data_key, progress):
        dst.write(out)
        leaves += batch_leaves
    root = _check_root(leaves, expected_root)
    return OpenResult(root, sealed.layout.plaintext_size, sealed.layout.chunks)


def open_file(
    src: Path, dst: Path, data_key: bytes, expected_root: bytes | None = None, progress: Progress | None = None
) -> OpenResult:
    """Open `src` into `dst` (mode 0600); on any failure no output file is left behind."""
    tmp = dst.with_name(dst.name + ".partial")
    created = False
    try:
        with SealedFile.open(src) as sealed:
            # A fresh file only: never through a planted symlink, never inheriting another file's mode.
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                raise SealedDataError(f"{tmp} exists (another open in progress, or left over): remove it and retry") from None
            created = True
            with os.fdopen(fd, "wb") as fout:
                result = open_stream(sealed, fout, data_key, expected_root, progress)
        tmp.replace(dst)
        return result
    finally:
        if created:
            tmp.unlink(missing_ok=True)


def open_to_memory(
    sealed: SealedFile | bytes | bytearray,
    data_key: bytes,
    expected_root: bytes | None = None,
    progress: Progress | None = None,
    out: bytearray | None = None,
    verify_root: bool = True,
) -> bytearray:
    """The whole plaintext in memory (how a worker reads training data: it never touches disk).

    With `verify_root` the content root is computed and compared with `expected_root` when given; on
    any failure the partly decrypted buffer is wiped before the error propagates.
    """
    if isinstance(sealed, (bytes, bytearray)):
        sealed = SealedFile.from_bytes(sealed)
    size = sealed.layout.plaintext_size
    if out is None or len(out) != size:
        out = bytearray(size)
    view = memoryview(out)
    leaves: list[bytes] = []
    try:
        for _, batch_leaves in sealed.iter_batches(data_key, progress, hash_leaves=verify_root, into=view):
            leaves += batch_leaves
        if verify_root:
            _check_root(leaves, expected_root)
    except BaseException:
        view[:] = bytes(size)  # wipe: nothing decrypted before the failure survives it
        raise
    return out


def cipher_hash_of(path: Path, progress: Progress | None = None) -> bytes:
    """BLAKE3 of a sealed file, read in 4 MiB steps."""
    hasher = blake3.blake3()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    try:
        with open(path, "rb") as f:
            while n := f.readinto(buf):
                hasher.update(view[:n])
                if progress is not None:
                    progress(n)
    except FileNotFoundError:
        raise SealedDataError(f"sealed file not found: {path}") from None
    return hasher.digest()


def verify_cipher_hash(path: Path, expected: bytes, progress: Progress | None = None) -> None:
    actual = cipher_hash_of(path, progress)
    if actual != expected:
        raise SealedDataError(f"cipher hash mismatch: {path} hashes to 0x{actual.hex()}, expected 0x{expected.hex()}")


def inspect(path: Path) -> dict[str, object]:
    """Header and hashes of a sealed file; needs no key."""
    with SealedFile.open(path) as sealed:
        h, layout = sealed.header, sealed.layout
    return {
        "version": h.version,
        "aead": "AES-256-GCM",
        "chunk_size": h.chunk_size,
        "chunks": layout.chunks,
        "plaintext_size": layout.plaintext_size,
        "sealed_size": layout.sealed_size,
        "key_id": h.key_id.hex(),
        "salt": h.salt.hex(),
        "nonce_prefix": h.nonce_prefix.hex(),
        "cipher_hash": "0x" + cipher_hash_of(path).hex(),
    }
