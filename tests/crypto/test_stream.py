"""The sealed format: round trips, every attack failing closed, and bounded streaming."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmos_chain.crypto import merkle, stream
from llmos_chain.crypto.stream import HEADER_LEN, TAG_LEN, SealedFile, open_to_memory, seal_bytes
from llmos_chain.errors import SealedDataError

KEY = bytes(range(32))


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 4096, 3 * 4096 + 1, 5 * 4096 - 1])
def test_round_trip_sizes(size: int) -> None:
    data = os.urandom(size)
    sealed, result = seal_bytes(data, KEY, chunk_size=4096)
    assert len(sealed) == result.sealed_size == HEADER_LEN + size + result.chunks * TAG_LEN
    assert result.chunks == max(1, -(-size // 4096))
    assert result.content_root == merkle.root_of(_chunks(data, 4096))
    assert result.cipher_hash == blake3.blake3(sealed).digest()
    assert bytes(open_to_memory(sealed, KEY, result.content_root)) == data
    with SealedFile.from_bytes(sealed) as f:
        for i, chunk in enumerate(_chunks(data, 4096)):
            assert f.read_chunk(KEY, i) == chunk  # random access by index


def test_stream_and_buffer_paths_agree(tmp_path: Path) -> None:
    data = os.urandom(3 * 65536 + 17)
    src, dst = tmp_path / "p", tmp_path / "s"
    src.write_bytes(data)
    result = stream.seal_file(src, dst, KEY, chunk_size=65536)
    assert result.cipher_hash == stream.cipher_hash_of(dst)
    out = tmp_path / "o"
    opened = stream.open_file(dst, out, KEY, result.content_root)
    assert out.read_bytes() == data and opened.content_root == result.content_root
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert stream.inspect(dst)["chunks"] == 4


class _PatternSource(io.RawIOBase):
    """Deterministic pseudo-random bytes without holding them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = hashlib.shake_256(b"llmos").digest(1 << 20)

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left, len(self.block))
        b[:n] = self.block[:n]
        self.left -= n
        return n


class _HashSink(io.RawIOBase):
    def __init__(self) -> None:
        self.h = blake3.blake3()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.h.update(b)
        self.size += len(b)
        return len(b)


@pytest.mark.slow
def test_multi_gib_streamed_round_trip(tmp_path: Path) -> None:
    size = (2 << 30) + 12345  # 2 GiB and change, never held in memory
    sealed_path = tmp_path / "big.sealed"
    with open(sealed_path, "wb") as out:
        result = stream.seal_stream(_PatternSource(size), out, KEY)  # type: ignore[arg-type]
    assert result.plaintext_size == size and sealed_path.stat().st_size == result.sealed_size
    expected = _HashSink()
    src = _PatternSource(size)
    buf = bytearray(1 << 20)
    while n := src.readinto(memoryview(buf)):
        expected.write(bytes(buf[:n]))
    sink = _HashSink()
    with SealedFile.open(sealed_path) as sealed:
        opened = stream.open_stream(sealed, sink, KEY, result.content_root)  # type: ignore[arg-type]
    assert opened.plaintext_size == size == sink.size
    assert sink.h.digest() == expected.h.digest()


# ------------------------------------------------------------------------------------------ attacks


def _sealed(size: int = 5 * 1024 + 100, chunk: int = 1024) -> tuple[bytes, bytes]:
    data = os.urandom(size)
    sealed, _ = seal_bytes(data, KEY, chunk_size=chunk)
    return data, sealed


def _open_fails(sealed: bytes, key: bytes = KEY, match: str | None = None) -> SealedDataError:
    with pytest.raises(SealedDataError, match=match) as caught:
        open_to_memory(sealed, key)
    return caught.value


def test_every_flipped_bit_position_class_fails() -> None:
    _, sealed = _sealed()
    positions = [0, 8, 9, 12, 20, 60, HEADER_LEN, HEADER_LEN + 1040, len(sealed) - 1, len(sealed) - 17]
    for pos in positions:
        tampered = bytearray(sealed)
        tampered[pos] ^= 0x01
        _open_fails(bytes(tampered))


def test_dropped_last_chunk_fails() -> None:
    _, sealed = _sealed()
    last = (len(sealed) - HEADER_LEN) % (1024 + TAG_LEN)
    _open_fails(sealed[:-last], match="final chunk 4 failed")
    _open_fails(sealed[: HEADER_LEN + 2 * (1024 + TAG_LEN)], match="final chunk 1 failed")  # cut at a boundary
    _open_fails(sealed[:HEADER_LEN], match="truncated")
    _open_fails(sealed[:-5])


def test_swapped_chunks_fail() -> None:
    _, sealed = _sealed()
    stride = 1024 + TAG_LEN
    c0, c1 = sealed[HEADER_LEN : HEADER_LEN + stride], sealed[HEADER_LEN + stride : HEADER_LEN + 2 * stride]
    swapped = sealed[:HEADER_LEN] + c1 + c0 + sealed[HEADER_LEN + 2 * stride :]
    _open_fails(swapped, match="chunk 0 failed")


