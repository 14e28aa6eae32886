"""DatasetRegistry: registration, URI updates and the views the market reads (grants are the market's now)."""

from __future__ import annotations

from web3.logs import DISCARD

from llmos_chain.chain.contracts import Sender, call
from llmos_chain.chain.market import ZERO_ADDRESS
from tests.helpers import ROOT, World, h, reverts


def test_register_and_read_back(world: World) -> None:
    dataset_id, receipt = world.act(world.stranger).register_dataset(h("root2"), h("cipher2"), 77, "https://example.org/d")
    event = world.suite.datasets.events.DatasetRegistered().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (event["datasetId"], event["owner"], event["size"]) == (dataset_id, world.stranger.address, 77)
    assert (event["contentRoot"], event["cipherHash"], event["uri"]) == (h("root2"), h("cipher2"), "https://example.org/d")
    fn = world.suite.datasets.functions
    assert list(fn.getDataset(dataset_id).call()) == [world.stranger.address, 77, h("root2"), h("cipher2"), "https://example.org/d"]
    assert fn.contentRoot(world.dataset_id).call() == ROOT
    assert fn.datasetCount().call() == dataset_id == 2  # the fixture's dataset is 1
    assert fn.ownerOf(dataset_id).call() == world.stranger.address
    assert fn.exists(dataset_id).call()


def test_unknown_dataset_views(world: World) -> None:
    fn = world.suite.datasets.functions
    assert not fn.exists(99).call() and not fn.exists(0).call()
    assert fn.ownerOf(99).call() == ZERO_ADDRESS  # what the market reads to refuse a post: JobUnknownDataset
    assert fn.contentRoot(99).call() == b"\0" * 32
    with reverts("DatasetNotFound", datasetId=99):
        call(fn.getDataset(99))


def test_register_rejects_empty_hashes_and_size(world: World) -> None:
    owner = world.act(world.owner)
    with reverts("DatasetInvalidRoot"):
        owner.register_dataset(b"\0" * 32, h("c"), 1, "file:///x")
    with reverts("DatasetInvalidRoot"):
        owner.register_dataset(h("r"), b"\0" * 32, 1, "file:///x")
    with reverts("DatasetInvalidSize"):
        owner.register_dataset(h("r"), h("c"), 0, "file:///x")


def test_ids_count_from_one_per_registration(world: World) -> None:
    a, _ = world.act(world.client).register_dataset(h("r"), h("c"), 1, "file:///a")
    b, _ = world.act(world.client).register_dataset(h("r"), h("c"), 1, "file:///a")  # same content: a new record
    assert (a, b) == (2, 3)
    assert world.suite.datasets.functions.ownerOf(b).call() == world.client.address


def test_update_uri(world: World) -> None:
    fn = world.suite.datasets.functions
    receipt = Sender(world.w3, world.owner).transact(fn.updateURI(world.dataset_id, "https://new/place"))
    event = world.suite.datasets.events.DatasetURIUpdated().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (event["datasetId"], event["uri"]) == (world.dataset_id, "https://new/place")
    record = fn.getDataset(world.dataset_id).call()
    assert record[4] == "https://new/place" and record[2] == ROOT  # the hashes stay
    with reverts("DatasetNotOwner", datasetId=world.dataset_id, caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(fn.updateURI(world.dataset_id, "x"))
    with reverts("DatasetNotFound", datasetId=42):
        Sender(world.w3, world.owner).transact(fn.updateURI(42, "x"))


def test_the_registry_has_no_grants_any_more(world: World) -> None:
    """v2: access is granted per job by the market (`JobMarket.grantAccess`); the registry keeps no grant state."""
    names = {item.get("name") for item in world.suite.datasets.abi}
    assert not {"grantAccess", "revokeAccess", "canRead", "getGrant", "setGrantListener"} & names
    assert "grantAccess" in {item.get("name") for item in world.suite.market.abi}
