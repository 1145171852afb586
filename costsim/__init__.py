"""costsim: cost and loss planning for language-model pretraining runs that grow."""

import importlib
import sys
from types import ModuleType

from costsim.api import CALLABLE_MODULES
from costsim.engine import (
    ScheduleEstimate,
    StageCosts,
    StageEstimate,
    TotalEstimate,
    estimate_many,
    study_units,
)
from costsim.errors import CostsimError, SpecError
from costsim.hardware import GPUSpec, gpu_preset_names, load_gpu
from costsim.loss import LossProfile, load_loss_profile, predict_curve
from costsim.models import ExternalModel, from_hf_config, load_preset, preset_names
from costsim.ops import StageShape
from costsim.paper import full_training, paper_incremental, study_cost_ratio
from costsim.parallel import Layout
from costsim.planner import Budget, Planner, SearchSpace
from costsim.profile import CostProfile, load_profile
from costsim.spec import HardwareSpec, ModelSpec, ScheduleSpec, StageSpec, TrainingSpec, load_spec, parse_spec
from costsim.trainers import TrainerProfile, load_trainer, trainer_names

__all__ = [
    "Budget", "CostProfile", "CostsimError", "ExternalModel", "GPUSpec", "HardwareSpec", "Layout", "LossProfile",
    "ModelSpec", "Planner", "ScheduleEstimate", "ScheduleSpec", "SearchSpace", "SpecError", "StageCosts",
    "StageEstimate", "StageShape", "StageSpec", "TotalEstimate", "TrainerProfile", "TrainingSpec", "estimate",
    "estimate_many", "from_hf_config", "full_training", "gpu_preset_names", "load_gpu", "load_loss_profile",
    "load_preset", "load_profile", "load_spec", "load_trainer", "paper_incremental", "parse_spec", "predict_curve",
    "preset_names", "study_cost_ratio", "study_units", "trainer_names",
]

# Names whose module loads only when first used: the command modules (callable, see
# costsim/api.py) and the export's entry points. Importing them here would make
# `python -m costsim.estimate` warn that its module was imported before it ran.
_LAZY = {"estimate": "costsim.estimate", "search": "costsim.search", "export_plan": "costsim.export",
         "load_exported": "costsim.export"}
__all__ += ["export_plan", "load_exported", "search"]  # "estimate" is listed above


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if name in CALLABLE_MODULES else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(ModuleType):
    """costsim itself: however `costsim.estimate` or `costsim.search` gets imported, the
    import binds it here, and this makes the module callable as the notebook function."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in CALLABLE_MODULES and isinstance(value, ModuleType):
            value.__class__ = CALLABLE_MODULES[name]
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
