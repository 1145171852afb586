"""``python -m studies.incremental_training``: reproduce arXiv 2411.18700 end to end.

"On the Effectiveness of Incremental Training of Large Language Models" (Li, Fung,
Huang, 2024) grew GPT-2 layer-wise in S stages (each new stage first trains only the
new blocks, then all), then trained the full model on ("continual training"), and
found it ahead early but needing more compute than full training to reach the same
loss. This study:

1. computes the paper's cost framework for S = 4, 8, 12 in its own units (exactly),
   next to the same schedules in counted FLOPs, model FLOPs, time and money, and
   explains where the conventions differ and by how much;
2. replicates it for real through ``validate``: full-depth baseline, the study's
   schedule (freeze + all per stage, then continual training with a fresh optimizer)
   and the no-freeze ablation, on the same data; loss against counted FLOPs and wall
   time, where the curves cross, and the compute each needs to reach the baseline;
3. puts the loss model's prediction for the same schedules next to the measurement;
4. asks the search what it recommends at budgets from 1e17 to 1e21 FLOPs and how its
   predicted savings compare with the study's schedule.

Writes ``report.md``, the runs' DuckDB store and an HTML dashboard under ``--out``.
``--preset cpu`` (default) takes a few minutes on 2 cores; ``--preset gpu`` is sized
for about ten minutes on one H100/H200.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from costsim.engine import estimate
from costsim.errors import CostsimError, cli_errors
from costsim.fit import flops_to_reach
from costsim.loss import predict_curve
from costsim.ops import block_ops, head_ops, total
from costsim.paper import continual_tokens, full_training, paper_incremental, study_cost_ratio
from costsim.spec import HardwareSpec, ModelSpec, ScheduleSpec, TrainingSpec
from studies.runner import complete_run, train_spec


@dataclass(frozen=True)
class Preset:
    model: ModelSpec
    layers: int
    n_stages: int
    batch: int
    micro_batch: int
    incremental_steps: int
    lr: float
    warmup_steps: int
    eval_every: int
    device: str
    precision: str


PRESETS = {
    "cpu": Preset(ModelSpec(d_model=96, n_heads=4, vocab_size=256, seq_len=64), layers=8, n_stages=4, batch=16,
                  micro_batch=16, incremental_steps=480, lr=2e-3, warmup_steps=20, eval_every=20, device="cpu",
                  precision="fp32"),
    "gpu": Preset(ModelSpec(d_model=768, n_heads=12, vocab_size=50304, seq_len=1024, bias=True), layers=12,
                  n_stages=4, batch=32, micro_batch=32, incremental_steps=1200, lr=6e-4, warmup_steps=0,
                  eval_every=50, device="cuda", precision="bf16-mixed"),
    # seconds, for tests: the same pipeline at toy size
    "smoke": Preset(ModelSpec(d_model=32, n_heads=2, vocab_size=256, seq_len=32), layers=4, n_stages=2, batch=8,
                    micro_batch=8, incremental_steps=24, lr=3e-3, warmup_steps=0, eval_every=6, device="cpu",
                    precision="fp32"),
}


# --- 1. the cost framework -------------------------------------------------------------

def framework_rows(gpu: str = "h100-sxm", tokens: float = 10_000 * 524_288) -> list[dict]:
    """The study's schedules (incremental part only) against full training of the same
    depth, in every convention; depth 24 where 12 does not divide into S stages."""
    hardware = HardwareSpec(gpu=gpu)
    rows = []
    for layers, s in ((12, 4), (24, 8), (12, 12)):
        inc = paper_incremental(layers, s, tokens, continual=0, hardware=hardware)
        base = full_training(layers, tokens, hardware=hardware)
        e_inc, e_base = estimate(inc), estimate(base)
        rows.append({
            "layers": layers, "S": s, "study_exact": study_cost_ratio(s),
            "study": float(Fraction(e_inc.total.study_units) / Fraction(e_base.total.study_units)),
            "counted": e_inc.total.flops_counted / e_base.total.flops_counted,
            "model": e_inc.total.flops_model / e_base.total.flops_model,
            "time": e_inc.total.time_s / e_base.total.time_s,
            "cost_usd": e_inc.total.cost_usd, "cost_usd_base": e_base.total.cost_usd,
            "continual_share": float(continual_tokens(tokens, s) / Fraction(tokens)),
            **counted_breakdown(inc),
        })
    return rows


def counted_breakdown(spec: ScheduleSpec) -> dict:
    """Shares of a schedule's counted FLOPs the study's units leave out: backward
    through frozen blocks (input gradients still flow to the trainable embeddings) and
    the embedding/LM-head matmuls."""
    from costsim.engine import stage_shape

    shape = stage_shape(spec)
    block, head = block_ops(shape), head_ops(shape)
    per_token_frozen_bwd = (shape.n_backward_blocks - shape.n_trainable) * total(block, "bwd_input_flops")
    per_token_head = (total(head, "fwd_flops") + total(head, "bwd_input_flops")
                      + shape.head_trainable * total(head, "bwd_weight_flops"))
    tokens = np.array([s.tokens for s in spec.stages])
    counted = estimate(spec).total.flops_counted
    return {"frozen_backward_share": float(np.dot(tokens, per_token_frozen_bwd)) / counted,
            "head_share": float(np.dot(tokens, per_token_head)) / counted}


# --- 2. real runs ----------------------------------------------------------------------

def study_specs(preset: Preset) -> dict[str, ScheduleSpec]:
    training = TrainingSpec(micro_batch_size=preset.micro_batch, batch_size=preset.batch, precision=preset.precision,
                            lr_schedule={"kind": "constant", "lr": preset.lr, "warmup_steps": preset.warmup_steps})
    tokens = preset.incremental_steps * preset.batch * preset.model.seq_len
    common = {"model": preset.model, "training": training}
    incremental = paper_incremental(preset.layers, preset.n_stages, tokens, **common)
    no_freeze = paper_incremental(preset.layers, preset.n_stages, tokens, freeze=False, **common)
    baseline = full_training(preset.layers, incremental.total_tokens, **common)
    return {"baseline": baseline.model_copy(update={"name": "full training"}),
            "incremental": incremental.model_copy(update={"name": "incremental (freeze + all, continual)"}),
            "no_freeze": no_freeze.model_copy(update={"name": "incremental, no freezing"})}


def train_all(specs: dict[str, ScheduleSpec], preset: Preset, db: Path, jobs: int) -> dict[str, str]:
    """Run every spec through ``python -m validate.run``; returns run ids by key."""
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))

    def one(key: str, spec: ScheduleSpec, workdir: Path) -> tuple[str, str]:
        summary = train_spec(spec, db, workdir / key, threads=threads, device=preset.device,
                             eval_every=preset.eval_every, eval_batches=8, label=key)
        return key, summary["run_id"]

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(one, key, spec, Path(tmp)) for key, spec in specs.items()]
        return dict(f.result() for f in futures)


def stored_runs(db: Path, specs: dict[str, ScheduleSpec]) -> dict[str, str]:
    """The newest complete run of each spec (matched by its full spec) in the store."""
    found = {key: run_id for key, spec in specs.items() if (run_id := complete_run(db, spec)) is not None}
    missing = sorted(set(specs) - set(found))
    if missing:
        raise CostsimError(f"--reuse: no complete run of {', '.join(missing)} with this preset in the store; "
                           "run without --reuse")
    return found


@dataclass(frozen=True)
class Curve:
    flops: np.ndarray
    time_s: np.ndarray
    loss: np.ndarray


def measured_curve(store, run_id: str) -> Curve:
    rows = store.query("SELECT flops_counted, wall_time_s, val_loss FROM evals WHERE run_id = ? AND step > 0 "
                       "ORDER BY step", [run_id])
    return Curve(np.array([r["flops_counted"] for r in rows]), np.array([r["wall_time_s"] for r in rows]),
                 np.array([r["val_loss"] for r in rows]))


@dataclass(frozen=True)
class Comparison:
    crossings: list[float]  # x where curve a crosses curve b
    ahead_at_start: bool | None  # a below b at the start of their common range (None: no overlap)
    ahead_at_end: bool | None

    def verdict(self) -> str:
        if self.ahead_at_start is None:
            return "the curves do not overlap"
        start = "ahead" if self.ahead_at_start else "behind"
        end = "ahead" if self.ahead_at_end else "behind"
        text = f"{start} at first, {end} at the end of the common range"
        if self.ahead_at_start and not self.ahead_at_end:
            text += " (the study's finding)"
        return text


def compare(a: Curve, b: Curve, axis: str = "flops") -> Comparison:
    """Curve ``a`` against ``b`` at equal x (linear interpolation over their common range)."""
    xa, xb = getattr(a, axis), getattr(b, axis)
    lo, hi = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    if lo >= hi:
        return Comparison([], None, None)
    grid = np.geomspace(lo, hi, 400)
    diff = np.interp(grid, xa, a.loss) - np.interp(grid, xb, b.loss)
    flips = np.flatnonzero(np.sign(diff[1:]) != np.sign(diff[:-1]))
    points = [float(grid[i] + (grid[i + 1] - grid[i]) * diff[i] / (diff[i] - diff[i + 1])) for i in flips]
    return Comparison(points, bool(diff[0] < 0), bool(diff[-1] < 0))


def to_reach(curve: Curve, target: float, axis: str = "flops") -> float | None:
    return flops_to_reach(target, getattr(curve, axis), curve.loss)  # the same interpolation on any axis


def loss_at(curve: Curve, x: float, axis: str = "flops") -> float | None:
    xs = getattr(curve, axis)
    return float(np.interp(x, xs, curve.loss)) if xs[0] <= x <= xs[-1] else None


# --- 4. the search ---------------------------------------------------------------------

def search_rows(budgets=(1e17, 1e18, 1e19, 1e20, 1e21), n_trials: int = 300, gpu: str = "h100-sxm",
                n_gpus: int = 8) -> list[dict]:
    from costsim.planner import Budget, grows
    from costsim.search import run

    rows = []
    for amount in budgets:
        budget = Budget(flops=amount)
        result = run(budget, HardwareSpec(gpu=gpu, n_gpus=n_gpus), n_trials=n_trials, seed=0)
        best = result.best[0]
        rows.append({"budget": amount, "best_loss": best.loss, "best_interval": (best.loss_lower, best.loss_upper),
                     "best_stages": len({s.layers for s in best.spec.stages}),
                     "best_shape": f"{best.spec.stages[-1].layers}L x {best.spec.model.d_model}",
                     "baseline_loss": result.baseline.loss,
                     "paper_loss": result.paper.loss if result.paper else None,
                     "best_equal_budget": result.budget_for_equal_loss,
                     "paper_equal_budget": result.budget_for_paper_loss,
                     "comparison": None if result.comparison is None else {
                         "gap": result.comparison.gap, "lower": result.comparison.lower,
                         "upper": result.comparison.upper, "verdict": result.comparison.verdict},
                     "recommends": "growth" if grows(result.recommendation.spec) else "full training"})
    return rows


# --- the report --------------------------------------------------------------------------

def _comparison(c: dict | None) -> str:
    """The search's paired comparison of its best growing schedule with full training."""
    if c is None:
        return "does not grow"
    return f"{c['verdict']}: {c['gap']:+.3f} [{c['lower']:+.3f}, {c['upper']:+.3f}]"


