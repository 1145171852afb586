"""A finished search study, read back through Optuna's public API the way optuna-dashboard
reads a storage: named objectives, named constraints for infeasible trials (never a
sentinel that looks like a loss), and the user attributes other code reads.

Small studies (a dozen trials) on a journal file, so this runs in seconds. The CLI test
runs the real command, because what matters is what it leaves in the storage.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from costsim import search
from costsim.errors import CostsimError
from costsim.loss import load_loss_profile
from costsim.planner import CONSTRAINTS, Budget, Planner, SearchSpace, approximate_flops
from costsim.profile import profile_for
from costsim.spec import HardwareSpec

LOSS = "chinchilla-published"
H100X8 = HardwareSpec(gpu="h100-sxm", n_gpus=8)
BUDGET = Budget(flops=1e18)
# At 1e18 FLOPs with a 16 GiB cap, data parallel only (--layout dp; the layout search would
# split the big models over the 8 GPUs until they fit), the default space holds all three
# kinds of infeasible candidate: shapes outside the aspect ratio, models that do not fit,
# and models the budget cannot give 250 steps.
CAP_GB = 16.0

optuna.logging.set_verbosity(optuna.logging.WARNING)


def cli_planner() -> Planner:
    """The planner the CLI builds for ``BUDGET`` on ``H100X8`` under the cap."""
    profile = load_loss_profile(LOSS)
    space = SearchSpace.for_budget(approximate_flops(BUDGET, H100X8), profile=profile, n_gpus=H100X8.n_gpus)
    return Planner(BUDGET, H100X8, space, profile_for("h100-sxm", None), profile, max_memory_bytes=CAP_GB * 2**30,
                   layout_search=False)


def one_of_each_kind(planner: Planner) -> dict[str, dict]:
    """Parameters of one candidate per broken constraint, found by asking the planner."""
    s = planner.space
    found: dict[str, dict] = {}
    for d_model, layers in itertools.product(s.d_models, (s.max_layers // 4, s.max_layers // 2, s.max_layers)):
        params = {"d_model": d_model, "layers": layers, "n_stages": 1, "batch_tokens": s.batch_tokens[-1]}
        broken = [name for name, value in planner.attempt(**params).constraints.items() if value > 0]
        if broken:
            found.setdefault(broken[0], params)
    assert set(found) == set(CONSTRAINTS), f"the test's space lacks an infeasible kind: {sorted(found)}"
    return found


def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
    return all(x <= y for x, y in zip(a.values, b.values)) and a.values != b.values


def broken(trial: FrozenTrial) -> list[str]:
    return [name for name, value in trial.constraints.items() if value > 0]


@pytest.fixture(scope="module")
def cli_study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A journal-file study the CLI ran, with one infeasible candidate of each kind queued
    first (as a user or another worker may queue them), read back with load_study."""
    tmp = tmp_path_factory.mktemp("conventions")
    log = tmp / "study.log"
    queued = optuna.create_study(storage=search.make_storage(str(log)), study_name="s")
    kinds = one_of_each_kind(cli_planner())
    for params in kinds.values():
        queued.enqueue_trial(params)
    done = subprocess.run(
        [sys.executable, "-m", "costsim.search", "--budget", "1e18", "--max-memory-gb", str(CAP_GB), "--n-trials",
         "12", "--seed", "0", "--loss-profile", LOSS, "--storage", str(log), "--study-name", "s", "--db", "",
         "--out", str(tmp / "best.yaml"), "--no-progress", "--layout", "dp"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    storage = search.make_storage(str(log))
    study = optuna.load_study(study_name="s", storage=storage)
    return {"study": study, "storage": storage, "stdout": done.stdout, "kinds": kinds}


def test_objectives_are_named(cli_study: dict) -> None:
    assert cli_study["study"].metric_names == ["loss"]


def test_every_infeasible_kind_is_a_named_constraint_with_a_reason(cli_study: dict) -> None:
    """Each queued candidate is recorded COMPLETE with its broken constraint > 0, stored
    where Optuna keeps named constraints, and a one-line reason."""
    study = cli_study["study"]
    for kind, params in cli_study["kinds"].items():
        # the space is static: a queued trial also draws the growth parameters it leaves out
        [trial] = [t for t in study.trials if {k: t.params.get(k) for k in params} == params]
        assert trial.state == TrialState.COMPLETE
        assert broken(trial) == [kind], trial.constraints
        assert trial.system_attrs[f"constraints:{kind}"] == trial.constraints[kind] > 0
        reason = trial.user_attrs["infeasible_reason"]
        assert isinstance(reason, str) and reason and "\n" not in reason


def test_an_infeasible_trial_has_no_value_a_reader_could_take_for_a_result(cli_study: dict) -> None:
    """Infeasible: +inf for each objective and no cost attributes but what is known;
    feasible: finite numbers, every constraint <= 0 (all three evaluated), no reason."""
    study = cli_study["study"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 12
    for t in complete:
        assert set(search.TRIAL_ATTRS) <= set(t.user_attrs), t.number
        if broken(t):
            assert t.values == [math.inf], t.number
            assert all(t.user_attrs[k] is None for k in ("time_s", "cost_usd", "flops_counted", "loss_lower",
                                                         "loss_upper")), t.number
            if "spec" not in broken(t):  # a shape the planner could size has its parameter counts
                assert t.user_attrs["params_total"] > t.user_attrs["params_non_embedding"] > 0
                assert t.user_attrs["peak_memory_bytes"] > 0
        else:
            assert set(t.constraints) == set(CONSTRAINTS), t.number
            assert "infeasible_reason" not in t.user_attrs, t.number
            a = t.user_attrs
            assert math.isfinite(t.value) and a["loss_lower"] <= t.value <= a["loss_upper"], t.number
            assert a["flops_counted"] <= BUDGET.flops and a["peak_memory_bytes"] <= CAP_GB * 2**30
            assert a["time_s"] > 0 and a["cost_usd"] > 0 and a["params_total"] > a["params_non_embedding"] > 0


def test_the_studys_best_is_feasible_and_is_what_the_search_printed(cli_study: dict) -> None:
    study = cli_study["study"]
    best = study.best_trial  # Optuna skips infeasible trials by their constraints
    assert not broken(best)
    # optuna-dashboard 0.21 asks the storage, which ranks by value alone (and reads only
    # Optuna's older list of constraints, not named ones): +inf keeps it on a feasible trial
    storage = cli_study["storage"]
    assert storage.get_best_trial(storage.get_study_id_from_name("s")).number == best.number
    feasible = [t for t in study.trials if t.state == TrialState.COMPLETE and not broken(t)]
    assert best.value == min(t.value for t in feasible)
    [line] = [x for x in cli_study["stdout"].splitlines() if x.startswith("best: ")]
    assert line.startswith(f"best: loss {best.value:.4f} ")


def test_a_pareto_study_names_its_metrics_and_keeps_infeasible_trials_off_the_front(tmp_path: Path) -> None:
    storage = str(tmp_path / "pareto.log")
    result = search.run(BUDGET, H100X8, n_trials=12, seed=0, objectives=("loss", "time"), storage=storage,
                        study_name="p", max_memory_gb=CAP_GB, loss_profile=LOSS, layout_search=False)
    study = optuna.load_study(study_name="p", storage=search.make_storage(storage))
    assert study.metric_names == ["loss", "time_s"]
    assert study.best_trials and not any(broken(t) for t in study.best_trials)
    # the front optuna-dashboard draws ignores constraints: infeasible trials are dominated
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    front = [t for t in complete if not any(dominates(o, t) for o in complete)]
    assert front and not any(broken(t) for t in front)
    for t in study.trials:
        if broken(t):
            assert t.values == [math.inf, math.inf]
    assert {round(b.loss, 12) for b in result.best} <= {round(t.values[0], 12) for t in study.best_trials}


def test_resuming_a_study_with_other_objectives_is_refused(tmp_path: Path) -> None:
    """Optuna would load the study with its own directions and fail every trial."""
    storage = str(tmp_path / "s.log")
    search.run(BUDGET, H100X8, n_trials=3, seed=0, storage=storage, study_name="s", loss_profile=LOSS)
    with pytest.raises(CostsimError, match=r"created for objectives \['loss'\], not \['loss', 'cost_usd'\]"):
        search.run(BUDGET, H100X8, n_trials=3, seed=0, objectives=("loss", "cost"), storage=storage,
                   study_name="s", loss_profile=LOSS)


def test_a_candidate_is_infeasible_exactly_when_a_named_constraint_is_positive() -> None:
    """The sign of the constraints is the planner's decision, never a second opinion: a
    schedule comes back exactly when every constraint holds, and each kind says why."""
    planner = cli_planner()
    s = planner.space
    for d_model, layers, batch in itertools.product(s.d_models, (1, s.max_layers // 4, s.max_layers),
                                                    s.batch_tokens):
        candidate = planner.attempt(d_model=d_model, layers=layers, batch_tokens=batch)
        assert set(candidate.constraints) <= set(CONSTRAINTS)
        assert (candidate.spec is None) == any(v > 0 for v in candidate.constraints.values()), candidate
        assert (candidate.reason is None) == (candidate.spec is not None)
        if candidate.spec is not None:
            e = planner.evaluate(candidate.spec)
            assert e.fits_in_memory and e.budget_used <= 1
            assert candidate.constraints["memory"] == pytest.approx(e.peak_memory_bytes / planner.memory_limit - 1)
