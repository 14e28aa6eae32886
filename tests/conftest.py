"""Shared fixtures: one deployed suite per module on the embedded chain, reset between tests by snapshot."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker already owns a core: one math thread per process (and per worker process the
    # tests start) avoids OpenMP oversubscription, which slows torch several times over on 2 cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from llmos_chain.chain.connect import connect  # noqa: E402
from tests.helpers import World, deploy_world  # noqa: E402


@pytest.fixture(scope="module")
def _module_world() -> World:
    world = deploy_world(connect())
    world.register_worker()
    world.register_dataset()
    return world


@pytest.fixture
def world(_module_world: World) -> Iterator[World]:
    """A suite with one registered worker (8×80 GiB, 1 ETH stake) and one dataset; state reset after the test."""
    tester = _module_world.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    try:
        yield _module_world
    finally:
        tester.revert_to_snapshot(snapshot)
