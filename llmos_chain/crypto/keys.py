"""HPKE key grants (RFC 9180, from `cryptography`) and the keystore.

A data key is wrapped to one worker's registered public key for one job. The HPKE `info` binds chain
id, the address of the contract that records the grant (the job market), dataset id, job id and worker
address, so a grant published on-chain cannot be replayed for another job, worker, dataset, market or chain. X25519 + HKDF-SHA256 + AES-256-GCM is the
default suite; ML-KEM-768 + X25519 (post-quantum hybrid) is selectable per worker key, since wrapped
keys on a public chain are kept forever.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from eth_utils import to_canonical_address

from llmos_chain.crypto.kinds import KeyKind
from llmos_chain.crypto.stream import KEY_LEN, key_id
from llmos_chain.errors import ConfigError, SealedDataError

X25519_PUBLIC_LEN = 32
MLKEM768_PUBLIC_LEN = 1184
HYBRID_PUBLIC_LEN = MLKEM768_PUBLIC_LEN + X25519_PUBLIC_LEN  # 1216, as WorkerRegistry checks


@dataclass
class EncryptionKey:
    """An HPKE key pair. `private_bytes` is secret: never print or log it."""

    kind: KeyKind
    private_bytes: bytes

    @classmethod
    def generate(cls, kind: KeyKind = KeyKind.X25519) -> EncryptionKey:
        from cryptography.hazmat.primitives import serialization

        raw_x = x25519.X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        if kind is KeyKind.X25519:
            return cls(kind, raw_x)
        seed = mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
        return cls(kind, seed + raw_x)

    def _x25519(self) -> x25519.X25519PrivateKey:
        return x25519.X25519PrivateKey.from_private_bytes(self.private_bytes[-32:])

    def private_key(self) -> Any:
        if self.kind is KeyKind.X25519:
            return self._x25519()
        return hpke.MLKEM768X25519PrivateKey(mlkem.MLKEM768PrivateKey.from_seed_bytes(self.private_bytes[:64]), self._x25519())

    def public_bytes(self) -> bytes:
        """The public key in the form WorkerRegistry stores (X25519: 32 bytes; hybrid: ML-KEM ‖ X25519)."""
        x_pub = self._x25519().public_key().public_bytes_raw()
        if self.kind is KeyKind.X25519:
            return x_pub
        ml_pub = mlkem.MLKEM768PrivateKey.from_seed_bytes(self.private_bytes[:64]).public_key().public_bytes_raw()
        return ml_pub + x_pub


def _usable_x25519(raw: bytes) -> x25519.X25519PublicKey:
    """An X25519 public key that a key exchange can actually use: low-order points (e.g. 32 zero bytes) give an
    all-zero shared secret, which `cryptography` refuses at wrap time; they are refused here, where the key enters."""
    public = x25519.X25519PublicKey.from_public_bytes(raw)
    try:
        x25519.X25519PrivateKey.generate().exchange(public)
    except ValueError:
        raise ValueError("a low-order point (no key exchange is possible with it)") from None
    return public


def public_key_from_bytes(kind: KeyKind, raw: bytes) -> Any:
    """Parse and validate a registered public key; raises SealedDataError for anything no grant could be wrapped to."""
    try:
        if kind is KeyKind.X25519:
            if len(raw) != X25519_PUBLIC_LEN:
                raise ValueError(f"{len(raw)} bytes")
            return _usable_x25519(raw)
        if len(raw) != HYBRID_PUBLIC_LEN:
            raise ValueError(f"{len(raw)} bytes")
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(raw[:MLKEM768_PUBLIC_LEN]),
            _usable_x25519(raw[MLKEM768_PUBLIC_LEN:]),
        )
    except ValueError as exc:
        raise SealedDataError(f"not a valid {kind.value} public key: {exc}") from None


# ---------------------------------------------------------------------------------------- contexts


@dataclass(frozen=True)
class GrantContext:
    """What a dataset key grant is for; encoded into the HPKE `info`."""

    chain_id: int
    registry: str  # the contract that records the grant: the job market
    dataset_id: int
    job_id: int
    worker: str

    def info(self) -> bytes:
        return (
            b"llmos-grant/1"
            + struct.pack(">QQQ", self.chain_id, self.dataset_id, self.job_id)
            + to_canonical_address(self.registry)
            + to_canonical_address(self.worker)
        )


@dataclass(frozen=True)
class OutputContext:
    """What a sealed output (model or adapter) key is for: one job's result for its client."""

    chain_id: int
    market: str
    job_id: int
    client: str

    def info(self) -> bytes:
        return (
            b"llmos-output/1"
            + struct.pack(">QQ", self.chain_id, self.job_id)
            + to_canonical_address(self.market)
            + to_canonical_address(self.client)
        )


@dataclass(frozen=True)
class CheckpointContext:
    """What a job's checkpoint key is for: replaying that job's training, by the verifier (the market's arbiter)."""

    chain_id: int
    market: str
    job_id: int
    verifier: str

    def info(self) -> bytes:
        return (
            b"llmos-checkpoints/1"
            + struct.pack(">QQ", self.chain_id, self.job_id)
            + to_canonical_address(self.market)
            + to_canonical_address(self.verifier)
        )


