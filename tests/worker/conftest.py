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
