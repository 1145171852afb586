"""Learning-rate schedules, chosen in the spec by ``kind`` (a discriminated union).

The study used a constant 6e-4 with no warmup. ``lr_at`` is the one place that turns
a schedule into a number; training and the loss model both call it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class _Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lr: float = Field(6e-4, gt=0, le=1e10, description="peak learning rate (at most 1e10, far past any trainer: "
                      "values near float's range overflowed the schedule)")
    warmup_steps: int = Field(0, ge=0, le=2**40, description="linear warmup from 0 (at most 2^40 steps)")


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


def lr_at(schedule: ConstantLR | CosineLR | WarmupStableDecayLR, step, total_steps: int):
    """Learning rate at ``step`` (0-based; an int or a numpy array of steps) of a run
    (or stage) of ``total_steps``."""
    step = np.asarray(step, dtype=float)
    peak = schedule.lr
    warm = schedule.warmup_steps
    warmup = peak * (step + 1) / max(warm, 1)
    if isinstance(schedule, ConstantLR):
        after = np.full_like(step, peak)
    elif isinstance(schedule, CosineLR):
        floor = peak * schedule.min_lr_ratio
        progress = np.clip((step - warm) / max(total_steps - warm, 1), 0.0, 1.0)
        after = floor + 0.5 * (peak - floor) * (1 + np.cos(np.pi * progress))
    else:
        floor = peak * schedule.min_lr_ratio
        decay_steps = wsd_decay_steps(schedule, total_steps)
        decay_start = total_steps - decay_steps
        progress = np.clip((step - decay_start + 1) / decay_steps, 0.0, 1.0)
        after = np.where(step < decay_start, peak, peak - (peak - floor) * progress)
    out = np.where(step < warm, warmup, after)
    return float(out) if out.ndim == 0 else out


def wsd_decay_steps(schedule: WarmupStableDecayLR, total_steps: int) -> int:
    """Steps a WSD schedule of ``total_steps`` spends decaying (at least one): ``lr_at``
    decays over them and an export writes them for trainers that take a step count."""
    return max(round(schedule.decay_fraction * total_steps), 1)
