"""``python -m costsim.search --budget 1e19``: the best growth schedule for a budget.

Searches (Optuna) over final width and depth, number of stages (1 = no growth), where
growth starts, the token share spent growing, freeze phases, growth operator, half-width
early stages and batch size. Every candidate spends the budget exactly (whole steps,
never more) with a micro-batch that fits the GPU; one that cannot fit is infeasible
(Optuna constraints named "spec", "memory" and "budget", with the reason in the trial's
``infeasible_reason`` attribute), never silently dropped. Prints the best schedule (also written
as a spec file that ``costsim.estimate`` and ``validate.run`` accept), its predicted
loss with an interval and its costs, the compute-optimal full-size model at the same
budget, and the study's incremental schedule at that budget.

Many workers, one study: give every worker the same ``--storage`` and ``--study-name``
(journal file on a shared filesystem, SQLite, PostgreSQL or MySQL URL); ``--n-trials``
is then the study's total, so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import ValidationError

from costsim.constants import MEMORY_HEADROOM
from costsim.errors import CostsimError, SpecError, cli_errors, one_line
from costsim.hardware import GPUSpec, gpu_from_name_or_file, gpu_preset_names
from costsim.loss import DEFAULT_LOSS_PROFILE, load_loss_profile, loss_profile_names
from costsim.loss_report import spec_domain_warning
from costsim.memory import usable_memory_bytes
from costsim.paths import output_file, storage_target
from costsim.planner import (
    MIN_STEPS,
    Budget,
    Candidate,
    Comparison,
    Evaluation,
    Planner,
    SearchSpace,
    approximate_flops,
    grows,
)
from costsim.processes import is_gone, worker_id
from costsim.profile import profile_for, profile_names
from costsim.spec import HardwareSpec
from costsim.text import binary_bytes, si
from costsim.trainers import load_trainer, trainer_names

# --objectives name -> the study's metric name (what optuna-dashboard and trials_dataframe show)
OBJECTIVES = {"loss": "loss", "time": "time_s", "cost": "cost_usd"}
# An infeasible trial has no result, but Optuna needs a value to complete it: +inf, which
# never ranks as a best (Optuna also skips infeasible trials by their constraints) and which
# no reader can take for a loss, time or cost.
INFEASIBLE_VALUE = math.inf
# The keys every trial carries in user_attrs (a contract: other code reads exactly these);
# None where a trial has no such number (an infeasible one was never costed).
TRIAL_ATTRS = ("time_s", "cost_usd", "peak_memory_bytes", "params_total", "params_non_embedding", "flops_counted",
               "loss_lower", "loss_upper")


def suggest(trial, space: SearchSpace) -> dict:
    """The candidate's parameters, drawn from the trial. The search space is static: when
    growth is possible every trial draws the growth parameters too, and a one-stage
    candidate ignores them. Every range is fixed, so multivariate TPE draws all of them
    jointly in one go (``sampler``). A conditional space had to be split into groups,
    and Optuna recomputes that split and re-reads every earlier trial once per group each
    trial: most of a 1000-trial search's sampling time."""
    params = {
        "d_model": trial.suggest_categorical("d_model", list(space.d_models)),
        "layers": trial.suggest_int("layers", space.min_layers, space.max_layers),
        "n_stages": trial.suggest_int("n_stages", 1, space.max_stages),
        "batch_tokens": trial.suggest_categorical("batch_tokens", list(space.batch_tokens)),
    }
    if space.max_stages > 1:
        # the share of the stages that run at half width, drawn as a fraction: its range
        # does not depend on n_stages
        width_share = trial.suggest_float("width_share", 0.0, 1.0) if space.width_growth else 0.0
        growth = dict(
            first_fraction=trial.suggest_float("first_fraction", 0.1, 0.9),
            grow_share=trial.suggest_float("grow_share", 0.05, 0.9),
            freeze_share=trial.suggest_float("freeze_share", 0.0, 0.5),
            operator=trial.suggest_categorical("operator", list(space.operators)),
        )
        if params["n_stages"] > 1:
            params.update(growth, width_stages=min(params["n_stages"] - 1, int(width_share * params["n_stages"])))
    return params


