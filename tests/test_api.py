"""The notebook API: ``costsim.estimate`` takes a dict, a path or a ScheduleSpec and
returns the same typed result; ``costsim.search`` wraps the search's ``run``; both names
stay the modules ``python -m`` runs, and ``import costsim`` stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import costsim
from costsim import ScheduleEstimate, ScheduleSpec, SpecError, load_spec

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny_three_stage.yaml"
LOSS = "chinchilla-published"  # fixed published constants: the answer does not move with fitted profiles


def test_estimate_takes_a_dict_a_path_or_a_spec() -> None:
    results = [costsim.estimate(x) for x in (yaml.safe_load(TINY.read_text()), str(TINY), TINY, load_spec(TINY))]
    assert all(isinstance(r, ScheduleEstimate) for r in results)
    first = results[0].model_dump()
    assert all(r.model_dump() == first for r in results[1:])
    assert [s.layers for s in results[0].stages] == [2, 4, 4, 6]


def test_estimate_refuses_other_input_in_one_line() -> None:
    with pytest.raises(SpecError, match="got int"):
        costsim.estimate(42)
    with pytest.raises(SpecError, match="stages"):
        costsim.estimate({"model": {}, "training": {}})
    with pytest.raises(SpecError, match="cannot read the spec"):
        costsim.estimate(TINY.with_name("missing.yaml"))


def test_the_names_stay_the_command_modules() -> None:
    """Importing a command's module (as a test or the dashboard may) leaves the function callable."""
    module = importlib.import_module("costsim.estimate")
    assert costsim.estimate is module and callable(module) and callable(module.main)
    assert costsim.estimate(TINY).total.tokens == module.estimate(load_spec(TINY)).total.tokens
    from costsim import search

    assert callable(search) and callable(search.run) and callable(search.main)


def test_search_wraps_run() -> None:
    result = costsim.search(budget_flops=1e17, n_trials=3, seed=0, loss_profile=LOSS, gpu="h100-sxm", n_gpus=1)
    assert type(result).__name__ == "SearchResult" and result.n_trials == 3
    plan = result.recommendation.spec
    assert isinstance(plan, ScheduleSpec) and plan.hardware.n_gpus == 1
    assert costsim.estimate(plan).total.flops_counted <= 1e17 * (1 + 1e-12)


@pytest.mark.parametrize(("kwargs", "said"), [
    ({}, "exactly one of budget_flops"),
    ({"budget_flops": 1e18, "budget_usd": 10.0}, "exactly one of budget_flops"),
    ({"budget_flops": -1.0}, "flops"),
    ({"budget_flops": 1e18, "gpu": "tpu"}, "unknown GPU"),
])
def test_search_refuses_bad_budgets_and_hardware_before_searching(kwargs: dict, said: str) -> None:
    with pytest.raises(SpecError, match=said):
        costsim.search(**kwargs)


def test_import_stays_light_and_commands_do_not_warn() -> None:
    code = ("import sys, costsim; heavy = {'optuna', 'torch', 'plotly', 'duckdb', 'costsim.search', "
            "'costsim.estimate', 'costsim.export'}; print(sorted(heavy & sys.modules.keys()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "costsim.estimate", str(TINY)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
