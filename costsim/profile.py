"""Calibration profiles: the fitted efficiency parameters of the time and memory models.

A profile is data (costsim/data/profiles/NAME.json), fitted from measured steps by
``python -m costsim.calibrate``; ``generic`` holds uncalibrated priors.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from costsim.errors import SpecError
from costsim.shipped import shipped_names, shipped_text


class CostProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    device: str = Field(description="the device kind the measurements came from")
    # time model
    matmul_efficiency: float = Field(gt=0, le=1.5, description="large-matmul rate / peak")
    matmul_half_flops: float = Field(ge=0, description="a matmul of this many FLOPs runs at half the large rate")
    attention_efficiency: float = Field(gt=0, description="counted attention FLOPs / (peak * time)")
    bandwidth_efficiency: float = Field(gt=0, le=1.5, description="memory-bound ops: achieved / peak HBM bandwidth")
    launch_overhead_s: float = Field(ge=0, description="per kernel (eager PyTorch dispatch + launch)")
    # memory model
    logits_transient_bytes: float = Field(
        ge=0, description="bytes per logit element alive at the backward peak, beyond saved ones")
    memory_overhead_bytes: float = Field(ge=0, description="workspaces and fragments not in the op model")
    reserve_fraction: float = Field(ge=0, description="allocator reserve on top of allocated: this share of the "
                                    "step's one-off transients (memory.reserved_bytes)")
    reserve_bytes: float = Field(0.0, ge=0, description="allocator reserve on top of allocated: these bytes of "
                                 "cached blocks whatever the model (memory.reserved_bytes)")
    fitted_on: str = ""
    holdout_report: dict = Field(default_factory=dict)


@cache
def profile_names() -> tuple[str, ...]:
    return shipped_names("profiles")


@cache
def load_profile(name_or_path: str) -> CostProfile:
    """A shipped profile by name, or a profile JSON file by path."""
    if name_or_path in profile_names():
        text = shipped_text("profiles", name_or_path)
    elif Path(name_or_path).is_file():
        text = Path(name_or_path).read_text()
    else:
        raise SpecError(
            f"unknown calibration profile {name_or_path!r}; use one of {', '.join(profile_names())} "
            "or a profile .json path"
        )
    try:
        return CostProfile.model_validate(json.loads(text))
    except ValueError as exc:  # bad JSON, or pydantic's ValidationError
        first = (str(exc).strip().splitlines() or ["invalid"])[0]
        raise SpecError(f"calibration profile {name_or_path!r} is not a valid profile ({first}); write one with "
                        "python -m costsim.calibrate") from None


def profile_for(gpu_key: str | None, requested: str | None) -> CostProfile:
    """The requested profile; else the GPU preset's own if one ships; else generic."""
    if requested:
        return load_profile(requested)
    if gpu_key and gpu_key in profile_names():
        return load_profile(gpu_key)
    return load_profile("generic")