def sampler(seed: int, n_trials: int):
    """TPE, multivariate over the whole (static) search space."""
    import warnings

    import optuna

    with warnings.catch_warnings():  # `multivariate` is marked experimental; its behaviour is what we rely on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(50, max(10, n_trials // 10)),
                                          multivariate=True)


def candidate_params(trial_params: dict, space: SearchSpace) -> dict:
    """What ``suggest`` made of a finished trial's parameters (the planner's arguments). A
    one-stage trial stored before the space was static has no growth parameters; it
    ignores them, so any in-range value stands in."""
    from optuna.trial import FixedTrial

    unused = {"width_share": 0.0, "first_fraction": 0.5, "grow_share": 0.5, "freeze_share": 0.0,
              "operator": space.operators[0]}
    return suggest(FixedTrial({**unused, **trial_params}), space)


def objective(trial, planner: Planner, objectives: tuple[str, ...] = ("loss",)):
    """Pure function of the trial's parameters (and the planner): testable with FixedTrial.

    Records the candidate's named constraints (``Planner.attempt``) and its costs as user
    attributes (``TRIAL_ATTRS``; an infeasible one also ``infeasible_reason``) and returns
    its objective values, or ``INFEASIBLE_VALUE`` for each when it is infeasible."""
    trial.set_user_attr("worker", worker_id())  # lets a resumed search recognise a killed worker's trial
    candidate = planner.attempt(**suggest(trial, planner.space))
    for name, value in candidate.constraints.items():
        trial.set_constraint(name, value)
    if candidate.spec is None:
        _set_attrs(trial, _infeasible_attrs(candidate))
        return _values(dict.fromkeys(objectives, INFEASIBLE_VALUE), objectives)
    result = planner.evaluate(candidate.spec)
    _set_attrs(trial, {name: getattr(result, name) for name in TRIAL_ATTRS})
    return _values({"loss": result.loss, "time": result.time_s, "cost": result.cost_usd}, objectives)


def _infeasible_attrs(candidate: Candidate) -> dict:
    known = {name: getattr(candidate, name) for name in ("peak_memory_bytes", "params_total", "params_non_embedding")}
    return {**dict.fromkeys(TRIAL_ATTRS), **known, "infeasible_reason": candidate.reason}


def _set_attrs(trial, attrs: dict) -> None:
    for name, value in attrs.items():
        trial.set_user_attr(name, value)


def _values(by_objective: dict[str, float], objectives: tuple[str, ...]):
    """One objective: a float (what Optuna's single-objective API reads); several: a tuple."""
    out = tuple(by_objective[o] for o in objectives)
    return out if len(out) > 1 else out[0]


def make_storage(url: str | None):
    """None: in memory; a path ending .log/.jsonl or 'journal:PATH': a journal file;
    anything else: an RDB URL (sqlite:///..., postgresql://..., mysql://...)."""
    if url is None:
        return None
    if url.startswith("journal:") or url.endswith((".log", ".jsonl")):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    import optuna
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    # Workers started together on an empty database race to create Optuna's tables;
    # the losers' CREATE fails, and once the winner's tables exist a retry succeeds.
    for attempt in range(8):
        try:
            with warnings.catch_warnings():  # heartbeats are experimental in Optuna, and what we rely on
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=60, grace_period=120)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            error = exc
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.OperationalError, ImportError, ValueError) as exc:
            raise CostsimError(f"--storage {url}: cannot open it ({str(exc).splitlines()[0]})") from None
    raise CostsimError(f"--storage {url}: could not create Optuna's tables ({str(error).splitlines()[0]})")