def _fmt(value, spec: str = ".3g") -> str:
    return "n/a" if value is None else "not reached" if value == "never" else format(value, spec)


def write_report(out: Path, preset_name: str, framework: list[dict], runs: dict, search: list[dict],
                 predictions: dict) -> Path:
    lines = [f"# Incremental training (arXiv 2411.18700), reproduced with costsim — preset `{preset_name}`", "",
             "Generated by `python -m studies.incremental_training`; every number below comes from that run.", "",
             "## 1. The study's cost framework against what executes", "",
             "Incremental part only (no continual phase), relative to full training of the same depth for the "
             "same tokens; time and money on one GPU with costsim's profile.", "",
             "| layers | S | study units (exact) | counted FLOPs | model FLOPs | time | frozen-block backward share "
             "| embedding/head share |", "|---|---|---|---|---|---|---|---|"]
    for r in framework:
        lines.append(f"| {r['layers']} | {r['S']} | {r['study_exact']} = {r['study']:.3f} | {r['counted']:.3f} | "
                     f"{r['model']:.3f} | {r['time']:.3f} | {r['frozen_backward_share']:.1%} | {r['head_share']:.1%} |")
    lines += ["", "The study counts c per layer per token forward and c backward for trainable layers only. "
              "Two things it leaves out make the real saving smaller: a frozen block below trainable embeddings "
              "still runs its input-gradient backward (two thirds of a trainable block's backward; the "
              "'frozen-block backward share' column is that part of the counted FLOPs), and the embedding/LM "
              "head matmuls, which do not shrink with depth ('embedding/head share'). Counted backward is also "
              "about twice the forward, not equal to it, and counted attention is 2.5x its forward backward.", ""]
    lines += ["## 2. Real replication", "",
              f"Model d_model {runs['preset'].model.d_model}, {runs['preset'].layers} layers, S = "
              f"{runs['preset'].n_stages}, byte-level stdlib corpus (offline), seq {runs['preset'].model.seq_len}, "
              f"batch {runs['preset'].batch}, constant LR {runs['preset'].lr}. All three runs see the same data "
              "order; the baseline trains the incremental schedule's total tokens.", "",
              "| run | final val loss | counted FLOPs | wall time (s) | FLOPs to baseline's final loss | "
              "loss at the incremental run's compute |", "|---|---|---|---|---|---|"]
    for row in runs["table"].values():
        lines.append(f"| {row['name']} | {row['final_loss']:.4f} | {row['flops']:.3g} | {row['time_s']:.1f} | "
                     f"{_fmt(row['flops_to_target'])} | {_fmt(row['loss_at_incremental_compute'], '.4f')} |")
    for key, cross in runs["crossings"].items():
        flops = ", ".join(f"{x:.3g}" for x in cross["flops"]) or "none"
        seconds = ", ".join(f"{x:.1f}" for x in cross["time_s"]) or "none"
        lines.append(f"\n{runs['table'][key]['name']} vs full training: the curves cross at counted FLOPs {flops} "
                     f"and at wall time (s) {seconds}; {cross['verdict']}.")
    lines += ["", "## 3. The loss model's prediction", "",
              f"Profile `{predictions['profile']}`. Predicted vs measured final validation loss:", "",
              "| run | measured | predicted | 90% interval |", "|---|---|---|---|"]
    for key, p in predictions["rows"].items():
        lines.append(f"| {runs['table'][key]['name']} | {p['measured']:.4f} | {p['predicted']:.4f} | "
                     f"[{p['lower']:.4f}, {p['upper']:.4f}] |")
    lines += ["", "## 4. What the search recommends instead", "",
              "8 x H100 SXM, the default loss profile; 'x budget to match' is the budget full training "
              "needs to reach the same predicted loss (below 1: the schedule is worse than full training).", "",
              "| budget (FLOPs) | best schedule | stages | predicted loss | full training | study's S=4 | "
              "best: x budget to match | study's: x budget to match | best growing vs full training "
              "(gap, 90% interval) | recommends |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in search:
        def ratio(v, budget=r["budget"]):
            return "n/a" if v is None else f"{v / budget:.3f}"

        lines.append(f"| {r['budget']:.0e} | {r['best_shape']} | {r['best_stages']} | {r['best_loss']:.4f} "
                     f"[{r['best_interval'][0]:.4f}, {r['best_interval'][1]:.4f}] | {r['baseline_loss']:.4f} | "
                     f"{_fmt(r['paper_loss'], '.4f')} | {ratio(r['best_equal_budget'])} | "
                     f"{ratio(r['paper_equal_budget'])} | {_comparison(r.get('comparison'))} | "
                     f"{r.get('recommends', 'n/a')} |")
    lines += ["", "Figures: `dashboard/index.html` (schedules, loss against counted FLOPs and time with "
              "predictions, cost per stage, calibration)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


DEFAULT_OUT = "results/incremental_training"


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.incremental_training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--gpu", action="store_true", help="same as --preset gpu")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once (wall times are comparable only when runs do not share CPUs)")
    parser.add_argument("--search-trials", type=int, default=300)
    parser.add_argument("--budgets", default="1e17,1e18,1e19,1e20,1e21", help="FLOP budgets for the search part")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the runs already in OUT/study.duckdb (same preset) instead of training again")
    args = parser.parse_args(argv)
    preset_name = "gpu" if args.gpu else args.preset
    preset = PRESETS[preset_name]
    out = Path(args.out)
    if args.out == DEFAULT_OUT:
        out.parent.mkdir(exist_ok=True)  # the default results/ folder is ours to make
    if not out.parent.is_dir():
        raise CostsimError(f"--out {args.out}: folder {out.parent} does not exist; create it or pick another path")
    if args.jobs < 1 or args.search_trials < 1:
        raise CostsimError("--jobs and --search-trials must be positive integers")
    out.mkdir(exist_ok=True)
    db = out / "study.duckdb"

    framework = framework_rows()
    specs = study_specs(preset)
    from costsim.store import Store

    store = Store(db)
    run_ids = stored_runs(db.resolve(), specs) if args.reuse else train_all(specs, preset, db.resolve(), args.jobs)
    curves = {key: measured_curve(store, rid) for key, rid in run_ids.items()}
    base = curves["baseline"]
    target = float(base.loss[-1])
    inc_compute = float(curves["incremental"].flops[-1])
    table = {key: {"name": specs[key].name, "final_loss": float(c.loss[-1]), "flops": float(c.flops[-1]),
                   "time_s": float(c.time_s[-1]), "flops_to_target": to_reach(c, target) or "never",
                   "loss_at_incremental_compute": loss_at(c, inc_compute)}
             for key, c in curves.items()}
    cross = {}
    for key in ("incremental", "no_freeze"):
        by_flops, by_time = compare(curves[key], base), compare(curves[key], base, "time_s")
        cross[key] = {"flops": by_flops.crossings, "time_s": by_time.crossings,
                      "verdict": f"against counted FLOPs {by_flops.verdict()}; against wall time {by_time.verdict()}"}
    steps = {key: [r["steps"] for r in store.query(
        "SELECT steps FROM stages WHERE run_id = ? ORDER BY stage_index", [rid])] for key, rid in run_ids.items()}
    pred_rows, profile_name = {}, ""
    for key, spec in specs.items():
        curve = predict_curve(spec, steps=steps[key])
        profile_name = curve.label
        pred_rows[key] = {"measured": table[key]["final_loss"], "predicted": float(curve.loss[-1]),
                          "lower": float(curve.lower[-1]), "upper": float(curve.upper[-1])}
    try:
        budgets = tuple(float(b) for b in args.budgets.split(","))
    except ValueError:
        raise CostsimError(f"--budgets {args.budgets!r}: give comma-separated numbers like 1e17,1e19") from None
    search = search_rows(budgets, n_trials=args.search_trials)
    report = write_report(out, preset_name, framework, {"preset": preset, "table": table, "crossings": cross},
                          search, {"profile": profile_name, "rows": pred_rows})
    from costsim.dashboard.__main__ import main as dashboard

    dashboard(["--db", str(db), "--out", str(out / "dashboard")])
    print(f"wrote {report} and {out / 'dashboard' / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
