"""Worker tests need torch; the rest of the suite does not (the coordinator installs without it)."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")


@pytest.fixture(scope="session")
def intents_jsonl() -> bytes:
    from llmos_chain.demo import sample_dataset

    return sample_dataset().read_bytes()


@pytest.fixture(scope="session")
def ner_jsonl() -> bytes:
    """A small synthetic NER set: names are PER, cities LOC, everything else O."""
    rnd = random.Random(1)
    names = ["alice", "bob", "carol", "dave", "erin", "frank"]
    cities = ["paris", "tokyo", "lima", "oslo", "cairo", "perth"]
    templates = [["{n}", "lives", "in", "{c}"], ["{n}", "flew", "to", "{c}", "today"], ["we", "met", "{n}", "in", "{c}"]]
    rows = []
    for _ in range(300):
        n, c, t = rnd.choice(names), rnd.choice(cities), rnd.choice(templates)
        rows.append({
            "tokens": [n if w == "{n}" else c if w == "{c}" else w for w in t],
            "tags": ["PER" if w == "{n}" else "LOC" if w == "{c}" else "O" for w in t],
        })
    return "\n".join(json.dumps(r) for r in rows).encode()


from tests.worker.test_runner import setup  # noqa: E402,F401  (shared fixture)


from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


@dataclass
class AnvilProvider:
    """An anvil node with the suite deployed and one registered worker whose HPKE key is in `worker-ks`."""

    node: Any
    world: Any
    deployment: Path
    enc: Any
    signer: Any
    setup: Any

    @property
    def private_key_env(self) -> dict[str, str]:
        return {"LLMOS_PRIVATE_KEY": "0x" + self.signer.key.hex().removeprefix("0x")}


@contextmanager
def anvil_provider(tmp_path: Path, gpus: int = 1, price: int = 10**14, stake_multiple: int = 1) -> Iterator[AnvilProvider]:
    from llmos_chain.chain.connect import connect
    from llmos_chain.chain.devchain import Anvil
    from llmos_chain.chain.market import WorkerParams
    from llmos_chain.crypto.keys import EncryptionKey, Keystore
    from tests.helpers import STAKE, deploy_world
    from tests.worker.test_runner import Setup

    with Anvil() as node:
        world = deploy_world(connect(node.url))
        deployment = tmp_path / "deployment.json"
        world.suite.deployment.save(deployment)
        enc = EncryptionKey.generate()
        Keystore(tmp_path / "worker-ks").save_encryption_key("worker", enc)
        signer = world.accounts[8]
        params = WorkerParams(signer.address, "CPU", gpus, 24, price, enc.public_bytes())
        world.act(world.operator).register_worker(signer.address, params, stake_multiple * STAKE)
        setup = Setup(world, tmp_path, enc, EncryptionKey.generate(), Keystore(tmp_path / "owner-ks"))
        yield AnvilProvider(node, world, deployment, enc, signer, setup)
