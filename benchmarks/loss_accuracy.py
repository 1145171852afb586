"""How well each loss-model structure predicts growth schedules it never saw (not a timed test).

On the shipped growth corpus (``costsim/data/corpus/growth_corpus.json``, or ``--data``),
for every growth structure: leave-one-schedule-out cross-validation (refit without each
schedule family, predict it), then a size hold-out (refit without every run of the
largest final model, predict them all). For each held-out run it prints, measured and
predicted, the compute-to-match ratio (counted FLOPs to reach the loss same-size full
training had at half its FLOPs, over those FLOPs; ">x" when the schedule never gets
there), whether the sign (growth saves compute or not) is right, the crossover FLOPs
after which growth stays behind full training, the rms error over the curve and the
share of measured points inside the 90% interval. Then a summary per structure against
the targets: sign right wherever the measured ratio differs from 1 by more than seed
noise, ratio error <= 0.15, crossover within 1.5x, coverage 80-95%.

Run: python benchmarks/loss_accuracy.py [--structures fading/N,fading/N/flat] [--jobs 2] [--json out.json]
(/N: the law in N alone, no shape term; /flat: one lag at every size; /linear: the start-up's depth
exponent held at 1; /k1: its shape held at 1 (exponential); /w0: its width exponent held at 0;
/inherit: growth continues the start-up from the share in use instead of ending it; /widthinherit: only
width growth continues it (depth growth ends it); /carry: every growth continues it from
the old model's share in use, fresh blocks included; /nostartup: no
start-up; /delay: the token-delay start-up; /unpaired: fitted on the runs' points alone, without
growth runs' gaps to their same-seed baselines; /ltX: the deficit's time scale held at X; /pclock: the
deficit's time counted in tokens per parameter (``lag_clock``); /satfrozen: a frozen phase's efficiency
saturating (``frozen_form``); /trainedclock: a frozen phase advances the deficit's clock by the tokens its
trainable blocks see (``frozen_clock``); /interaction: the law's capacity and data terms combined as
(a^q + b^q)^(1/q), q fitted (``law_interaction``); /break: the law's data term a smoothly broken power law, its
break and late exponent fitted (``data_break_tokens``, ``late_beta``); /breakheld: the same break held where /break
starts it (3e6 tokens, 0.9); /breaksize: the break's place moving with the model's size, its exponent fitted
(``data_break_size_exponent``); /lawfirst: the scaling law from full training alone (``--law-from-full-training``).
The shipped profile's variant is named in docs/loss-model.md.)
About 30 minutes a structure on one core.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from costsim.corpus import load_runs
from costsim.fit import (
    DATA_BREAK_SIZE_START,
    DATA_BREAK_START,
    HELD_VALUES,
    INTERACTION_START,
    LAW_FROM_FULL_TRAINING,
    PAIRED_WEIGHT,
    WIDTH_LAG_SCALE_START,
    SeedNoise,
    holding,
    seed_noise,
)
from costsim.heldout import CurveComparison, RunScore, cross_validate, ratio_seed_noise, size_holdout
from costsim.loss import STRUCTURES, load_loss_profile

RATIO_TARGET, CROSSOVER_FACTOR, COVERAGE = 0.15, 1.5, (0.80, 0.95)


def ratio_text(c: CurveComparison | None) -> str:
    if c is None:
        return "-"
    return f"{c.ratio:.2f}" if c.ratio is not None else f">{c.ratio_floor:.2f}"


def ratio_error(score: RunScore) -> float | None:
    m, p = score.measured, score.predicted
    if m is None or p is None:
        return None
    if m.ratio is not None and p.ratio is not None:
        return abs(m.ratio - p.ratio)
    if m.ratio is None and p.ratio is None:
        return 0.0  # both say: never reaches it within the run
    if m.ratio is None:  # measured censored at its floor
        return max(0.0, m.ratio_floor - p.ratio)
    return max(0.0, p.ratio_floor - m.ratio)


def crossover_ok(score: RunScore, noise: float = 0.0, strict: bool = False) -> bool | None:
    """Same kind of crossing, within 1.5x when both cross. Unless ``strict``: a measured
    crossing whose final gap is within seed noise is a tie at the end ("ahead throughout"
    then agrees too), and a predicted crossing inside the band where the measured gap is
    within seed noise of 0 (widened by 1.5x) is as right as the data can tell."""
    m, p = score.measured, score.predicted
    if m is None or p is None:
        return None
    if m.crossover_kind != p.crossover_kind:
        tie_at_end = abs(m.end_gap) <= noise and {m.crossover_kind, p.crossover_kind} == {"crosses",
                                                                                           "ahead throughout"}
        return tie_at_end and not strict
    if m.crossover_flops is None:
        return True
    if max(m.crossover_flops, p.crossover_flops) / min(m.crossover_flops, p.crossover_flops) <= CROSSOVER_FACTOR:
        return True
    band = m.crossover_band
    return (not strict and band is not None
            and band[0] / CROSSOVER_FACTOR <= p.crossover_flops <= band[1] * CROSSOVER_FACTOR)


def is_tie(score: RunScore, ratio_noise: float) -> bool:
    """The measured ratio is within seed noise of 1 (either way a tie); a mean over k seeds
    has 1/sqrt(k) of one seed's noise."""
    m = score.measured
    return m is not None and m.ratio is not None and abs(m.ratio - 1) <= ratio_noise / np.sqrt(score.seeds)


