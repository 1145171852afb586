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
from costsim.loss import LossProfile, load_loss_profile, predict_curve
from costsim.ops import StageShape
from costsim.paper import full_training, paper_incremental, study_cost_ratio
from costsim.planner import Budget, Planner, SearchSpace
from costsim.profile import CostProfile, load_profile
from costsim.spec import HardwareSpec, ModelSpec, ScheduleSpec, StageSpec, TrainingSpec, load_spec, parse_spec

__all__ = [
    "Budget", "CostProfile", "CostsimError", "GPUSpec", "HardwareSpec", "LossProfile", "ModelSpec", "Planner",
    "ScheduleEstimate", "ScheduleSpec", "SearchSpace", "SpecError", "StageCosts", "StageEstimate", "StageShape",
    "StageSpec", "TotalEstimate", "TrainingSpec", "estimate", "estimate_many", "full_training", "gpu_preset_names",
    "load_gpu", "load_loss_profile", "load_profile", "load_spec", "paper_incremental", "parse_spec",
    "predict_curve", "study_cost_ratio", "study_units",
]
