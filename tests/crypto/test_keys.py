"""HPKE key grants bound to their context, and the keystore."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from llmos_chain.crypto.keys import (
    HYBRID_PUBLIC_LEN,
    EncryptionKey,
    GrantContext,
    Keystore,
    KeyKind,
    OutputContext,
    public_key_from_bytes,
    unwrap_key,
    wrap_key,
)
from llmos_chain.errors import ConfigError, SealedDataError

CTX = GrantContext(chain_id=31337, registry="0x" + "aa" * 20, dataset_id=1, job_id=7, worker="0x" + "bb" * 20)


@pytest.mark.parametrize("kind", list(KeyKind))
def test_wrap_unwrap_and_context_binding(kind: KeyKind) -> None:
    key = EncryptionKey.generate(kind)
    public = key.public_bytes()
    assert len(public) == (32 if kind is KeyKind.X25519 else HYBRID_PUBLIC_LEN)
    data_key = os.urandom(32)
    wrapped = wrap_key(data_key, kind, public, CTX)
    assert unwrap_key(wrapped, key, CTX) == data_key
    for other in (
        replace(CTX, chain_id=1),
        replace(CTX, registry="0x" + "ac" * 20),
        replace(CTX, dataset_id=2),
        replace(CTX, job_id=8),
        replace(CTX, worker="0x" + "bc" * 20),
    ):
        with pytest.raises(SealedDataError, match="another chain, market, dataset, job or worker"):
            unwrap_key(wrapped, key, other)
    with pytest.raises(SealedDataError, match="wrong private key"):
        unwrap_key(wrapped, EncryptionKey.generate(kind), CTX)
    tampered = bytearray(wrapped)
    tampered[-1] ^= 1
    with pytest.raises(SealedDataError):
        unwrap_key(bytes(tampered), key, CTX)


def test_output_context_differs_from_grant_context() -> None:
    key = EncryptionKey.generate()
    out = OutputContext(31337, "0x" + "aa" * 20, 7, "0x" + "bb" * 20)
    wrapped = wrap_key(b"k" * 32, KeyKind.X25519, key.public_bytes(), out)
    assert unwrap_key(wrapped, key, out) == b"k" * 32
    assert out.info() != CTX.info()
    # every field of the output context is bound: another client, job, market or chain cannot open it
    for other in (replace(out, client="0x" + "cc" * 20), replace(out, job_id=8), replace(out, market="0x" + "dd" * 20),
                  replace(out, chain_id=1)):
        with pytest.raises(SealedDataError, match="cannot unwrap"):
            unwrap_key(wrapped, key, other)


def test_bad_public_keys_and_kinds() -> None:
    with pytest.raises(SealedDataError, match="not a valid x25519 public key"):
        public_key_from_bytes(KeyKind.X25519, b"\x01" * 31)
    with pytest.raises(SealedDataError, match="mlkem768-x25519"):
        public_key_from_bytes(KeyKind.MLKEM768_X25519, b"\x01" * 32)
    assert KeyKind.from_chain(1) is KeyKind.MLKEM768_X25519
    with pytest.raises(SealedDataError):
        KeyKind.from_chain(5)


def test_keystore_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "ks")
    key = EncryptionKey.generate(KeyKind.MLKEM768_X25519)
    path = store.save_encryption_key("worker-1", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ks").stat().st_mode) == 0o700
    loaded = store.load_encryption_key("worker-1")
    assert loaded.public_bytes() == key.public_bytes()
    with pytest.raises(ConfigError, match="never overwrites"):
        store.save_encryption_key("worker-1", EncryptionKey.generate())
    listed = store.encryption_keys()
    assert listed == [{"name": "worker-1", "kind": "mlkem768-x25519", "public": key.public_bytes().hex()}]
    assert "private" not in json.dumps(listed)
    kid = store.save_data_key(b"d" * 32)
    assert store.load_data_key(kid) == b"d" * 32
    assert store.save_data_key(b"d" * 32) == kid  # idempotent


def test_keystore_errors(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    with pytest.raises(ConfigError, match="no encryption key named"):
        store.load_encryption_key("nope")
    with pytest.raises(ConfigError, match="invalid key name"):
        store.enc_path("../escape")
    with pytest.raises(ConfigError, match="invalid data key id"):
        store.load_data_key("xyz")
    path = store.save_encryption_key("k", EncryptionKey.generate())
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        store.load_encryption_key("k")
    kid = store.save_data_key(b"e" * 32)
    data_path = store.data_path(kid)
    raw = json.loads(data_path.read_text())
    raw["key"] = (b"f" * 32).hex()
    data_path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="does not hold that key"):
        store.load_data_key(kid)


@pytest.mark.parametrize("kind", list(KeyKind))
def test_low_order_x25519_keys_are_refused_where_they_enter(kind: KeyKind) -> None:
    """32 zero bytes (a low-order point) would make every wrap raise deep inside HPKE: refuse it by name up front."""
    good = EncryptionKey.generate(kind).public_bytes()
    bad = good[:-32] + bytes(32)
    public_key_from_bytes(kind, good)
    with pytest.raises(SealedDataError, match="low-order point"):
        public_key_from_bytes(kind, bad)
    with pytest.raises(SealedDataError, match="low-order point"):
        wrap_key(os.urandom(32), kind, bad, CTX)


def test_keystore_leaves_an_existing_directory_mode_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    Keystore(shared).save_encryption_key("k", EncryptionKey.generate())
    assert shared.stat().st_mode & 0o777 == 0o755  # not ours to chmod
    assert (shared / "enc-k.json").stat().st_mode & 0o777 == 0o600  # the key file is private regardless
    fresh = tmp_path / "fresh" / "ks"
    Keystore(fresh).save_encryption_key("k", EncryptionKey.generate())
    assert fresh.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("name", ["worker\n", "worker\r", "a b", "../x", "", ".hidden", "x" * 65])
def test_keystore_refuses_bad_key_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid key name"):
        Keystore(tmp_path).save_encryption_key(name, EncryptionKey.generate())


def test_a_rank_key_opens_only_for_its_rank_and_run() -> None:
    """Multi-node runs: the data key goes to each rank's ephemeral key, bound to the job, the rank and the run."""
    from llmos_chain.crypto.keys import RankContext

    rank_key, data_key = EncryptionKey.generate(), os.urandom(32)
    context = RankContext(job_id=5, rank=1, session=b"\x01" * 16)
    wrapped = wrap_key(data_key, KeyKind.X25519, rank_key.public_bytes(), context)
    assert unwrap_key(wrapped, rank_key, context) == data_key
    for other in (RankContext(5, 0, b"\x01" * 16), RankContext(6, 1, b"\x01" * 16), RankContext(5, 1, b"\x02" * 16)):
        with pytest.raises(SealedDataError):
            unwrap_key(wrapped, rank_key, other)
    with pytest.raises(SealedDataError):
        unwrap_key(wrapped, EncryptionKey.generate(), context)