# A worker claims a trial (its "worker" attribute) within milliseconds of creating it; one
# still unclaimed after this long was created by a worker killed in between.
UNCLAIMED_GRACE_S = 5.0


def fail_orphans(study, grace_s: float = UNCLAIMED_GRACE_S) -> list[int]:
    """Trials left RUNNING by a killed worker: a journal file has no heartbeat to expire
    them. They become FAIL and their parameters are queued again, so the resumed study
    still completes ``n_trials``. A trial is orphaned when its worker ran on this host and
    is gone, or when no worker has claimed it ``grace_s`` after it started (the kill fell
    between creating the trial and claiming it); this waits out the grace only when an
    unclaimed trial is younger than that."""
    from optuna.trial import TrialState

    def running() -> list:
        return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    orphans = [t for t in running() if is_gone(str(t.user_attrs.get("worker", "")))]
    unclaimed = [t for t in running() if "worker" not in t.user_attrs]
    if unclaimed:
        youngest = max(t.datetime_start for t in unclaimed)
        time.sleep(max(0.0, grace_s - (datetime.now() - youngest).total_seconds()))  # Optuna stamps local time
        ids = {t._trial_id for t in unclaimed}
        orphans += [t for t in running() if t._trial_id in ids and "worker" not in t.user_attrs]
    for trial in orphans:
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)  # no public API
        # a trial killed before its suggestions still has the parameters it was queued with
        study.enqueue_trial(trial.params or trial.system_attrs.get("fixed_params", {}), skip_if_exists=False)
    return sorted(t.number for t in orphans)


@dataclass(frozen=True)
class SearchResult:
    best: list[Evaluation]  # one, or the Pareto front
    baseline: Evaluation
    paper: Evaluation | None
    n_trials: int  # finished trials (a failed one, left by a killed worker, was retried and is not counted)
    budget_for_equal_loss: float | None  # what full training needs to match the best loss
    budget_for_paper_loss: float | None  # ... and to match the study's schedule
    study_name: str
    trials: list  # optuna FrozenTrials of the whole study
    objectives: tuple[str, ...] = ("loss",)
    comparison: Comparison | None = None  # the best schedule against full training, when it grows
    runner_up: Evaluation | None = None  # the best full training of another shape than baseline's

    @property
    def recommendation(self) -> Evaluation:
        """The best schedule, unless growing is not clearly better: then full training."""
        if self.comparison is not None and self.comparison.verdict != "growth better":
            return self.baseline
        return self.best[0]