def crossover_text(c: CurveComparison | None) -> str:
    if c is None:
        return "-"
    where = f"{c.crossover_flops:.3g}" if c.crossover_flops is not None else c.crossover_kind
    band = f" [{c.crossover_band[0]:.2g}-{c.crossover_band[1]:.2g}]" if c.crossover_band else ""
    return f"{where}{band} ({c.end_gap:+.3f})"


def table(scores: list[RunScore], ratio_noise: float) -> str:
    """One row per held-out growth run; crossover columns end with the final gap to full
    training at equal FLOPs in brackets."""
    head = ("held-out run", "ratio meas", "ratio pred", "sign", "crossover meas", "crossover pred", "rms", "cover")
    rows = [head]
    for s in scores:
        if s.measured is None:
            continue
        sign = "tie" if is_tie(s, ratio_noise) else ("right" if s.sign_right else "WRONG")
        name = s.run + (f" ({s.seeds} seeds)" if s.seeds > 1 else "")
        rows.append((name, ratio_text(s.measured), ratio_text(s.predicted), sign, crossover_text(s.measured),
                     crossover_text(s.predicted), f"{s.rms:.3f}", f"{s.coverage:.0%}" if s.coverage is not None
                     else "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows)


def end_gap_errors(scores: list[RunScore]) -> list[float]:
    """Predicted minus measured gap to full training where both end (> 0: growth predicted
    too far behind): what a search at a fixed budget decides on."""
    return [s.predicted.end_gap - s.measured.end_gap for s in scores if s.predicted and s.measured]


def summary(scores: list[RunScore], ratio_noise: float, seed_std: float = 0.0) -> dict:
    growth = [s for s in scores if s.measured is not None]
    decided = [s for s in growth if not is_tie(s, ratio_noise)]
    errors = [e for e in (ratio_error(s) for s in growth) if e is not None]
    cross = [c for c in (crossover_ok(s, 2 * seed_std / np.sqrt(s.seeds)) for s in growth) if c is not None]
    strict = [c for c in (crossover_ok(s, strict=True) for s in growth) if c is not None]
    points = sum(s.n_points for s in scores)
    covered = [s for s in scores if s.coverage is not None]
    coverage = sum(s.coverage * s.n_points for s in covered) / max(sum(s.n_points for s in covered), 1) \
        if covered else None
    rms = float(np.sqrt(sum(s.rms**2 * s.n_points for s in scores) / max(points, 1)))
    signed = end_gap_errors(growth)
    gaps = np.abs(signed)
    return {"end_gap_error_mean": float(np.mean(gaps)) if len(gaps) else None,
            "end_gap_bias": float(np.mean(signed)) if signed else None,  # > 0: growth predicted too far behind
            "end_gap_too_large": sum(g > 0 for g in signed),
            "end_gap_error_max": float(np.max(gaps)) if len(gaps) else None,
            "runs": len(growth), "sign_right": sum(bool(s.sign_right) for s in decided), "sign_decided": len(decided),
            "ratio_error_median": float(np.median(errors)) if errors else None,
            "ratio_error_max": float(np.max(errors)) if errors else None,
            "ratio_within_target": sum(e <= RATIO_TARGET for e in errors),
            "crossover_ok": sum(cross), "crossover_strict": sum(strict), "crossover_n": len(cross), "rms": rms,
            "coverage": coverage}


def summary_line(name: str, s: dict) -> str:
    return (f"{name:11s} rms {s['rms']:.4f}  sign {s['sign_right']}/{s['sign_decided']}  "
            f"ratio err median {s['ratio_error_median']:.3f} max {s['ratio_error_max']:.3f} "
            f"(<= {RATIO_TARGET}: {s['ratio_within_target']}/{s['runs']})  "
            f"crossover {s['crossover_ok']}/{s['crossover_n']} (strict {s['crossover_strict']})  "
            f"end gap err mean {s['end_gap_error_mean']:.3f} max {s['end_gap_error_max']:.3f} "
            f"bias {s['end_gap_bias']:+.3f} (too large on {s['end_gap_too_large']}/{s['runs']})"
            + (f"  coverage {s['coverage']:.0%}" if s["coverage"] is not None else ""))


VARIANT_HOLDS = {"N": "shape_exponent", "flat": "lag_size_slope", "nostartup": "startup_tokens",
                 "linear": "startup_depth_exponent", "k1": "startup_shape", "w0": "startup_width_exponent"}
LAW_FIRST = "lawfirst"  # the law from full training alone, the growth terms fitted with it held
UNPAIRED = "unpaired"  # fit argument, not a LossParams field: fitted on points alone (paired_weight 0)
VARIANT_SETS = {"delay": {"startup_form": "delay"}, "inherit": {"startup_growth": "inherit"},
                "widthinherit": {"startup_growth": "depth_escapes"}, "carry": {"startup_growth": "carry"},
                "pclock": {"lag_clock": "parameters"}, "satfrozen": {"frozen_form": "saturating"},
                "trainedclock": {"frozen_clock": "trained"}, "interaction": {"law_interaction": INTERACTION_START},
                "widthclock": {"width_lag_scale": WIDTH_LAG_SCALE_START},
                "break": dict(zip(("data_break_tokens", "late_beta"), DATA_BREAK_START)),
                "breakheld": dict(zip(("data_break_tokens", "late_beta"), DATA_BREAK_START)),
                "breaksize": {"data_break_size_exponent": DATA_BREAK_SIZE_START}}
BREAK_FIELDS = ("data_break_tokens", "late_beta")  # /breakheld holds them where /break starts them


def variant_holds(variant: str) -> tuple[str, tuple[str, ...]]:
    """``STRUCTURE[/N][/flat][/nostartup][/linear][/k1][/w0][/delay][/inherit][/widthinherit][/carry][/ltX]``:
    /N holds the law's shape term at 0 (capacity in N alone), /flat holds the lags' size slope at 0
    (one lag at every size), /nostartup holds the from-scratch start-up at 0, /linear
    holds its depth exponent at 1, /k1 its shape at 1, /w0 its width exponent at 0, /ltX
    the growth deficit's time scale at X (``lag_tokens``)."""
    structure, *flags = variant.split("/")
    unknown = [f for f in flags if f not in VARIANT_HOLDS and f not in VARIANT_SETS and f not in (UNPAIRED, LAW_FIRST)
               and _lag_tokens(f) is None]
    if structure not in STRUCTURES or unknown:
        flags_usage = "".join(f"[/{f}]" for f in (*VARIANT_HOLDS, *VARIANT_SETS, UNPAIRED, "ltX"))
        raise SystemExit(f"unknown variant {variant!r}: use STRUCTURE{flags_usage}, "
                         f"STRUCTURE one of {', '.join(STRUCTURES)}")
    held = tuple(VARIANT_HOLDS[f] for f in flags if f in VARIANT_HOLDS) + (BREAK_FIELDS if "breakheld" in flags else ())
    held += (LAW_FROM_FULL_TRAINING,) if LAW_FIRST in flags else ()
    return structure, held + (("lag_tokens",) if any(_lag_tokens(f) is not None for f in flags) else ())


def _lag_tokens(flag: str) -> float | None:
    """/ltX holds the deficit's time scale at X equivalent tokens at growth (None: not such a flag)."""
    try:
        value = float(flag[2:]) if flag.startswith("lt") else None
    except ValueError:
        return None
    return value if value is not None and 0 < value < float("inf") else None


def variant_sets(variant: str) -> dict:
    """/delay: the start-up as a token delay instead of a capacity ramp; /inherit: growth
    continues the start-up from the share in use; /widthinherit: only width growth does
    (depth growth ends it); /carry: every growth continues it from the old model's share;
    /pclock, /satfrozen, /trainedclock: the deficit's and the frozen phase's alternatives;
    /interaction: the law's capacity-data interaction fitted; /widthclock: width growth's own deficit
    time scale fitted; /break: a break in the law's data term fitted (``VARIANT_SETS``)."""
    sets = {k: v for f in variant.split("/")[1:] for k, v in VARIANT_SETS.get(f, {}).items()}
    held = [value for f in variant.split("/")[1:] if (value := _lag_tokens(f)) is not None]
    return sets | ({"lag_tokens": held[-1]} if held else {})


def variant_start(variant: str):
    """Where a variant's fits start: every variant from the same point, each optional term
    at its held value."""
    structure, _ = variant_holds(variant)
    return holding(load_loss_profile("stdlib-bytes").params, tuple(HELD_VALUES)).model_copy(
        update={"structure": structure, "startup_growth": "escape", **variant_sets(variant)})


def evaluate(variant: str, data: str | None, jobs: int = 1) -> dict:
    structure, hold = variant_holds(variant)
    runs = load_runs(data)
    noise = SeedNoise.of(runs)  # the intervals' seed noise, larger early in a run
    start = variant_start(variant)
    paired = 0.0 if UNPAIRED in variant.split("/")[1:] else PAIRED_WEIGHT
    cv = cross_validate(runs, start, structure, noise=noise, hold=hold, jobs=jobs, paired_weight=paired)
    sized = size_holdout(runs, start, structure, noise=noise, residual_std=cv.rms, model_std=cv.model_rms, hold=hold,
                         paired_weight=paired)

    def rows(scores: list[RunScore]) -> list[dict]:
        return [asdict(s) | {"sign_right": s.sign_right} for s in scores]

    return {"structure": variant, "cv": rows(cv.scores), "cv_schedules": rows(cv.schedule_scores), "cv_rms": cv.rms,
            "cv_model_rms": cv.model_rms, "size": rows(sized.scores), "size_schedules": rows(sized.schedule_scores),
            "size_shape": list(sized.shape), "size_model_rms": sized.model_rms, "size_efolds": sized.efolds,
            "extrapolation_growth": sized.extrapolation_growth(cv.model_rms), "seed_std": noise.final}


def error_line(r: dict) -> str:
    """The interval's calibration, as ``python -m costsim.fit --residual-std --extrapolation-growth`` takes it."""
    return (f"{r['structure']}: held-out error {r['cv_rms']:.4f} nats, {r['cv_model_rms']:.4f} without its seed "
            f"noise; at the held-out size ({r['size_efolds']:.2f} e-folds outside the fitted sizes and depths) "
            f"{r['size_model_rms']:.4f}: extrapolation growth {r['extrapolation_growth']:.3f} per e-fold")


def _scores(rows: list[dict]) -> list[RunScore]:
    out = []
    for r in rows:
        r = dict(r)
        r.pop("sign_right", None)
        for key in ("measured", "predicted"):
            if r[key] is not None:
                band = r[key].get("crossover_band")
                r[key] = CurveComparison(**r[key] | {"crossover_band": tuple(band) if band else None})
        out.append(RunScore(**r))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="corpus file, store or shipped dataset name, several "
                        "comma-separated (default: the shipped corpus)")
    parser.add_argument("--structures", default=",".join([*(f"{s}/N" for s in STRUCTURES), "fading/N/flat", "fading"]),
                        help="growth structures to compare: STRUCTURE[/N][/flat] (/N: the law without its shape "
                        "term; /flat: lags without their size slope)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", help="also write every score here")
    parser.add_argument("--from-json", metavar="FILE", help="print the tables of a file --json wrote, without fitting")
    args = parser.parse_args()
    if args.from_json:
        try:
            saved = json.loads(open(args.from_json).read())
            noise, ratio_noise, results = saved["seed_std"], saved["ratio_seed_noise"], saved["results"]
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"--from-json {args.from_json}: not a file this benchmark wrote ({exc}); run it "
                             "with --json FILE first") from None
        print("\n".join(report(results, noise, ratio_noise)))
        return
    structures = [s.strip() for s in args.structures.split(",") if s.strip()]
    for variant in structures:
        variant_holds(variant)  # a typo fails here, not after minutes of fitting
    runs = load_runs(args.data)
    noise, repeated = seed_noise(runs)
    ratio_noise, ratio_repeated = ratio_seed_noise(runs)
    print(f"corpus: {len(runs)} runs, {sum(len(r.loss) for r in runs)} points; seed noise of a final loss "
          f"{noise:.4f} nats ({repeated} schedules repeated); of one run's compute-to-match ratio {ratio_noise:.3f} "
          f"({ratio_repeated} growth schedules repeated)")
    measured = SeedNoise.of(runs)
    for kind, along_run in (("growth runs", measured.along), ("full training", measured.along_scratch)):
        along = ", ".join(f"{std:.3f} at {share:g}" for share, std in along_run)
        print(f"seed noise along {kind} (nats, at a share of their tokens; the intervals use it): {along}")
    if len(structures) == 1:  # its folds get the processes
        results = [evaluate(structures[0], args.data, max(1, args.jobs))]
    else:
        with ProcessPoolExecutor(max(1, min(args.jobs, len(structures)))) as pool:
            results = list(pool.map(evaluate, structures, [args.data] * len(structures)))
    if args.json:  # before the tables: minutes of fitting are kept whatever the printing does
        with open(args.json, "w") as f:
            json.dump({"seed_std": noise, "ratio_seed_noise": ratio_noise, "results": results}, f, indent=1)
    print("\n".join(report(results, noise, ratio_noise)))


def report(results: list[dict], noise: float, ratio_noise: float) -> list[str]:
    """The summary lines and tables of ``evaluate``'s results."""
    lines = ["", "the model's own error (intervals add it to the seed noise):", *map(error_line, results)]
    checks = (("cv", "leave-one-schedule-out"),
              ("size", f"size hold-out (fit without final shape {results[0]['size_shape'][:2]}, predict it)"))
    for key, title in checks:
        for level, suffix in (("", "per run"), ("_schedules", "per schedule, the mean curve of its seeds")):
            lines += ["", f"{title}, {suffix}:"]
            lines += [summary_line(r["structure"], summary(_scores(r[key + level]), ratio_noise, noise))
                      for r in results]
    for r in results:
        for key, title in checks:
            lines += ["", f"== {r['structure']}: {title.split(' (')[0]} ==", table(_scores(r[key]), ratio_noise),
                      "", f"== {r['structure']}: {title.split(' (')[0]}, seeds averaged ==",
                      table(_scores(r[key + "_schedules"]), ratio_noise)]
    return lines


if __name__ == "__main__":
    main()
