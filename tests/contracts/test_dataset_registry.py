"""DatasetRegistry: registration, URI updates, grants with expiry, revocation and the canRead view."""

from __future__ import annotations

from web3.logs import DISCARD

from llmos_chain.chain.contracts import Sender
from tests.helpers import ROOT, World, h, reverts


def test_register_and_read_back(world: World) -> None:
    dataset_id, receipt = world.act(world.stranger).register_dataset(h("root2"), h("cipher2"), 77, "https://example.org/d")
    event = world.suite.datasets.events.DatasetRegistered().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (event["datasetId"], event["owner"], event["size"]) == (dataset_id, world.stranger.address, 77)
    record = world.suite.datasets.functions.getDataset(dataset_id).call()
    assert list(record) == [world.stranger.address, 77, h("root2"), h("cipher2"), "https://example.org/d"]
    assert world.suite.datasets.functions.contentRoot(world.dataset_id).call() == ROOT
    assert world.suite.datasets.functions.datasetCount().call() == dataset_id == 2
    assert world.suite.datasets.functions.exists(dataset_id).call()
    assert not world.suite.datasets.functions.exists(99).call()


def test_register_rejects_empty_hashes(world: World) -> None:
    with reverts("DatasetInvalidRoot"):
        world.act(world.owner).register_dataset(b"\0" * 32, h("c"), 1, "file:///x")
    with reverts("DatasetInvalidRoot"):
        world.act(world.owner).register_dataset(h("r"), b"\0" * 32, 1, "file:///x")


def test_update_uri(world: World) -> None:
    fn = world.suite.datasets.functions
    Sender(world.w3, world.owner).transact(fn.updateURI(world.dataset_id, "https://new/place"))
    assert fn.getDataset(world.dataset_id).call()[4] == "https://new/place"
    with reverts("DatasetNotOwner", datasetId=world.dataset_id, caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(fn.updateURI(world.dataset_id, "x"))
    with reverts("DatasetNotFound", datasetId=42):
        Sender(world.w3, world.owner).transact(fn.updateURI(42, "x"))
    with reverts("DatasetNotFound", datasetId=42):
        from llmos_chain.chain.contracts import call

        call(fn.getDataset(42))


def test_grant_expiry_and_revocation_drive_can_read(world: World) -> None:
    fn = world.suite.datasets.functions
    job = 5
    assert not fn.canRead(world.dataset_id, job, world.worker).call()
    world.grant(job, ttl=1000)
    assert fn.canRead(world.dataset_id, job, world.worker).call()
    assert not fn.canRead(world.dataset_id, job + 1, world.worker).call()  # per job
    assert not fn.canRead(world.dataset_id, job, world.stranger.address).call()  # per worker
    grant = fn.getGrant(world.dataset_id, job, world.worker).call()
    assert 0 < grant[1] - grant[0] <= 1000 and grant[2] == 0
    world.advance(1001)
    assert not fn.canRead(world.dataset_id, job, world.worker).call()
    world.grant(job, ttl=1000)  # an expired grant may be renewed
    receipt = Sender(world.w3, world.owner).transact(fn.revokeAccess(world.dataset_id, job, world.worker))
    assert world.suite.datasets.events.AccessRevoked().process_receipt(receipt, errors=DISCARD)[0]["args"]["jobId"] == job
    assert not fn.canRead(world.dataset_id, job, world.worker).call()
    with reverts("DatasetGrantNotFound", datasetId=world.dataset_id, jobId=job, worker=world.worker):
        Sender(world.w3, world.owner).transact(fn.revokeAccess(world.dataset_id, job, world.worker))
    world.grant(job)  # a revoked grant may be issued again
    assert fn.canRead(world.dataset_id, job, world.worker).call()


def test_grant_reverts(world: World) -> None:
    owner = world.act(world.owner)
    later = world.now() + 1000
    with reverts("DatasetNotOwner", caller=world.stranger.address):
        world.act(world.stranger).grant(world.dataset_id, 1, world.worker, later, b"k")
    with reverts("DatasetNotFound", datasetId=9):
        owner.grant(9, 1, world.worker, later, b"k")
    with reverts("DatasetInvalidGrant"):
        owner.grant(world.dataset_id, 1, "0x" + "00" * 20, later, b"k")
    with reverts("DatasetInvalidGrant"):
        owner.grant(world.dataset_id, 1, world.worker, later, b"")
    with reverts("DatasetGrantExpiryInPast", expiresAt=world.now()):
        owner.grant(world.dataset_id, 1, world.worker, world.now(), b"k")
    owner.grant(world.dataset_id, 1, world.worker, later, b"k")
    with reverts("DatasetGrantActive", datasetId=world.dataset_id, jobId=1, worker=world.worker):
        owner.grant(world.dataset_id, 1, world.worker, later, b"k")
    with reverts("DatasetGrantNotFound"):
        owner.revoke(world.dataset_id, 2, world.worker)
    with reverts("DatasetNotOwner"):
        world.act(world.stranger).revoke(world.dataset_id, 1, world.worker)


def test_listener_is_set_once(world: World) -> None:
    fn = world.suite.datasets.functions.setGrantListener(world.stranger.address)
    with reverts("DatasetRegistryListenerAlreadySet", listener=world.suite.market.address):
        Sender(world.w3, world.deployer).transact(fn)
    with reverts("OwnableUnauthorizedAccount"):
        Sender(world.w3, world.stranger).transact(fn)


def test_registry_without_listener_still_grants(world: World) -> None:
    deployer = Sender(world.w3, world.deployer)
    fresh, _ = deployer.deploy("DatasetRegistry", world.deployer.address)
    deployer.transact(fresh.functions.registerDataset(h("r"), h("c"), 1, "file:///x"))
    deployer.transact(fresh.functions.grantAccess(1, 1, world.worker, world.now() + 100, b"k"))
    assert fresh.functions.canRead(1, 1, world.worker).call()
