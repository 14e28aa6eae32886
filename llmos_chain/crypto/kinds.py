"""The HPKE key kinds, apart from the keys themselves: `llmos keys generate --help` names them without loading the
cryptography library (llmos_chain.crypto.keys re-exports KeyKind; it is the same class)."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from llmos_chain.errors import SealedDataError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hpke


class KeyKind(str, Enum):
    """HPKE suites a worker or client key can use; the value order matches the registry's enum."""

    X25519 = "x25519"
    MLKEM768_X25519 = "mlkem768-x25519"

    @property
    def chain_value(self) -> int:
        return list(KeyKind).index(self)

    @classmethod
    def from_chain(cls, value: int) -> KeyKind:
        try:
            return list(KeyKind)[value]
        except IndexError:
            raise SealedDataError(f"unknown key kind {value} in the registry") from None

    def suite(self) -> hpke.Suite:
        from cryptography.hazmat.primitives import hpke

        kem = hpke.KEM.X25519 if self is KeyKind.X25519 else hpke.KEM.MLKEM768_X25519
        return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
