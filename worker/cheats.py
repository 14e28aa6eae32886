"""Dishonest workers, for the verification tests and `llmos bench verify`: each is the real Trainer with one change.

Never used by the worker runtime itself; a test or the benchmark patches one into `worker.train.Trainer` for one run.
The cheats begin at step 16 where they begin mid-job (interval 3 with a record every 5 steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import blake3
import torch

from llmos_chain.recipe import Recipe
from worker import train


class FewerSteps(train.Trainer):
    """From step 16 on (interval 3), every other step skips the update but still counts as a step."""

    def train_step(self) -> tuple[float, int]:
        if self.step >= 15 and self.step % 2 == 1:
            _, mask, _ = self.batch()
            self.schedule.step()
            self.step += 1
            return 0.5, int(mask.sum())
        return super().train_step()


class OtherData(train.Trainer):
    """Trains on other labels than the owner's data has."""

    def __init__(self, loaded: Any, recipe: Recipe, split: train.Batchable) -> None:
        split = train.Batchable(split.input_ids, split.attention_mask, split.labels.roll(1), split.tokens)
        super().__init__(loaded, recipe, split)


class SwapFinal(train.Trainer):
    """Trains honestly, then hands in other weights: the last record and the output name the swapped ones."""

    def train_step(self) -> tuple[float, int]:
        out = super().train_step()
        if self.step == self.total:
            with torch.no_grad():
                for _, p in self.named:
                    p.add_(0.01)
        return out


class Fabricated(train.Trainer):
    """Stops training after step 15 and makes up the weights hashes of the records after it."""

    def train_step(self) -> tuple[float, int]:
        if self.step >= 15:
            self.batch()
            self.step += 1
            return 0.1, 1
        return super().train_step()

    def weights_hash(self) -> str:
        return blake3.blake3(f"made up {self.step}".encode()).hexdigest() if self.step > 15 else super().weights_hash()


class OtherBase(train.Trainer):
    """Starts from another base model (the frozen weights perturbed) while attesting the job's."""

    def __init__(self, loaded: Any, recipe: Recipe, split: train.Batchable) -> None:
        with torch.no_grad():
            for p in loaded.model.parameters():
                p.mul_(1.05)
        super().__init__(loaded, recipe, split)


#: cheat -> (its trainer, the interval where it begins given the job's number of intervals), for trajectory_every = 5
CHEATS: dict[str, tuple[type[train.Trainer], Callable[[int], int]]] = {
    "fewer_steps": (FewerSteps, lambda n: 3),
    "other_data": (OtherData, lambda n: 0),
    "swapped_final_weights": (SwapFinal, lambda n: n - 1),
    "fabricated_records": (Fabricated, lambda n: 3),
    "other_base_model": (OtherBase, lambda n: 0),
}
