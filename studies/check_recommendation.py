"""``python -m studies.check_recommendation --budget 4e12``: does the search's answer hold when trained?

Runs ``costsim.search`` at a budget of counted FLOPs, then trains for real (CPU or GPU,
through ``validate.run``) its best schedule, the compute-optimal full-training model it
compared against (or, when that is the best, the best full-training model of another
shape, the runner-up), and the study's schedule at the same budget, each with ``--seeds``
seeds, and prints predicted against measured:

- each schedule's final loss: predicted with its interval, measured mean and spread
  over seeds, and whether the measurement fell inside the interval;
- the order of the schedules, and for each pair whether the measured gap exceeds seed
  noise (twice the standard error of the difference) or is a tie;
- compute-to-match of the best schedule against full training along the curves;
- a verdict: **confirmed** (every measured gap beyond noise has the predicted sign, no
  trained schedule beats the recommended one beyond noise, the search's recommendation,
  grow or not, agrees with the measured comparison, and the recommended schedule's mean
  measured loss lies inside its interval), **tie** (the search predicted a difference the
  runs cannot tell from noise), or **contradicted**.

Runs train ``--jobs`` at a time; a complete run of the same spec already in ``--db`` is
reused, so an interrupted check resumes where it stopped.

Everything trained lands in ``--db``, and so does the report (table ``checks``, drawn by
``python -m costsim.dashboard --db`` on its check page); the report (markdown and JSON)
and a plotly page of the curves also go to ``--out``. ``--refit`` fits the loss model again on the shipped
corpus plus these runs and writes the profile there, so a user's own runs improve the
model for their setting. ``--quick`` is a smoke test: a tiny budget, one seed, under
two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from costsim.corpus import RunData, load_store
from costsim.dashboard.checks import CheckPair
from costsim.errors import CostsimError, cli_errors
from costsim.fit import cumulative_flops
from costsim.heldout import compare_curves
from costsim.loss import load_loss_profile, predict, stage_plans
from costsim.paths import output_file
from costsim.planner import Budget, Evaluation, SearchSpace, grows
from costsim.spec import HardwareSpec, ScheduleSpec
from studies.runner import complete_run, train_spec

EVALS = 30
DEFAULT_OUT = "results/check"


@dataclass
class Outcome:
    role: str  # "best", "full training" (when the best grows or is another shape), "runner-up" (else), "study"
    name: str
    flops_counted: float
    predicted: float
    lower: float
    upper: float
    measured: list[float]  # final loss per seed
    run_ids: list[str]

    @property
    def mean(self) -> float:
        return float(np.mean(self.measured))

    @property
    def spread(self) -> float:
        return float(np.std(self.measured, ddof=1)) if len(self.measured) > 1 else 0.0

    @property
    def inside(self) -> int:
        return sum(self.lower <= m <= self.upper for m in self.measured)


def pair_verdict(a: Outcome, b: Outcome, seed_std: float) -> tuple[float, float, str]:
    """(measured gap b - a, noise, 'a better' | 'b better' | 'tie'): a gap beyond twice the
    standard error of the difference of means (seed spread measured here, or the
    profile's seed noise when there is one seed) is real."""
    n_a, n_b = len(a.measured), len(b.measured)
    sa = a.spread if n_a > 1 else seed_std
    sb = b.spread if n_b > 1 else seed_std
    noise = 2 * math.sqrt(sa**2 / n_a + sb**2 / n_b)
    gap = b.mean - a.mean
    return gap, noise, "tie" if abs(gap) <= noise else ("a better" if gap > 0 else "b better")


def schedules(result) -> list[tuple[str, Evaluation]]:
    out = [("best", result.best[0])]
    if grows(result.best[0].spec) or result.best[0].spec != result.baseline.spec:
        out.append(("full training", result.baseline))
    elif result.runner_up is not None:
        # the best is the compute-optimal full-training shape: the next shape says whether
        # the law's ranking of shapes, often closer than seed noise, held when trained
        out.append(("runner-up", result.runner_up))
    if result.paper is not None:
        out.append(("study", result.paper))
    return out


def train_one(spec: ScheduleSpec, seed: int, db: Path, workdir: Path, threads: int, device: str, label: str) -> str:
    steps = sum(round(st.tokens / (spec.training.batch_size * spec.model.seq_len)) for st in spec.stages)
    seeded = spec.model_copy(update={"name": f"check {label} seed{seed}",
                                     "training": spec.training.model_copy(update={"seed": seed})})
    if (done := complete_run(db, seeded)) is not None:
        return done  # an interrupted check resumes: a complete run of this very spec is not trained again
    micro = seeded.training.micro_batch_size
    summary = train_spec(seeded, db, workdir, threads=threads, device=device, eval_every=max(1, steps // EVALS),
                         eval_batches=max(1, 16 * 32 // micro), label=f"{label} seed {seed}")
    return summary["run_id"]


def train_all(jobs: list[tuple[str, ScheduleSpec]], seeds: int, db: Path, workdir: Path, threads: int, device: str,
              parallel: int) -> dict[str, list[str]]:
    """Every (schedule, seed) run, ``parallel`` at a time (each a subprocess with ``threads``
    torch threads; the store takes concurrent writers). Returns run ids per role, seed order."""
    from concurrent.futures import ThreadPoolExecutor

    tasks = [(role, spec, seed) for role, spec in jobs for seed in range(1, seeds + 1)]

    def run(task):
        role, spec, seed = task
        return train_one(spec, seed, db, workdir / role.replace(" ", "-"), threads, device, role)

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        ids = list(pool.map(run, tasks))
    out: dict[str, list[str]] = {}
    for (role, _, _), run_id in zip(tasks, ids):
        out.setdefault(role, []).append(run_id)
    return out


def curve_of(runs: list[RunData]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, flops, mean loss over seeds) at the evaluations all seeds share."""
    n = min(len(r.loss) for r in runs)
    tokens = runs[0].tokens[:n]
    return tokens, cumulative_flops(runs[0].spec, runs[0].steps, tokens), np.mean([r.loss[:n] for r in runs], axis=0)


def check(budget: float, *, vocab_size: int, seq_len: int, loss_profile: str, seeds: int, n_trials: int, db: Path,
          out: Path, threads: int, device: str, search_seed: int = 0, space: SearchSpace | None = None,
          parallel: int = 1) -> dict:
    from costsim import search

    profile = load_loss_profile(loss_profile)
    hardware = HardwareSpec(gpu="h100-sxm", n_gpus=1)
    space = space or SearchSpace.for_budget(budget, profile=profile, vocab_size=vocab_size, seq_len=seq_len)
    result = search.run(Budget(flops=budget), hardware, space=space, n_trials=n_trials, seed=search_seed,
                        loss_profile=loss_profile)
    outcomes, runs_by_role = [], {}
    roles = schedules(result)
    with tempfile.TemporaryDirectory() as tmp:
        trained = train_all([(role, e.spec) for role, e in roles], seeds, db, Path(tmp), threads, device, parallel)
        stored = {r.run_id: r for r in load_store(db, holdout_marker="")}
        for role, evaluation in roles:
            runs = [stored[i] for i in trained[role]]
            ids = trained[role]
            runs_by_role[role] = runs
            plans = stage_plans(evaluation.spec, runs[0].steps)
            final = predict(profile, plans, points_per_stage=1)
            outcomes.append(Outcome(role, evaluation.spec.stages[-1].name or role, evaluation.flops_counted,
                                    float(final.loss[-1]), float(final.lower[-1]), float(final.upper[-1]),
                                    [float(r.loss[-1]) for r in runs], ids))
    report = summarise(result, outcomes, runs_by_role, profile)
    write(out, report, runs_by_role, profile, db)
    return report


def _tie_band(comparison, a: str, b: str) -> tuple[float, float] | None:
    """The 90% interval of the gap b − a where the search called best against full training
    a tie (its gap is full training's loss minus the best's), else None."""
    if comparison is None or comparison.verdict != "tie" or {a, b} != {"best", "full training"}:
        return None
    lower, upper = comparison.lower, comparison.upper
    return (lower, upper) if (a, b) == ("best", "full training") else (-upper, -lower)


def summarise(result, outcomes: list[Outcome], runs_by_role: dict, profile) -> dict:
    by_role = {o.role: o for o in outcomes}
    comparison = result.comparison
    pairs = []
    for i, a in enumerate(outcomes):
        for b in outcomes[i + 1:]:
            gap, noise, measured = pair_verdict(a, b, profile.seed_std)
            predicted = "a better" if b.predicted > a.predicted else "b better"
            agree = measured == "tie" or measured == predicted
            band = _tie_band(comparison, a.role, b.role)
            if band is not None:
                # the search called this pair a tie: what it claimed is the gap's interval, not
                # the sign of its centre, so the pair agrees when the measured gap lies inside
                predicted, agree = "tie", band[0] <= gap <= band[1]
            pairs.append({"a": a.role, "b": b.role, "measured_gap": gap, "noise": noise, "measured": measured,
                          "predicted_gap": b.predicted - a.predicted, "predicted": predicted, "agree": agree})
    recommended_growth = comparison is not None and comparison.verdict == "growth better"
    growth_vs_full = next((p for p in pairs if {p["a"], p["b"]} == {"best", "full training"}), None)
    match = None
    if "full training" in runs_by_role and grows(result.best[0].spec):
        _, f_flops, f_loss = curve_of(runs_by_role["full training"])
        _, b_flops, b_loss = curve_of(runs_by_role["best"])
        match = asdict(compare_curves(b_flops, b_loss, f_flops, f_loss))
    recommended = by_role["best"] if recommended_growth or "full training" not in by_role else by_role["full training"]
    # another trained schedule ahead of the recommendation by more than seed noise beats the
    # answer, whichever of the two the law put ahead (a runner-up within its resolution too)
    beaten_by = [other for p in pairs if (other := CheckPair(**p).ahead_of(recommended.role))]
    if any(not p["agree"] for p in pairs) or beaten_by:
        verdict = "contradicted"
    elif not recommended.lower <= recommended.mean <= recommended.upper:
        verdict = "contradicted"  # the order held, but the recommendation did not train to its interval
    elif growth_vs_full is not None:
        measured_growth = growth_vs_full["measured"] == "a better"
        if recommended_growth == measured_growth:
            verdict = "confirmed"
        else:
            verdict = "tie" if growth_vs_full["measured"] == "tie" else "contradicted"
    else:
        verdict = "confirmed"
    return {"budget": result.best[0].flops_counted, "recommendation": "grow" if recommended_growth else "full training",
            "comparison": asdict(comparison) if comparison else None,
            "outcomes": [asdict(o) | {"mean": o.mean, "spread": o.spread, "inside": o.inside} for o in outcomes],
            "pairs": pairs, "compute_to_match_measured": match, "verdict": verdict,
            "recommended_role": recommended.role, "beaten_by": beaten_by,
            "loss_profile": profile.name, "seed_std_profile": profile.seed_std, "by_role": list(by_role)}


def render(report: dict) -> str:
    lines = [f"budget {report['budget']:.3g} counted FLOPs, loss profile {report['loss_profile']}; "
             f"search recommends: {report['recommendation']}", "",
             "| schedule | counted FLOPs | predicted final loss [90%] | measured (mean ± sd, seeds) | inside |",
             "|---|---|---|---|---|"]
    for o in report["outcomes"]:
        lines.append(f"| {o['role']} | {o['flops_counted']:.3g} | {o['predicted']:.4f} [{o['lower']:.4f}, "
                     f"{o['upper']:.4f}] | {o['mean']:.4f} ± {o['spread']:.4f} ({len(o['measured'])}) | "
                     f"{o['inside']}/{len(o['measured'])} |")
    lines += ["", "| pair | predicted gap (b − a) | measured gap | seed noise (2 se) | measured | agrees |",
              "|---|---|---|---|---|---|"]
    for p in report["pairs"]:
        label = {"a better": f"{p['a']} better", "b better": f"{p['b']} better", "tie": "tie"}[p["measured"]]
        tie = " (the search: a tie)" if p["predicted"] == "tie" else ""
        lines.append(f"| {p['a']} vs {p['b']} | {p['predicted_gap']:+.4f}{tie} | {p['measured_gap']:+.4f} | "
                     f"{p['noise']:.4f} | {label} | {'yes' if p['agree'] else 'NO'} |")
    m = report["compute_to_match_measured"]
    if m:
        ratio = f"{m['ratio']:.2f}" if m["ratio"] is not None else f">{m['ratio_floor']:.2f}"
        lines += ["", f"best against full training, measured: compute-to-match ratio {ratio}, crossover "
                  f"{m['crossover_kind']}" + (f" at {m['crossover_flops']:.3g} FLOPs" if m["crossover_flops"] else "")]
    if report.get("beaten_by"):
        lines += ["", f"the recommended schedule ({report['recommended_role']}) trained worse than "
                  f"{' and '.join(report['beaten_by'])} beyond seed noise"]
    lines += ["", f"verdict: **{report['verdict']}**"]
    return "\n".join(lines)


def write(out: Path, report: dict, runs_by_role: dict, profile, db: Path | None = None) -> str | None:
    """check.json, check.md and check.html into ``out``; with ``db``, the report also as a
    ``checks`` row of that store (beside the runs it names), for the dashboard's check page.
    Returns the stored check's id (None without ``db``)."""
    import plotly.graph_objects as go

    out.mkdir(parents=True, exist_ok=True)
    (out / "check.json").write_text(json.dumps(report, indent=1))
    (out / "check.md").write_text(render(report) + "\n")
    fig = go.Figure()
    for role, runs in runs_by_role.items():
        for r in runs:
            flops = cumulative_flops(r.spec, r.steps, r.tokens)
            fig.add_scatter(x=flops, y=r.loss, mode="markers", name=f"{role} measured (seed {r.seed})")
        curve = predict(profile, stage_plans(runs[0].spec, runs[0].steps), points_per_stage=64)
        flops = cumulative_flops(runs[0].spec, runs[0].steps, curve.tokens)
        fig.add_scatter(x=flops, y=curve.loss, mode="lines", name=f"{role} predicted")
        fig.add_scatter(x=np.concatenate([flops, flops[::-1]]), y=np.concatenate([curve.upper, curve.lower[::-1]]),
                        fill="toself", opacity=0.15, line={"width": 0}, name=f"{role} {profile.interval:.0%}")
    fig.update_layout(title=f"check: predicted vs measured ({report['verdict']})", xaxis_title="counted FLOPs",
                      yaxis_title="validation loss (nats)", xaxis_type="log")
    fig.write_html(out / "check.html", include_plotlyjs=True)
    return store_check(db, report) if db is not None else None  # after the files: they survive a store error


def store_check(db: Path, report: dict) -> str:
    """Append the report to the store's ``checks`` table and flush; return its ``check_id``
    (the time it was stored and a random suffix, like a run id)."""
    from costsim.store import Store

    now = datetime.now(UTC)
    check_id = f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    store = Store(db)
    store.append("checks", [{"check_id": check_id, "created_at": now, "budget": float(report["budget"]),
                             "loss_profile": report["loss_profile"], "verdict": report["verdict"],
                             "recommendation": report["recommendation"], "report_json": json.dumps(report),
                             "record_id": f"check:{check_id}"}])
    store.flush()
    return check_id


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.check_recommendation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, help="counted FLOPs per schedule (default 4e12; --quick 2e11)")
    parser.add_argument("--vocab-size", type=int, default=256, help="default 256 (the offline byte corpus)")
    parser.add_argument("--seq-len", type=int, default=64, help="default 64")
    parser.add_argument("--loss-profile", default="stdlib-bytes", help="default stdlib-bytes")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per schedule (default 3)")
    parser.add_argument("--n-trials", type=int, default=300, help="search trials (default 300)")
    parser.add_argument("--search-seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (default 1; with N jobs give "
                        "each --threads CPUs/N)")
    parser.add_argument("--db", default="check.duckdb", help="store for the runs (default ./check.duckdb)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    parser.add_argument("--refit", help="also refit the loss model on the shipped corpus plus these runs; "
                        "write the profile to this .json path")
    parser.add_argument("--quick", action="store_true", help="a smoke test: budget 2e11, 1 seed, 20 trials")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget = 2e11 if args.budget is None else args.budget
        args.seeds, args.n_trials = 1, min(args.n_trials, 20)
    budget = 4e12 if args.budget is None else args.budget
    if not budget > 0 or args.seeds < 1 or args.n_trials < 1 or args.threads < 1 or args.jobs < 1:
        raise CostsimError("--budget, --seeds, --n-trials, --threads and --jobs must be positive")
    if args.refit:
        output_file(args.refit, "--refit")
    db = output_file(args.db, "--db").resolve()
    if args.out == DEFAULT_OUT:
        Path(args.out).parent.mkdir(exist_ok=True)  # the default results/ folder is ours to make
    if not Path(args.out).parent.is_dir():
        raise CostsimError(f"--out {args.out}: folder {Path(args.out).parent} does not exist; create it or pick "
                           "another path")
    space = None
    if args.quick:
        profile = load_loss_profile(args.loss_profile)
        space = SearchSpace.for_budget(budget, profile=profile, vocab_size=args.vocab_size, seq_len=args.seq_len,
                                       min_steps=60, max_stages=3)
    report = check(budget, vocab_size=args.vocab_size, seq_len=args.seq_len, loss_profile=args.loss_profile,
                   seeds=args.seeds, n_trials=args.n_trials, db=db, out=Path(args.out), threads=args.threads,
                   device=args.device, search_seed=args.search_seed, space=space, parallel=args.jobs)
    print(render(report))
    print(f"\nwrote {args.out}/check.md, check.json, check.html; runs in {args.db}")
    if args.refit:
        refit(db, Path(args.refit), args.loss_profile)
    return 0


def refit(db: Path, out: Path, loss_profile: str) -> None:
    from costsim.corpus import load_dataset
    from costsim.fit import fit_profile

    runs = load_dataset() + [r for r in load_store(db, holdout_marker="") if r.name.startswith("check ")]
    start = load_loss_profile(loss_profile).params
    profile = fit_profile(runs, name=out.stem, start=start, structure=start.structure, n_bootstrap=10,
                          source=f"studies.check_recommendation --refit: shipped corpus + {db.name}")
    out.write_text(profile.model_dump_json(indent=1) + "\n")
    print(f"refitted {profile.name} on {profile.report['n_fit_runs']} runs (rms "
          f"{profile.report['rms_nats_in_sample']:.4f} nats); wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