def run(budget: Budget, hardware: HardwareSpec, *, space: SearchSpace | None = None, n_trials: int = 200,
        timeout: float | None = None, seed: int = 0, n_jobs: int = 1, objectives: tuple[str, ...] = ("loss",),
        storage: str | None = None, study_name: str | None = None, max_memory_gb: float | None = None,
        loss_profile: str = DEFAULT_LOSS_PROFILE, calibration: str | None = None, progress: bool = False,
        memory_headroom: float = MEMORY_HEADROOM, layout_search: bool = True, parallelism: str = "ddp",
        trainer_profile: str = "reference", context_parallel: int = 1) -> SearchResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    profile = load_loss_profile(loss_profile)
    space = space or SearchSpace.for_budget(approximate_flops(budget, hardware), profile=profile,
                                            n_gpus=hardware.n_gpus)
    gpu_key = hardware.gpu if isinstance(hardware.gpu, str) else None
    planner = Planner(budget, hardware, space, profile_for(gpu_key, calibration), profile,
                      max_memory_bytes=None if max_memory_gb is None else max_memory_gb * 2**30,
                      memory_headroom=memory_headroom, layout_search=layout_search, parallelism=parallelism,
                      trainer_profile=trainer_profile, context_parallel=context_parallel)
    name = study_name or f"costsim-{budget.kind}-{budget.amount:.3g}"
    study = optuna.create_study(storage=make_storage(storage), sampler=sampler(seed, n_trials), study_name=name,
                                directions=["minimize"] * len(objectives), load_if_exists=True)
    name_metrics(study, objectives)
    fail_orphans(study)
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.RUNNING)  # a failed trial is retried, not counted
    done = len(study.get_trials(deepcopy=False, states=counted))
    baseline = planner.best_full_training()
    if not study.trials:
        # start from the compute-optimal full-size model: the answer is never worse than it
        study.enqueue_trial({"d_model": baseline.spec.model.d_model, "layers": baseline.spec.stages[-1].layers,
                             "n_stages": 1, "batch_tokens": baseline.spec.training.batch_size * space.seq_len})
    if n_trials > done:
        from optuna.study import MaxTrialsCallback

        study.optimize(lambda t: objective(t, planner, objectives), n_trials=n_trials - done, timeout=timeout,
                       n_jobs=n_jobs, show_progress_bar=progress,
                       callbacks=[MaxTrialsCallback(n_trials, states=counted)])
    feasible = [t for t in study.best_trials if t.values is not None and _feasible(t)] \
        if len(objectives) > 1 else [t for t in [_best_feasible(study)] if t is not None]
    if not feasible:
        raise CostsimError("no feasible schedule found: no trial finished, or every candidate ran out of GPU "
                           "memory or could not take one optimizer step within the budget; raise the budget or "
                           "--timeout, add GPUs or allow more memory")
    best = sorted((planner.evaluate(planner.build(**candidate_params(t.params, space))) for t in feasible),
                  key=lambda e: e.loss)
    paper = planner.paper_schedule(baseline.spec.stages[-1].layers, baseline.spec.model.d_model,
                                   baseline.spec.training.batch_size * space.seq_len)
    best_loss = min(b.loss for b in best)
    equal = planner.budget_for_full_training_loss(best_loss)
    paper_equal = planner.budget_for_full_training_loss(paper.loss) if paper else None
    comparison = planner.compare(best[0], baseline) if len(objectives) == 1 and grows(best[0].spec) else None
    finished = sum(t.state == TrialState.COMPLETE for t in study.trials)
    return SearchResult(best=best, baseline=baseline, paper=paper, n_trials=finished,
                        budget_for_equal_loss=equal, budget_for_paper_loss=paper_equal, study_name=name,
                        trials=study.trials, objectives=objectives, comparison=comparison,
                        runner_up=planner.runner_up_full_training(baseline))


def name_metrics(study, objectives: tuple[str, ...]) -> None:
    """Name the study's objectives (``OBJECTIVES``); a resumed study must have been created
    for the same ones (Optuna would load it with its own directions and fail every trial)."""
    import optuna

    names = [OBJECTIVES[o] for o in objectives]
    # read once: each read queries the storage, and a worker starting beside this one may
    # name the study between two reads (it then names it the same)
    current = study.metric_names
    if current == names:
        return
    if current is not None or len(study.directions) != len(names):
        had = current or f"{len(study.directions)} objective(s)"
        raise CostsimError(f"study '{study.study_name}' was created for objectives {had}, not {names}; resume it "
                           "with the --objectives it was started with, or give another --study-name")
    with warnings.catch_warnings():  # experimental in Optuna since 3.2, and what optuna-dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


def _feasible(trial) -> bool:
    return bool(trial.constraints) and all(v <= 0 for v in trial.constraints.values())


def _best_feasible(study):
    trials = [t for t in study.trials if t.state.name == "COMPLETE" and _feasible(t)]
    return min(trials, key=lambda t: (t.value, t.number)) if trials else None


