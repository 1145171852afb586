"""costsim: cost and loss planning for language-model pretraining runs that grow."""

from costsim.engine import (
    ScheduleEstimate,
    StageCosts,
    StageEstimate,
    TotalEstimate,
    estimate,
    estimate_many,
    study_units,
)
from costsim.errors import CostsimError, SpecError
from costsim.hardware import GPUSpec, gpu_preset_names, load_gpu
from costsim.ops import StageShape
from costsim.paper import full_training, paper_incremental, study_cost_ratio
from costsim.profile import CostProfile, load_profile
from costsim.spec import HardwareSpec, ModelSpec, ScheduleSpec, StageSpec, TrainingSpec, load_spec, parse_spec

__all__ = [
    "CostProfile", "CostsimError", "GPUSpec", "HardwareSpec", "ModelSpec", "ScheduleEstimate", "ScheduleSpec",
    "SpecError", "StageCosts", "StageEstimate", "StageShape", "StageSpec", "TotalEstimate", "TrainingSpec",
    "estimate", "estimate_many", "full_training", "gpu_preset_names", "load_gpu", "load_profile", "load_spec",
    "paper_incremental", "parse_spec", "study_cost_ratio", "study_units",
]
