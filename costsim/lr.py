"""Learning-rate schedules, chosen in the spec by ``kind`` (a discriminated union).

The study used a constant 6e-4 with no warmup. ``lr_at`` is the one place that turns
a schedule into a number; training and the loss model both call it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lr: float = Field(6e-4, gt=0, description="peak learning rate")
    warmup_steps: int = Field(0, ge=0, description="linear warmup from 0")


class ConstantLR(_Schedule):
    kind: Literal["constant"] = "constant"


class CosineLR(_Schedule):
    kind: Literal["cosine"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr / peak lr")


class WarmupStableDecayLR(_Schedule):
    kind: Literal["wsd"] = "wsd"
    decay_fraction: float = Field(0.2, gt=0, le=1, description="share of steps spent decaying at the end")
    min_lr_ratio: float = Field(0.0, ge=0, le=1)


LRSchedule = Annotated[ConstantLR | CosineLR | WarmupStableDecayLR, Field(discriminator="kind")]


def lr_at(schedule: ConstantLR | CosineLR | WarmupStableDecayLR, step: int, total_steps: int) -> float:
    """Learning rate at ``step`` (0-based) of a run (or stage) of ``total_steps``."""
    if step < schedule.warmup_steps:
        return schedule.lr * (step + 1) / schedule.warmup_steps
    if isinstance(schedule, ConstantLR):
        return schedule.lr
    floor = schedule.lr * schedule.min_lr_ratio
    if isinstance(schedule, CosineLR):
        span = max(total_steps - schedule.warmup_steps, 1)
        progress = min((step - schedule.warmup_steps) / span, 1.0)
        return floor + 0.5 * (schedule.lr - floor) * (1 + math.cos(math.pi * progress))
    decay_steps = max(round(schedule.decay_fraction * total_steps), 1)
    decay_start = total_steps - decay_steps
    if step < decay_start:
        return schedule.lr
    progress = min((step - decay_start + 1) / decay_steps, 1.0)
    return schedule.lr - (schedule.lr - floor) * progress
