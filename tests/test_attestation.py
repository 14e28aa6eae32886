"""The EIP-712 attestation: Python and Solidity agree on the digest; signing and verification."""

from __future__ import annotations

import pytest
from eth_account import Account

from llmos_chain.attestation import Attestation, digest, recover, sign, typed_data, verify
from llmos_chain.errors import AttestationError
from tests.helpers import World, h


def _att(**overrides: object) -> Attestation:
    values: dict[str, object] = dict(
        job_id=3, worker="0x" + "11" * 20, dataset_root=h("d"), base_model_hash=h("b"), recipe_hash=h("r"),
        output_hash=h("o"), metrics_hash=h("m"), trajectory_root=h("t"), start_time=10, end_time=20,
    )
    values.update(overrides)
    return Attestation(**values)  # type: ignore[arg-type]


def test_digest_matches_the_contract(world: World) -> None:
    att = world.attestation(1)
    on_chain = world.suite.market.functions.attestationDigest(att.as_tuple()).call()
    assert on_chain == digest(att, world.conn.chain_id, world.suite.market.address)


def test_domain_separator_matches_the_contract(world: World) -> None:
    from eth_account.messages import encode_typed_data

    doc = typed_data(_att(), world.conn.chain_id, world.suite.market.address)
    assert encode_typed_data(full_message=doc).header == world.suite.market.functions.domainSeparator().call()


def test_sign_recover_verify() -> None:
    key = Account.create()
    att = _att(worker=key.address)
    signature = sign(att, key, 1, "0x" + "22" * 20)
    assert recover(att, signature, 1, "0x" + "22" * 20) == key.address
    verify(att, signature, key.address, 1, "0x" + "22" * 20)
    for chain, market, other in [(2, "0x" + "22" * 20, att), (1, "0x" + "33" * 20, att), (1, "0x" + "22" * 20, _att(worker=key.address, end_time=21))]:
        with pytest.raises(AttestationError, match="signed by"):
            verify(other, signature, key.address, chain, market)
    with pytest.raises(AttestationError, match="unrecoverable"):
        recover(att, b"\x00" * 10, 1, "0x" + "22" * 20)


def test_json_round_trip_and_validation() -> None:
    att = _att()
    assert Attestation.from_json(att.to_json()) == att
    with pytest.raises(AttestationError, match="32 bytes"):
        _att(output_hash=b"short")
    with pytest.raises(AttestationError, match="times"):
        _att(start_time=30, end_time=20)
    with pytest.raises(AttestationError, match="malformed"):
        Attestation.from_json({"job_id": 1})
