"""The notebook API: ``costsim.estimate(spec)`` and ``costsim.search(budget_flops=...)``.

    import costsim
    result = costsim.estimate("examples/paper_s4.yaml")   # or a dict, or a ScheduleSpec
    found = costsim.search(budget_flops=1e18, n_trials=50)

``costsim.estimate`` and ``costsim.search`` are also the modules that ``python -m``
runs. The package makes those two modules callable (``CALLABLE_MODULES``, bound in
costsim/__init__.py), so one name serves a notebook and the command line:
``from costsim import search; search.run(...)`` keeps working, and importing a
command's module no longer hides the function behind it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from costsim.engine import ScheduleEstimate
from costsim.engine import estimate as estimate_spec
from costsim.errors import SpecError, one_line
from costsim.spec import ScheduleSpec, load_spec, parse_spec

if TYPE_CHECKING:  # the search module imports optuna's world when it runs; keep `import costsim` light
    from costsim.search import SearchResult

SpecLike = ScheduleSpec | Mapping[str, Any] | str | os.PathLike[str]


def as_spec(spec: SpecLike) -> ScheduleSpec:
    """A ScheduleSpec from itself, spec data (a dict as YAML would load it) or a spec file's path."""
    if isinstance(spec, ScheduleSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(dict(spec))
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    raise SpecError(f"a spec is a ScheduleSpec, a dict or a path to a spec file; got {type(spec).__name__}")


def estimate(spec: SpecLike) -> ScheduleEstimate:
    """Costs per stage and in total: the result ``python -m costsim.estimate`` prints
    (``.model_dump()`` is its ``--json`` without the loss curve)."""
    return estimate_spec(as_spec(spec))


def search(*, budget_flops: float | None = None, budget_hours: float | None = None,
           budget_usd: float | None = None, gpu: str = "h100-sxm", n_gpus: int = 8,
           price_per_gpu_hour: float | None = None, **options: Any) -> SearchResult:
    """The best growth schedule for one budget (FLOPs, hours or dollars) on ``n_gpus`` x
    ``gpu`` (the command's defaults). ``options`` are ``costsim.search.run``'s keywords
    (n_trials, seed, space: a ``SearchSpace``, objectives, loss_profile, max_memory_gb, ...).
    ``.recommendation.spec`` is the plan to estimate, export or train."""
    from pydantic import ValidationError

    from costsim.planner import Budget
    from costsim.search import run
    from costsim.spec import HardwareSpec

    budgets = {"flops": budget_flops, "hours": budget_hours, "usd": budget_usd}
    if sum(v is not None for v in budgets.values()) != 1:
        raise SpecError("give exactly one of budget_flops, budget_hours or budget_usd")
    try:
        budget = Budget(**budgets)
        hardware = HardwareSpec(gpu=gpu, n_gpus=n_gpus, price_per_gpu_hour=price_per_gpu_hour)
    except ValidationError as exc:
        raise SpecError(one_line(exc)) from None
    return run(budget, hardware, **options)


class _EstimateModule(ModuleType):
    """``costsim.estimate``: the command's module, and called, the notebook function."""

    def __call__(self, spec: SpecLike) -> ScheduleEstimate:
        return estimate(spec)


class _SearchModule(ModuleType):
    """``costsim.search``: the command's module, and called, the notebook function."""

    def __call__(self, **kwargs: Any) -> SearchResult:
        return search(**kwargs)


CALLABLE_MODULES: dict[str, type[ModuleType]] = {"estimate": _EstimateModule, "search": _SearchModule}