def test_chunk_spliced_from_another_file_under_the_same_key_fails() -> None:
    _, a = _sealed()
    _, b = _sealed()
    stride = 1024 + TAG_LEN
    spliced = a[: HEADER_LEN + stride] + b[HEADER_LEN + stride : HEADER_LEN + 2 * stride] + a[HEADER_LEN + 2 * stride :]
    _open_fails(spliced, match="chunk 1 failed")


def test_appended_chunk_fails() -> None:
    data, sealed = _sealed(size=2048)  # two full chunks: the second is final
    _, other = _sealed(size=2048)
    _open_fails(sealed + other[HEADER_LEN : HEADER_LEN + 1024 + TAG_LEN], match="chunk 1 failed")


def test_edited_header_fails() -> None:
    _, sealed = _sealed()
    edited = bytearray(sealed)
    edited[14] ^= 0xFF  # salt
    _open_fails(bytes(edited), match="chunk 0 failed")
    edited = bytearray(sealed)
    edited[9] = 2  # AEAD id
    _open_fails(bytes(edited), match="unsupported AEAD")
    edited = bytearray(sealed)
    edited[8] = 9
    _open_fails(bytes(edited), match="unsupported sealed-file version")
    _open_fails(b"garbage" * 20, match="bad magic")


def test_wrong_key_fails_before_decrypting() -> None:
    _, sealed = _sealed()
    _open_fails(sealed, key=os.urandom(32), match="wrong data key")


def test_no_plaintext_of_a_failing_chunk_is_released(tmp_path: Path) -> None:
    data, sealed = _sealed()
    tampered = bytearray(sealed)
    tampered[HEADER_LEN + 3 * (1024 + TAG_LEN) + 5] ^= 0x80  # inside chunk 3
    # into memory: the buffer is wiped
    out = bytearray(len(data))
    with pytest.raises(SealedDataError, match="chunk 3 failed"):
        open_to_memory(bytes(tampered), KEY, out=out)
    assert out == bytearray(len(data))
    # to a file: nothing is left behind
    path = tmp_path / "t.sealed"
    path.write_bytes(bytes(tampered))
    with pytest.raises(SealedDataError):
        stream.open_file(path, tmp_path / "out", KEY)
    assert list(tmp_path.iterdir()) == [path]
    # to a stream: only whole verified batches before the failing one are written (none here: one batch)
    sink = io.BytesIO()
    with SealedFile.open(path) as f, pytest.raises(SealedDataError):
        stream.open_stream(f, sink, KEY)
    assert data[3 * 1024 : 4 * 1024] not in sink.getvalue()


def test_content_root_mismatch_is_reported() -> None:
    data, sealed = _sealed()
    with pytest.raises(SealedDataError, match="content root mismatch"):
        open_to_memory(sealed, KEY, expected_root=b"\x01" * 32)


def test_cipher_hash_check(tmp_path: Path) -> None:
    _, sealed = _sealed()
    path = tmp_path / "s"
    path.write_bytes(sealed)
    stream.verify_cipher_hash(path, blake3.blake3(sealed).digest())
    with pytest.raises(SealedDataError, match="cipher hash mismatch"):
        stream.verify_cipher_hash(path, b"\x00" * 32)


def test_bad_parameters() -> None:
    with pytest.raises(SealedDataError, match="chunk size"):
        seal_bytes(b"x", KEY, chunk_size=0)
    with pytest.raises(SealedDataError, match="32 bytes"):
        seal_bytes(b"x", b"short")
    _, sealed = _sealed()
    with SealedFile.from_bytes(sealed) as f, pytest.raises(SealedDataError, match="out of range"):
        f.read_chunk(KEY, 99)


# ------------------------------------------------------------------------------------------ properties


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), chunk=st.integers(1, 700))
def test_property_round_trip(data: bytes, chunk: int) -> None:
    sealed, result = seal_bytes(data, KEY, chunk_size=chunk)
    assert bytes(open_to_memory(sealed, KEY, result.content_root)) == data
    assert result.content_root == merkle.root_of(_chunks(data, chunk))