def describe(e: Evaluation) -> str:
    stages = " -> ".join(f"{s.layers}L{'/' + str(s.d_model) if s.d_model else ''}"
                         f"{'(new)' if s.train == 'new' else ''}" for s in e.spec.stages)
    return (f"loss {e.loss:.4f} [{e.loss_lower:.4f}, {e.loss_upper:.4f}], {e.flops_counted:.3g} counted FLOPs, "
            f"{e.time_s / 3600:.2f} h, ${e.cost_usd:,.2f}, peak {binary_bytes(e.peak_memory_bytes)}; "
            f"{si(e.params_total)} params ({si(e.params_non_embedding)} non-embedding), "
            f"d_model {e.spec.model.d_model}, stages {stages}")


def _spec_yaml(e: Evaluation, note: str) -> str:
    data = e.spec.model_dump(mode="json", exclude_none=True)
    return f"# {note}\n" + yaml.safe_dump(data, sort_keys=False)


def record(db: str, result: SearchResult, budget: Budget) -> None:
    """Trials (one row each, keyed so a resumed search stores each once, with the costs the
    objective left in its user_attrs) and the answer."""
    from costsim.store import SEARCH_TRIAL_COSTS, Store

    store = Store(db)
    now = datetime.now(UTC)
    store.append("search_trials", [
        {"study_name": result.study_name, "trial_number": t.number, "state": t.state.name,
         "params_json": json.dumps(t.params), "values_json": _values_json(t, result.objectives),
         "created_at": t.datetime_start or now, "record_id": f"{result.study_name}:{t.number}",
         # a trial that failed or was pruned before it was costed lacks them: NULL
         **{column.name: t.user_attrs.get(column.name) for column in SEARCH_TRIAL_COSTS}}
        for t in result.trials])
    store.append("search_results", [{
        "study_name": result.study_name, "created_at": now, "budget_json": budget.model_dump_json(),
        "best_spec_json": result.recommendation.spec.model_dump_json(), "report_json": json.dumps(report(result)),
    }])
    store.flush()


def _values_json(trial, objectives: tuple[str, ...]) -> str | None:
    """Objective values by name; an infeasible trial's are stored as infinite, so a
    reader never mistakes its placeholder value for a result."""
    if trial.values is None:
        return None
    values = trial.values if _feasible(trial) else [math.inf] * len(trial.values)
    return json.dumps(dict(zip(objectives, values)))


def report(result: SearchResult) -> dict:
    def summary(e: Evaluation | None):
        return None if e is None else asdict(e.summary())

    return {"best": [summary(b) for b in result.best], "baseline": summary(result.baseline),
            "runner_up": summary(result.runner_up),
            "paper": summary(result.paper), "budget_for_equal_loss": result.budget_for_equal_loss,
            "budget_for_paper_loss": result.budget_for_paper_loss,
            "comparison": asdict(result.comparison) if result.comparison else None,
            "recommendation": summary(result.recommendation),
            "n_trials": result.n_trials}


def _runner_up_line(result: SearchResult, seed_std: float) -> str:
    """The next full-training shape, and whether the law ranks it apart from the best: two
    shapes predicted closer than one run's seed noise are a tie to it, whichever it picked."""
    gap = result.runner_up.loss - result.baseline.loss
    line = f"  next full-training shape: {describe(result.runner_up)}, {gap:+.4f} nats"
    if seed_std <= 0:  # a profile without measured seed noise cannot say what a tie is
        return line
    if gap < seed_std:
        return f"{line}, closer than one run's seed noise ({seed_std:.3f}): the loss model does not rank these two"
    return f"{line}, behind by more than one run's seed noise ({seed_std:.3f})"


def planner_interval(loss_profile: str) -> float:
    return load_loss_profile(loss_profile).interval


def _range(text: str | None, flag: str) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        lo, hi = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise CostsimError(f"{flag} {text!r}: give two numbers LO,HI, e.g. {flag} 64,512") from None
    if not 1 <= lo <= hi:
        raise CostsimError(f"{flag} {text!r}: need 1 <= LO <= HI")
    return lo, hi


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default in --help, where it is a value (argparse's
    ArgumentDefaultsHelpFormatter also prints "default: None" and "default: False")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