@dataclass(frozen=True)
class RankContext:
    """What a data key handed to one rank of a multi-node run is for: one run (`session`, fresh random bytes per run)
    of one job, one rank. The key goes to the rank's ephemeral public key, so the transport between nodes (Ray's,
    unencrypted by default) carries only the HPKE ciphertext."""

    job_id: int
    rank: int
    session: bytes

    def info(self) -> bytes:
        return b"llmos-rank/1" + struct.pack(">QQ", self.job_id, self.rank) + self.session


Context = GrantContext | OutputContext | CheckpointContext | RankContext


def wrap_key(data_key: bytes, kind: KeyKind, recipient_public: bytes, context: Context) -> bytes:
    """HPKE-seal `data_key` to the recipient for exactly this context (enc ‖ ciphertext)."""
    if len(data_key) != KEY_LEN:
        raise SealedDataError(f"a data key is {KEY_LEN} bytes")
    return bytes(kind.suite().encrypt(bytes(data_key), public_key_from_bytes(kind, recipient_public), info=context.info()))


def unwrap_key(wrapped: bytes, key: EncryptionKey, context: Context) -> bytes:
    """Open a wrapped data key; fails unless `key` is the recipient and `context` the one it was made for."""
    try:
        data_key = bytes(key.kind.suite().decrypt(bytes(wrapped), key.private_key(), info=context.info()))
    except (InvalidTag, ValueError):
        raise SealedDataError(
            "cannot unwrap the data key: wrong private key, or the grant was made for another chain, market, "
            "dataset, job or worker"
        ) from None
    if len(data_key) != KEY_LEN:
        raise SealedDataError("the unwrapped key has the wrong length")
    return data_key


# ---------------------------------------------------------------------------------------- keystore

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Keystore:
    """A directory of secret keys, each a 0600 JSON file in a 0700 directory. Nothing here prints a secret."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def _ensure(self) -> None:
        """Create the keystore directory 0700 if it is missing; an existing directory is the user's and keeps its mode
        (the key files themselves are 0600 either way)."""
        try:
            self.root.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            if not self.root.is_dir():
                raise ConfigError(f"keystore {self.root} exists and is not a directory") from None
            return
        os.chmod(self.root, 0o700)  # mkdir's mode is filtered by the umask

    def _write(self, path: Path, payload: dict[str, Any]) -> None:
        self._ensure()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(f"{path} already exists; the keystore never overwrites a key") from None
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)

    def _read(self, path: Path, what: str) -> dict[str, Any]:
        try:
            mode = path.stat().st_mode & 0o777
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no {what} in the keystore {self.root}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"keystore file {path} is unreadable: {exc.__class__.__name__}") from None
        if mode & 0o077:
            raise ConfigError(f"keystore file {path} is readable by others (mode {mode:o}); run chmod 600 on it")
        return raw

    # encryption keys
    def enc_path(self, name: str) -> Path:
        if not _NAME.fullmatch(name):  # fullmatch: `$` alone would accept a trailing newline
            raise ConfigError(f"invalid key name {name!r}: use letters, digits, '.', '_' and '-'")
        return self.root / f"enc-{name}.json"

    def save_encryption_key(self, name: str, key: EncryptionKey) -> Path:
        path = self.enc_path(name)
        self._write(path, {
            "type": "llmos-encryption-key", "version": 1, "name": name, "kind": key.kind.value,
            "private": key.private_bytes.hex(), "public": key.public_bytes().hex(), "created": int(time.time()),
        })
        return path

    def load_encryption_key(self, name: str) -> EncryptionKey:
        raw = self._read(self.enc_path(name), f"encryption key named {name!r}")
        try:
            return EncryptionKey(KeyKind(raw["kind"]), bytes.fromhex(raw["private"]))
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"encryption key {name!r} is malformed: {exc}") from None

    def encryption_keys(self) -> list[dict[str, Any]]:
        """Name, kind and public key of each encryption key (no secrets)."""
        out = []
        for path in sorted(self.root.glob("enc-*.json")):
            raw = self._read(path, path.name)
            out.append({"name": raw.get("name"), "kind": raw.get("kind"), "public": raw.get("public")})
        return out

    # data keys
    def data_path(self, kid: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", kid):
            raise ConfigError(f"invalid data key id {kid!r}: 32 hex digits expected")
        return self.root / f"data-{kid}.json"

    def save_data_key(self, data_key: bytes) -> str:
        kid = key_id(data_key).hex()
        path = self.data_path(kid)
        if not path.exists():
            self._write(path, {"type": "llmos-data-key", "version": 1, "key_id": kid, "key": bytes(data_key).hex(), "created": int(time.time())})
        return kid

    def load_data_key(self, kid: str) -> bytes:
        raw = self._read(self.data_path(kid.lower().removeprefix("0x")), f"data key {kid}")
        try:
            key = bytes.fromhex(raw["key"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"data key {kid} is malformed: {exc}") from None
        if key_id(key).hex() != raw.get("key_id"):
            raise ConfigError(f"data key file for {kid} does not hold that key")
        return key
