"""A run's settings as one typed value, and their bounds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .schedule import count_model_calls

__all__ = ["LIMITS", "Settings", "check_int"]

#: Bounds on the API's settings (inclusive). ``steps`` is further bounded by the model's training steps.
LIMITS = {
    "steps": (1, 1000),
    "jump_length": (1, 1000),
    "jump_n_sample": (1, 20),
    "num_samples": (1, 16),
    "seed": (0, 2**63 - 1),
    "classifier_scale": (0, 100),
}


def check_int(name: str, value) -> int:
    """``value`` as an int within ``LIMITS[name]``, or a ValueError naming the setting."""
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """What a RePaint run does, apart from its image and mask. The paper's defaults: T=250, j=10, r=10.

    ``steps``: T, the reverse steps; ``jump_length``: j, the steps between resamplings; ``jump_n_sample``: r (the
    paper's n), how many times each jump is taken; ``num_samples``: sample i uses seed ``seed + i``; ``compare``:
    also run r = 1 from the same seeds, in the same batch; ``class_label``: a class-conditional model's class (None:
    each sample draws one from its seed); ``classifier_scale``: classifier guidance (None: the model's default).
    """

    steps: int = 250
    jump_length: int = 10
    jump_n_sample: int = 10
    num_samples: int = 1
    seed: int = 0
    compare: bool = False
    class_label: int | None = None
    classifier_scale: float | None = None

    @property
    def calls(self) -> int:
        """Batched model calls of the run (a compare run makes the same number, with twice the rows)."""
        return count_model_calls(self.steps, self.jump_length, self.jump_n_sample)

    @property
    def rows(self) -> int:
        """Rows of each batched model call."""
        return self.num_samples * (2 if self.compare else 1)

    @property
    def chains(self) -> list[int]:
        """The r of each chain the run samples: r, and 1 beside it in compare mode."""
        return [self.jump_n_sample, 1] if self.compare else [self.jump_n_sample]

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def checked(self, train_steps: int = LIMITS["steps"][1]) -> Settings:
        """These settings with plain ints, or a ValueError naming the first setting out of :data:`LIMITS`
        (``steps`` also at most the model's ``train_steps``; ``jump_length`` at most ``steps``)."""
        steps = check_int("steps", self.steps)
        if steps > train_steps:
            raise ValueError(f"steps must be between 1 and {train_steps} for this model, got {steps}")
        jump_length = check_int("jump_length", self.jump_length)
        if jump_length > steps:
            raise ValueError(f"jump_length must be at most steps ({steps}), got {jump_length}")
        return self.replace(
            steps=steps,
            jump_length=jump_length,
            jump_n_sample=check_int("jump_n_sample", self.jump_n_sample),
            num_samples=check_int("num_samples", self.num_samples),
            seed=check_int("seed", self.seed),
            compare=bool(self.compare),
        )