@settings(max_examples=80, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=2000),
    chunk=st.integers(1, 500),
    corruption=st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
        st.tuples(st.just("truncate"), st.integers(1, 10**6), st.just(0)),
        st.tuples(st.just("extend"), st.integers(1, 600), st.just(0)),
        st.tuples(st.just("swap"), st.integers(0, 10**6), st.integers(0, 10**6)),
    ),
)
def test_property_any_corruption_fails_closed(data: bytes, chunk: int, corruption: tuple[str, int, int]) -> None:
    sealed, _ = seal_bytes(data, KEY, chunk_size=chunk)
    kind, a, b = corruption
    tampered = bytearray(sealed)
    if kind == "flip":
        tampered[a % len(tampered)] ^= 1 << b
    elif kind == "truncate":
        del tampered[len(tampered) - 1 - (a % (len(tampered) - 1)) :]
    elif kind == "extend":
        tampered += os.urandom(a)
    else:
        stride = chunk + TAG_LEN
        n = (len(sealed) - HEADER_LEN + stride - 1) // stride
        i, j = a % n, b % n
        ci = sealed[HEADER_LEN + i * stride : HEADER_LEN + (i + 1) * stride]
        cj = sealed[HEADER_LEN + j * stride : HEADER_LEN + (j + 1) * stride]
        if ci == cj or len(ci) != len(cj):
            return  # nothing to swap
        tampered[HEADER_LEN + i * stride : HEADER_LEN + (i + 1) * stride] = cj
        tampered[HEADER_LEN + j * stride : HEADER_LEN + (j + 1) * stride] = ci
    if bytes(tampered) == sealed:
        return
    with pytest.raises(SealedDataError):
        open_to_memory(bytes(tampered), KEY)


def _with_chunk_size(sealed: bytes, chunk_size: int) -> bytes:
    """The same bytes with the header's chunk-size field (offset 10, big-endian u32) replaced."""
    return sealed[:10] + chunk_size.to_bytes(4, "big") + sealed[14:]


def test_a_header_cannot_make_the_opener_allocate_gigabytes(tmp_path: Path) -> None:
    import tracemalloc

    key = stream.new_data_key()
    sealed, _ = seal_bytes(b"x" * 100, key, chunk_size=4096)
    huge = _with_chunk_size(sealed, 1 << 30)
    with pytest.raises(SealedDataError, match="invalid chunk size"):
        SealedFile.from_bytes(huge)
    # the largest chunk size the format allows, declared by a 185-byte file: the opener sizes its buffers by the file
    path = tmp_path / "tiny.sealed"
    path.write_bytes(_with_chunk_size(sealed, stream.MAX_CHUNK_SIZE))
    tracemalloc.start()
    try:
        with pytest.raises(SealedDataError):
            stream.open_file(path, tmp_path / "out", key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"opening a {path.stat().st_size}-byte file allocated {peak:,} bytes"


def test_open_file_never_follows_a_planted_partial_symlink(tmp_path: Path) -> None:
    key = stream.new_data_key()
    src = tmp_path / "d.sealed"
    src.write_bytes(seal_bytes(b"secret plaintext" * 100, key, chunk_size=64)[0])
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    os.chmod(victim, 0o644)
    out = tmp_path / "plain"
    (tmp_path / "plain.partial").symlink_to(victim)
    with pytest.raises(SealedDataError, match="exists"):
        stream.open_file(src, out, key)
    assert victim.read_bytes() == b"keep me" and (tmp_path / "plain.partial").is_symlink()  # untouched, not removed
    (tmp_path / "plain.partial").unlink()
    stream.open_file(src, out, key)
    assert out.read_bytes() == b"secret plaintext" * 100 and out.stat().st_mode & 0o777 == 0o600


def test_a_failed_tag_leaves_no_unauthenticated_bytes_in_the_callers_buffer() -> None:
    key = stream.new_data_key()
    sealed = bytearray(seal_bytes(os.urandom(256), key, chunk_size=256)[0])
    sealed[HEADER_LEN + 5] ^= 1
    f = SealedFile.from_bytes(bytes(sealed))
    cipher = stream._Cipher(key, f.header)
    out = bytearray(b"\xaa" * 256)
    with pytest.raises(SealedDataError):
        cipher.decrypt_into(0, True, memoryview(bytes(sealed[HEADER_LEN:])), memoryview(out))
    assert out == bytearray(256)


def test_known_answer_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed key, salt and nonce prefix give fixed bytes: the sealed format cannot drift silently (a change here is a
    format change: bump the version, keep reading v1)."""
    monkeypatch.setattr(stream.os, "urandom", lambda n: b"\x5a" * n if n == stream.SALT_LEN else b"\xa5" * n)
    plain = b"llmos known answer: sealed format v1\n" * 3
    key = bytes(range(32))
    sealed, result = seal_bytes(plain, key, chunk_size=40)
    assert sealed[:HEADER_LEN] == (b"llmosSD\x00" + b"\x01" + b"\x01" + (40).to_bytes(4, "big") + b"\x5a" * 32 + b"\xa5" * 7
                                   + stream.key_id(key))
    assert len(sealed) == HEADER_LEN + len(plain) + 3 * TAG_LEN == 228
    assert blake3.blake3(sealed).hexdigest() == "ca0ad9ee52bc82ee5c6aca8948841b0301f6c78e4013fc7579e8c3c8c403b8a4"
    assert result.content_root.hex() == "6fd575f08afa6c8c87914d8d5c69d5d133daa6186256fe2437022cb38814961e"
    assert bytes(open_to_memory(sealed, key, result.content_root)) == plain