DEFAULT_BUDGET_FLOPS = 1e19  # a bare run's budget
DEFAULT_BUDGET_TEXT = f"{DEFAULT_BUDGET_FLOPS:.0e}".replace("e+", "e")  # as one would type it: 1e19


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m costsim.search", description=__doc__,
                                     formatter_class=_HelpFormatter)
    budget = parser.add_argument_group(f"budget (one of; none given: --budget {DEFAULT_BUDGET_TEXT})")
    budget.add_argument("--budget", type=float, help="counted FLOPs, e.g. 1e19")
    budget.add_argument("--budget-hours", type=float, help="wall-clock hours on the given GPUs")
    budget.add_argument("--budget-usd", type=float, help="US dollars at the GPU's hourly price")
    hardware = parser.add_argument_group("hardware")
    hardware.add_argument("--gpu", default="h100-sxm", metavar="PRESET_OR_FILE",
                          help=f"GPU preset ({', '.join(gpu_preset_names())}) or a GPU .json file with the keys of "
                          "costsim/data/gpus/*.json")
    hardware.add_argument("--n-gpus", type=int, default=8, help="GPUs (split into tensor, pipeline and data "
                          "parallel groups by the layout search)")
    hardware.add_argument("--gpus-per-node", type=int, default=8, help="GPUs sharing a node's fast interconnect "
                          "(tensor parallelism stays inside one)")
    hardware.add_argument("--layout", choices=("search", "dp"), default="search", help="search: choose tensor x "
                          "pipeline x data parallel sizes per schedule (the fastest that fits); dp: data "
                          "parallelism only")
    hardware.add_argument("--parallelism", choices=("ddp", "zero1", "zero2", "zero3"), default="ddp",
                          help="how data parallelism keeps the states (zero3: FSDP full shard)")
    hardware.add_argument("--context-parallel", type=int, default=1, help="GPUs splitting each sequence (ring "
                          "attention) in every candidate: for long --seq-len")
    hardware.add_argument("--trainer-profile", default="reference", help=f"what the training framework keeps on "
                          f"each GPU and overlaps ({', '.join(trainer_names())} or a .json path)")
    hardware.add_argument("--price-per-gpu-hour", type=float, help="USD (default: the preset's indicative price)")
    hardware.add_argument("--memory-headroom", type=float, default=MEMORY_HEADROOM,
                          help="share of each GPU's memory a schedule may fill; the rest is margin for what the "
                          "memory model leaves out")
    hardware.add_argument("--max-memory-gb", type=float, help="memory cap per GPU (GiB), used as it is when below "
                          "the headroom's share")
    hardware.add_argument("--calibration", help=f"time/memory profile ({', '.join(profile_names())} or a .json "
                          "path; default: the GPU preset's own, else generic)")
    space_group = parser.add_argument_group(
        "search space (default: sized to the budget around the loss profile's compute-optimal model)")
    space_group.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence")
    space_group.add_argument("--vocab-size", type=int, default=50304, help="vocabulary (GPT-2's, padded)")
    space_group.add_argument("--max-stages", type=int, default=6, help="most stages a schedule may have")
    space_group.add_argument("--d-model-range", metavar="LO,HI", help="widths (default: 1/4 to 3x the optimal)")
    space_group.add_argument("--layers-range", metavar="LO,HI", help="depths (default: 1 to 4x the optimal)")
    space_group.add_argument("--batch-range", metavar="LO,HI", help="tokens per step, powers of two in between "
                             "(default: one sequence per GPU to the most that leaves --min-steps steps and 4 "
                             "critical batches)")
    space_group.add_argument("--min-steps", type=int, default=MIN_STEPS, help="fewest optimizer steps a schedule "
                             "may take")
    study = parser.add_argument_group("study")
    study.add_argument("--n-trials", type=int, default=300, help="trials in the study (total over all workers)")
    study.add_argument("--timeout", type=float, help="seconds to search at most")
    study.add_argument("--seed", type=int, default=0, help="same seed, same answer (one worker)")
    study.add_argument("--n-jobs", type=int, default=1, help="threads in this process")
    study.add_argument("--objectives", default="loss", help=f"comma list of {','.join(OBJECTIVES)} (2 or more: "
                       "the Pareto front)")
    study.add_argument("--storage", help="Optuna storage: journal file (x.log), sqlite:///x.db, postgresql://... "
                       "(default: in memory)")
    study.add_argument("--study-name", help="study to create or resume (needed to share one study)")
    study.add_argument("--loss-profile", default=DEFAULT_LOSS_PROFILE,
                       help=f"loss model ({', '.join(loss_profile_names())} or a .json path)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="best_schedule.yaml", help="where to write the recommended schedule's spec")
    output.add_argument("--db", default="costsim.duckdb", help="DuckDB store for trials and the answer ('' = none)")
    output.add_argument("--no-progress", action="store_true", help="no progress bar (the default when stderr is "
                        "not a terminal)")
    return parser


def _check(args: argparse.Namespace) -> tuple[str, ...]:
    """Refuse bad numbers in one line each; returns the objectives."""
    objectives = tuple(o.strip() for o in args.objectives.split(","))
    if not set(objectives) <= set(OBJECTIVES) or len(set(objectives)) != len(objectives):
        raise CostsimError(f"--objectives {args.objectives!r}: use distinct names from {', '.join(sorted(OBJECTIVES))}")
    for flag in ("n_trials", "n_jobs", "n_gpus", "gpus_per_node", "max_stages", "seq_len", "vocab_size", "min_steps",
                 "context_parallel"):
        if getattr(args, flag) < 1:
            raise CostsimError(f"--{flag.replace('_', '-')} must be a positive integer")
    if args.n_gpus % args.context_parallel or args.seq_len % (2 * args.context_parallel):
        raise CostsimError(f"--context-parallel {args.context_parallel} must divide --n-gpus ({args.n_gpus}) and split "
                           f"--seq-len ({args.seq_len}) into 2 x {args.context_parallel} equal chunks")
    if args.seed < 0 or args.seed >= 2**32:
        raise CostsimError(f"--seed must be between 0 and 2^32-1, got {args.seed}")
    for flag in ("max_memory_gb", "timeout", "price_per_gpu_hour"):
        if getattr(args, flag) is not None and not getattr(args, flag) > 0:
            raise CostsimError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if not 0 < args.memory_headroom <= 1:
        raise CostsimError(f"--memory-headroom is a share of the GPU's memory: more than 0, at most 1; got "
                           f"{args.memory_headroom:g}")
    return objectives


def _hardware_line(hardware: HardwareSpec, args: argparse.Namespace) -> str:
    """What the planner may use of each GPU and what an hour of it costs, with where both come from."""
    gpu = hardware.resolved_gpu()
    cap = None if args.max_memory_gb is None else args.max_memory_gb * 2**30
    usable = usable_memory_bytes(gpu.memory_bytes, args.memory_headroom, cap)
    limit = "--max-memory-gb" if cap is not None and cap <= gpu.memory_bytes * args.memory_headroom else \
        f"--memory-headroom {args.memory_headroom:g}"
    price = "--price-per-gpu-hour" if args.price_per_gpu_hour is not None else \
        "the GPU file's indicative price, not a quote" if isinstance(hardware.gpu, GPUSpec) else \
        "the preset's indicative price, not a quote; --price-per-gpu-hour sets yours"
    return (f"per GPU: {binary_bytes(usable)} of {binary_bytes(gpu.memory_bytes)} usable ({limit}); "
            f"${hardware.usd_per_gpu_hour:,.2f} an hour ({price})")


def _comparison_line(result: SearchResult, budget: Budget, interval: float) -> str:
    line = f"  growth vs full training: {result.comparison.describe(interval)}"
    if result.budget_for_equal_loss:
        line += (f"; full training needs {result.budget_for_equal_loss / budget.amount:.3f}x the budget to match the "
                 "growth schedule's point prediction")
    return line


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    budget_values = {"flops": args.budget, "hours": args.budget_hours, "usd": args.budget_usd}
    no_budget = all(v is None for v in budget_values.values())
    if no_budget:
        budget_values["flops"] = DEFAULT_BUDGET_FLOPS  # said out loud once the input is valid
    objectives = _check(args)
    try:
        budget = Budget(**budget_values)
        hardware = HardwareSpec(gpu=gpu_from_name_or_file(args.gpu), n_gpus=args.n_gpus,
                                gpus_per_node=args.gpus_per_node, price_per_gpu_hour=args.price_per_gpu_hour,
                                calibration=args.calibration)
    except ValidationError as exc:
        raise SpecError(one_line(exc)) from None
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    output_file(args.out, "--out")
    if args.db:
        output_file(args.db, "--db")
    if args.storage:
        storage_target(args.storage)
    profile = load_loss_profile(args.loss_profile)
    load_trainer(args.trainer_profile)  # an unknown name: one line naming the choices, before any work
    ranges = {name: _range(getattr(args, name), f"--{name.replace('_', '-')}")
              for name in ("d_model_range", "layers_range", "batch_range")}
    if no_budget:
        print(f"no budget given: assuming --budget {DEFAULT_BUDGET_TEXT} (counted FLOPs)")
    space = SearchSpace.for_budget(
        approximate_flops(budget, hardware), profile=profile, vocab_size=args.vocab_size,
        seq_len=args.seq_len, n_gpus=args.n_gpus, min_steps=args.min_steps, max_stages=args.max_stages, **ranges)
    result = run(budget, hardware, space=space, n_trials=args.n_trials, timeout=args.timeout, seed=args.seed,
                 n_jobs=args.n_jobs, objectives=objectives, storage=args.storage, study_name=args.study_name,
                 max_memory_gb=args.max_memory_gb, loss_profile=args.loss_profile, calibration=args.calibration,
                 progress=not args.no_progress and sys.stderr.isatty(), memory_headroom=args.memory_headroom,
                 layout_search=args.layout == "search", parallelism=args.parallelism,
                 trainer_profile=args.trainer_profile, context_parallel=args.context_parallel)
    print(f"budget: {budget.describe()} on {args.n_gpus} x {hardware.resolved_gpu().name}; "
          f"{result.n_trials} finished trials (study '{result.study_name}')")
    print(_hardware_line(hardware, args))
    print(f"search space: {space.describe()}")
    for i, best in enumerate(result.best):
        print(f"best{'' if len(result.best) == 1 else f' #{i + 1}'}: {describe(best)}")
    note = spec_domain_warning(result.best[0].spec, profile)
    if note:
        print(note)
    print(f"full training (compute-optimal at this budget): {describe(result.baseline)}")
    if result.runner_up is not None:
        print(_runner_up_line(result, profile.seed_std))
    if result.comparison is not None:
        print(_comparison_line(result, budget, planner_interval(args.loss_profile)))
    elif len(result.best) == 1:
        print("  the best schedule does not grow: train the full model from the start")
    if result.paper is not None:
        print(f"the study's schedule (S=4, freeze + continual) at this budget: {describe(result.paper)}")
    recommended = result.recommendation
    kind = "growth schedule" if grows(recommended.spec) else "full training"
    print(f"recommendation: {kind}: {describe(recommended)}")
    Path(args.out).write_text(_spec_yaml(recommended, f"costsim.search recommendation ({kind}) for "
                                                     f"{budget.describe()}"))
    print(f"wrote {args.out} (python -m costsim.estimate {args.out})")
    if args.db:
        record(args.db, result, budget)
        print(f"stored {len(result.trials)} trials and the answer in {args.db}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
