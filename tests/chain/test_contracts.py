"""Error decoding and transaction sending in llmos_chain.chain.contracts."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from llmos_chain.chain.contracts import Sender, artifact, decode_revert, error_table
from llmos_chain.errors import ContractRevertError, ToolchainError
from tests.helpers import World, reverts


def test_error_table_knows_every_custom_error() -> None:
    names = {entry["name"] for entry in error_table().values()}
    assert {"JobNotFound", "JobTooLateToStart", "JobRetakeTooSoon", "WorkerHoldsJobs", "DatasetNotOwner", "TestSmartWalletNotOwner",
            "ERC20InsufficientAllowance", "OwnableUnauthorizedAccount", "Error", "Panic"} <= names
    assert "DatasetGrantActive" not in names  # v2: grants live in the market


def test_decode_named_error_with_fields() -> None:
    data = keccak(text="JobInvalidState(uint256,uint8)")[:4] + encode(["uint256", "uint8"], [7, 3])
    error = decode_revert("accept", data)
    assert (error.name, error.fields) == ("JobInvalidState", {"jobId": 7, "state": 3})
    assert str(error) == "accept reverted: JobInvalidState(jobId=7, state=3)"


def test_decode_string_reason_and_unknown_selector() -> None:
    data = keccak(text="Error(string)")[:4] + encode(["string"], ["boom"])
    assert decode_revert("f", data).fields == {"message": "boom"}
    unknown = decode_revert("f", "0xdeadbeef")
    assert unknown.name == "UnknownError" and unknown.raw == "0xdeadbeef"
    assert decode_revert("f", b"").name == "UnknownRevert"


def test_unknown_contract_name() -> None:
    with pytest.raises(ToolchainError, match="unknown contract"):
        artifact("Nope")


def test_decode_v2_errors_with_several_fields() -> None:
    data = keccak(text="JobTooLateToStart(uint256,uint256)")[:4] + encode(["uint256", "uint256"], [3, 1_700_000_000])
    error = decode_revert("grantAccess", data)
    assert (error.name, error.fields) == ("JobTooLateToStart", {"jobId": 3, "latestStart": 1_700_000_000})
    data = keccak(text="JobAttestationMismatch(uint256,string)")[:4] + encode(["uint256", "string"], [4, "time"])
    assert decode_revert("submitResult", data).fields == {"jobId": 4, "field": "time"}


def test_a_mined_failed_transaction_is_replayed_for_its_error(world: World) -> None:
    # An explicit gas limit skips estimation, so the transaction is mined and fails on chain.
    terms = world.terms(world.post())
    with reverts("JobNotFound", jobId=12345) as caught:
        Sender(world.w3, world.client).transact(world.suite.market.functions.cancel(12345, terms.as_tuple()), gas=100_000)
    assert caught.error.fields["tx"].startswith("0x")
    with reverts("JobNotClient", caller=world.stranger.address) as caught:
        Sender(world.w3, world.stranger).transact(world.suite.market.functions.cancel(1, terms.as_tuple()), gas=100_000)
    assert caught.error.fields["tx"].startswith("0x")


def test_revert_in_a_read_only_call(world: World) -> None:
    from llmos_chain.chain.contracts import call

    with pytest.raises(ContractRevertError, match="JobNotFound"):
        call(world.suite.market.functions.getJob(999))
