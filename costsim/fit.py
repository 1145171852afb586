"""``python -m costsim.fit``: fit the loss model to real runs in the store.

Every validation loss of every complete run whose name does not mark it held out is a
data point; the model predicts each from the run's spec and the steps it really ran.
Least squares over all points, then a bootstrap over runs (resampled with
replacement) for the prediction intervals. Held-out runs are predicted and their
errors reported: the final loss, and the counted FLOPs needed to reach the final loss
of the full-training baseline of the same final size.

The fitted law's scale parameters (E, A, B, alpha, beta) belong to the data it was
fitted on; the growth and annealing parameters are dimensionless and are what
``--transfer-to`` carries over to another law (by default the published Chinchilla one).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from costsim.engine import along_schedule, estimate
from costsim.errors import CostsimError, cli_errors
from costsim.growth import JUMP_OPERATORS
from costsim.loss import LossParams, LossProfile, StagePlan, load_loss_profile, stage_plans, trajectory
from costsim.spec import ScheduleSpec, parse_spec

# Weak priors keep parameters the data cannot see (an operator no run used) at a
# sensible value instead of wandering; their weight is tiny next to real points.
PRIOR_WEIGHT = 0.02
JUMP_PRIOR = 0.1


@dataclass(frozen=True)
class RunData:
    run_id: str
    name: str
    spec: ScheduleSpec
    steps: list[int]
    tokens: np.ndarray  # at each validation loss
    loss: np.ndarray
    holdout: bool

    @property
    def plans(self) -> list[StagePlan]:
        return stage_plans(self.spec, self.steps)


def load_runs(db: str | Path, holdout_marker: str = "[holdout]", min_step: int = 40) -> list[RunData]:
    from validate.store import Store

    store = Store(db)
    runs = store.query("SELECT run_id, spec_json FROM run_summary WHERE status = 'complete' AND kind = 'train' "
                       "ORDER BY started_at")
    out = []
    for run in runs:
        spec = parse_spec(json.loads(run["spec_json"]))
        stages = store.query("SELECT stage_index, steps FROM stages WHERE run_id = ? ORDER BY stage_index",
                             [run["run_id"]])
        evals = store.query("SELECT step, tokens, val_loss FROM evals WHERE run_id = ? AND step >= ? ORDER BY step",
                            [run["run_id"], min_step])
        if len(stages) != len(spec.stages) or not evals:
            continue
        out.append(RunData(run_id=run["run_id"], name=spec.name or run["run_id"], spec=spec,
                           steps=[s["steps"] for s in stages], tokens=np.array([e["tokens"] for e in evals]),
                           loss=np.array([e["val_loss"] for e in evals]), holdout=holdout_marker in (spec.name or "")))
    return out


# --- parameter vector ---------------------------------------------------------------------


@dataclass(frozen=True)
class Coordinate:
    """One entry of the vector least squares moves: a LossParams field (``jumps.OP`` for
    an operator's jump), its bounds, and how it is fitted."""

    field: str
    lower: float
    upper: float
    log: bool = False  # fitted as log(value): scale constants span decades
    prior: float | None = None  # pulled weakly towards this (None: towards the start value)
    regularised: bool = False  # has a weak prior (growth parameters few runs constrain)

    def get(self, p: LossParams) -> float:
        if self.field.startswith("jumps."):
            value = p.jumps.get(self.field.removeprefix("jumps."), JUMP_PRIOR)
        else:
            value = getattr(p, self.field)
        return float(np.log(value)) if self.log else float(value)


COORDINATES = (
    Coordinate("E", 0.0, 10.0),
    Coordinate("A", -5.0, 25.0, log=True),
    Coordinate("alpha", 0.02, 2.0),
    Coordinate("B", -5.0, 25.0, log=True),
    Coordinate("beta", 0.02, 2.0),
    Coordinate("anneal", 0.0, 1.0, regularised=True),
    Coordinate("frozen_exponent", 0.0, 4.0, regularised=True),
    Coordinate("reset_jump", 0.0, 2.0, regularised=True),
    *(Coordinate(f"jumps.{op}", 0.0, 5.0, prior=JUMP_PRIOR, regularised=True) for op in JUMP_OPERATORS),
)
LOWER = np.array([c.lower for c in COORDINATES])
UPPER = np.array([c.upper for c in COORDINATES])
REGULARISED = np.array([c.regularised for c in COORDINATES])


def to_params(x: np.ndarray) -> LossParams:
    values: dict = {"jumps": {}}
    for c, v in zip(COORDINATES, x, strict=True):
        value = float(np.exp(v)) if c.log else float(v)
        if c.field.startswith("jumps."):
            values["jumps"][c.field.removeprefix("jumps.")] = value
        else:
            values[c.field] = value
    return LossParams(**values)


def to_vector(p: LossParams) -> np.ndarray:
    return np.array([c.get(p) for c in COORDINATES])


def _residuals(x: np.ndarray, runs: list[RunData], prior: np.ndarray) -> np.ndarray:
    p = to_params(x)
    parts = [trajectory(p, run.plans, at_tokens=run.tokens)[1] - run.loss for run in runs]
    parts.append(PRIOR_WEIGHT * (x[REGULARISED] - prior[REGULARISED]))
    return np.concatenate(parts)


def fit_params(runs: list[RunData], start: LossParams) -> tuple[LossParams, float]:
    x0 = np.clip(to_vector(start), LOWER + 1e-9, UPPER - 1e-9)
    prior = np.array([x if c.prior is None else c.prior for c, x in zip(COORDINATES, x0, strict=True)])
    result = least_squares(_residuals, x0, bounds=(LOWER, UPPER), args=(runs, prior), x_scale="jac", max_nfev=400)
    n_points = sum(len(r.loss) for r in runs)
    residual = result.fun[:n_points]
    return to_params(result.x), float(np.sqrt(np.mean(residual**2)))


def bootstrap(runs: list[RunData], best: LossParams, n: int, seed: int) -> list[LossParams]:
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        picked = [runs[i] for i in rng.integers(0, len(runs), len(runs))]
        samples.append(fit_params(picked, best)[0])
    return samples


# --- evaluation on held-out runs ------------------------------------------------------------

def cumulative_flops(spec: ScheduleSpec, steps: list[int], tokens: np.ndarray) -> np.ndarray:
    return along_schedule(spec, steps, tokens, [s.flops_counted_per_step for s in estimate(spec).stages])


def flops_to_reach(target: float, flops: np.ndarray, loss: np.ndarray) -> float | None:
    """Counted FLOPs at which the curve first reaches ``target`` (linear interpolation)."""
    below = np.flatnonzero(loss <= target)
    if not len(below):
        return None
    i = below[0]
    if i == 0:
        return float(flops[0])
    f0, f1, l0, l1 = flops[i - 1], flops[i], loss[i - 1], loss[i]
    return float(f0 + (f1 - f0) * (l0 - target) / (l0 - l1))


def _final_shape(spec: ScheduleSpec) -> tuple:
    m = spec.model
    return (m.d_model, spec.stages[-1].layers, m.mlp, m.vocab_size)


def holdout_report(profile: LossProfile, runs: list[RunData]) -> list[dict]:
    baselines = {_final_shape(r.spec): r for r in runs if len(r.spec.stages) == 1
                 and r.spec.training.lr_schedule.kind == "constant"}
    rows = []
    for run in (r for r in runs if r.holdout):
        predicted = trajectory(profile.params, run.plans, at_tokens=run.tokens)[1]
        row = {"run": run.name, "final_loss_measured": float(run.loss[-1]),
               "final_loss_predicted": float(predicted[-1]), "final_loss_error": float(predicted[-1] - run.loss[-1])}
        base = baselines.get(_final_shape(run.spec))
        if base is not None and base is not run:
            target = float(base.loss[-1])
            flops = cumulative_flops(run.spec, run.steps, run.tokens)
            measured, pred = flops_to_reach(target, flops, run.loss), flops_to_reach(target, flops, predicted)
            base_flops = float(cumulative_flops(base.spec, base.steps, base.tokens)[-1])
            row.update({"baseline": base.name, "target_loss": target, "baseline_flops": base_flops,
                        "flops_to_target_measured": measured, "flops_to_target_predicted": pred})
        rows.append(row)
    return rows


def fit_profile(runs: list[RunData], *, name: str, start: LossParams, n_bootstrap: int = 20, seed: int = 0,
                source: str = "") -> LossProfile:
    fit_runs = [r for r in runs if not r.holdout]
    if len({_final_shape(r.spec) for r in fit_runs if len(r.spec.stages) == 1}) < 3:
        raise CostsimError("fitting needs full-training baselines at 3 or more model sizes among the non-held-out "
                           "runs; train more (python -m studies.loss_runs)")
    best, rms = fit_params(fit_runs, start)
    samples = bootstrap(fit_runs, best, n_bootstrap, seed)
    vocab = {r.spec.model.vocab_size for r in fit_runs}
    profile = LossProfile(name=name, params=best, samples=samples, residual_std=rms, source=source,
                          vocab_size=vocab.pop() if len(vocab) == 1 else None)
    report = {"n_fit_runs": len(fit_runs), "n_points": int(sum(len(r.loss) for r in fit_runs)), "rms_nats": rms,
              "holdout": holdout_report(profile, runs)}
    return profile.model_copy(update={"report": report})


def transfer(fitted: LossProfile, law: LossProfile, name: str) -> LossProfile:
    """Carry the dimensionless growth/annealing parameters (and their bootstrap spread)
    onto another law's scale parameters."""
    dimensionless = ("anneal", "frozen_exponent", "jumps", "reset_jump")

    def move(p: LossParams) -> LossParams:
        return law.params.model_copy(update={k: getattr(p, k) for k in dimensionless})

    return LossProfile(name=name, params=move(fitted.params), samples=[move(s) for s in fitted.samples],
                       residual_std=law.residual_std,
                       source=f"{law.source}; growth and annealing parameters fitted on {fitted.name}",
                       report={"growth_fitted_on": fitted.name, "fit_report": fitted.report})


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costsim.fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="costsim.duckdb", help="store with training runs (python -m validate.run)")
    parser.add_argument("--name", default="fitted", help="profile name")
    parser.add_argument("--holdout-marker", default="[holdout]", help="runs whose spec name contains this are held out")
    parser.add_argument("--bootstrap", type=int, default=20, help="bootstrap refits for the intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="profile JSON path (default: costsim's shipped loss profiles)")
    parser.add_argument("--transfer-to", default="chinchilla-published",
                        help="also write this law with the fitted growth parameters ('' = don't)")
    parser.add_argument("--transfer-name", default="chinchilla", help="name of that transferred profile")
    args = parser.parse_args(argv)
    if not Path(args.db).exists():
        raise CostsimError(
            f"--db {args.db}: no such store; train runs first (python -m studies.loss_runs --db {args.db})")
    runs = load_runs(args.db, args.holdout_marker)
    start = load_loss_profile("chinchilla-published").params
    profile = fit_profile(runs, name=args.name, start=start, n_bootstrap=args.bootstrap, seed=args.seed,
                          source=f"python -m costsim.fit --db {args.db}")
    directory = Path(str(resources.files("costsim") / "data" / "loss"))
    out = Path(args.out) if args.out else directory / f"{args.name}.json"
    out.write_text(profile.model_dump_json(indent=1) + "\n")
    print(f"fitted {args.name} on {profile.report['n_fit_runs']} runs, {profile.report['n_points']} points: "
          f"rms {profile.report['rms_nats']:.4f} nats; wrote {out}")
    for row in profile.report["holdout"]:
        line = f"  held out {row['run']}: final loss {row['final_loss_measured']:.4f} measured, " \
               f"{row['final_loss_predicted']:.4f} predicted ({row['final_loss_error']:+.4f})"
        if "target_loss" in row:
            def fmt(v):
                return "not reached" if v is None else f"{v:.3g}"
            line += (f"; FLOPs to the baseline's {row['target_loss']:.4f}: {fmt(row['flops_to_target_measured'])} "
                     f"measured, {fmt(row['flops_to_target_predicted'])} predicted (baseline spent "
                     f"{row['baseline_flops']:.3g})")
        print(line)
    if args.transfer_to:
        moved = transfer(profile, load_loss_profile(args.transfer_to), args.transfer_name)
        target = out.with_name(f"{moved.name}.json")
        target.write_text(moved.model_dump_json(indent=1) + "\n")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
