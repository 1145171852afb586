"""The LR limit against full-training runs at several peak LRs (not a timed test).

A model trained from scratch at a peak LR above its shape's limit starts slow: at 1.64M tokens
it has the loss its curve reaches with about half the tokens, and it recovers part of that
later. The limit falls with width and depth; ``python -m costsim.fit --lr-limit`` fits it,
with the slow start's share and recovery time, on ``studies.growth_corpus --set lr-sweep``
(the corpus's shapes from 1e-3 to 1.6e-2) and the corpus (2e-3), the law held, on d_model 48
and wider. This fits it again and prints

- the fit;
- per run of the fitted set and of the held-out sets (d96 L6 at 4e-3, d128 L6 and L8 and
  d192 at 2e-3, ...: never fitted): its limit, its peak LR over it, what the limit says
  ("normal" at or under limit / LR_LIMIT_SPREAD, "slow" at or over limit x LR_LIMIT_SPREAD,
  "seed decides" between), the token efficiency measured and with the fitted slow start at
  0.82M, 1.64M and 3.28M tokens (the tokens the profile's curve needs for the run's loss
  there, over the run's tokens: 1 on the curve, 0.5 a run that needs twice the tokens), its
  final loss and rms as shipped (LR-blind) and with the fitted slow start;
- per verdict, fitted and held out: how many runs started slow (efficiency under SLOW at
  1.64M), and the rms as shipped and with the slow start.

    python benchmarks/lr_limit.py
"""

from __future__ import annotations

import argparse

import numpy as np

from costsim.corpus import load_runs
from costsim.fit import fit_lr_limit, lr_limit_runs
from costsim.heldout import ratio_seed_noise, score_schedules, token_efficiency
from costsim.loss import load_loss_profile, lr_limit, lr_verdict, trajectory

FITTED = "lr_sweep,growth_corpus"
HELD_OUT = "heldout_lr96,heldout_wide,heldout_deep,heldout_lr,heldout_larger,heldout_longer,heldout_lr160"
READ_AT = (0.82e6, 1.64e6, 3.28e6)  # tokens: early, the middle of a 1,600-step run, its end
MIN_WIDTH = 48  # d32 took 1.6e-2 without a slow start, far above where wider models' limit puts it
SLOW = 0.65  # efficiency at 1.64M tokens under which a run started slow: every run at the corpus's LR is above


def rms(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def table(title: str, runs: list, params) -> list[tuple]:
    print(f"\n{title}")
    read_at = "efficiency measured/predicted at " + ", ".join(f"{t / 1e6:.2f}M" for t in READ_AT)
    print(f"{'run':34s} {'limit':>8s} {'over':>5s} {'says':12s} {read_at:54s} {'final':>6s} {'pred':>6s} "
          f"{'slow':>6s} {'rms':>6s} {'slow':>6s}")
    rows = []
    for run in runs:
        plan = run.plans[0]
        limit = float(lr_limit(params, plan.layers, plan.aspect))
        over = plan.peak_lr / limit
        without = trajectory(params.model_copy(update={"lr_limit": 0.0}), run.plans, at_tokens=run.tokens)[1]
        with_limit = trajectory(params, run.plans, at_tokens=run.tokens)[1]
        measured = [token_efficiency(run, params, at) for at in READ_AT]
        predicted = [token_efficiency(run, params, at, with_limit) for at in READ_AT]
        cells = "  ".join("   -     " if m is None else f"{m:4.2f}/{p:4.2f}" for m, p in zip(measured, predicted,
                                                                                             strict=True))
        print(f"{run.name:34s} {limit:8.2e} {over:5.2f} {lr_verdict(over):12s} {cells:54s} {run.loss[-1]:6.3f} "
              f"{without[-1]:6.3f} "
              f"{with_limit[-1]:6.3f} {rms(without, run.loss):6.3f} {rms(with_limit, run.loss):6.3f}")
        rows.append((run, over, measured[1], predicted[1], without, with_limit))
    return rows


def summary(title: str, rows: list[tuple]) -> None:
    """Per verdict: how many runs started slow (efficiency under SLOW at 1.64M tokens), and the
    rms without and with the fitted slow start."""
    for label in ("normal", "seed decides", "slow"):
        chosen = [r for r in rows if lr_verdict(r[1]) == label]
        if not chosen:
            continue
        run_loss = np.concatenate([r[0].loss for r in chosen])
        without = np.concatenate([r[4] for r in chosen])
        with_limit = np.concatenate([r[5] for r in chosen])
        read = [r for r in chosen if r[2] is not None]
        slow = sum(r[2] < SLOW for r in read)
        print(f"{title}, limit says {label!r}: {len(chosen)} runs, {slow} of {len(read)} started slow (efficiency "
              f"< {SLOW} at 1.64M); rms {rms(without, run_loss):.4f} as shipped, {rms(with_limit, run_loss):.4f} "
              "with the fitted slow start")


def growth_at_limits(params, profile_lr: float) -> None:
    """Each held-out growth schedule (seeds averaged) whose final shape is at or above its
    limit's band, at the profile's peak LR or above: its compute-to-match ratio measured, as
    shipped (LR-blind) and with the fitted slow start (a grown model paying its share)."""
    blind = params.model_copy(update={"lr_limit": 0.0})
    noise, _ = ratio_seed_noise(load_runs())
    rows = []
    for name in HELD_OUT.split(","):
        runs = load_runs(name)
        for shipped, slow in zip(score_schedules(runs, runs, blind), score_schedules(runs, runs, params), strict=True):
            last = next(r for r in runs if r.schedule == shipped.run).plans[-1]
            if last.peak_lr >= profile_lr and lr_verdict(last.peak_lr / float(lr_limit(params, last.layers,
                                                                                      last.aspect))) != "normal":
                rows.append((shipped.run, shipped.seeds, shipped.measured.ratio, shipped.predicted.ratio,
                             slow.predicted.ratio))
    print("\nheld-out growth at or above a limit: compute-to-match ratio (seeds averaged)")
    print(f"{'schedule':44s} {'seeds':>5s} {'measured':>8s} {'shipped':>8s} {'slow':>8s}")
    for name, seeds, measured, shipped, slow in rows:
        print(f"{name:44s} {seeds:5d} {measured:8.2f} {shipped:8.2f} {slow:8.2f}")
    for label, column in (("shipped (LR-blind)", 3), ("with the fitted slow start", 4)):
        errors = np.array([abs(r[column] - r[2]) for r in rows])
        decided = [r for r in rows if abs(r[2] - 1) > noise]  # a measured ratio within seed noise of 1 is a tie
        signs = sum((r[2] < 1) == (r[column] < 1) for r in decided)
        print(f"{label}: mean ratio error {errors.mean():.3f}, largest {errors.max():.3f}, within 0.15 "
              f"{int((errors <= 0.15).sum())}/{len(rows)}, signs {signs}/{len(decided)} (ties within {noise:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="stdlib-bytes", help="the profile whose law is held (a name or a path)")
    parser.add_argument("--fitted", default=FITTED, help=f"the runs the limit is fitted on (default {FITTED})")
    parser.add_argument("--width-exponent", type=float, default=None, help="hold the limit's width exponent "
                        "(default: fitted)")
    parser.add_argument("--min-width", type=int, default=MIN_WIDTH, help=f"fit on d_model this or more "
                        f"(default {MIN_WIDTH}, as shipped)")
    parser.add_argument("--shipped", action="store_true", help="score the profile's own limit instead of fitting "
                        "one here")
    args = parser.parse_args()
    profile = load_loss_profile(args.profile)
    fitted_on = load_runs(args.fitted)
    if args.shipped:
        params = profile.params.model_copy(update=profile.report.get("lr_slow_start_fitted", {}))
        print(f"the profile's own limit ({profile.report.get('lr_limit_from', 'no source recorded')})")
    else:
        fit = fit_lr_limit(fitted_on, profile.params, profile.lr, args.width_exponent, args.min_width)
        params = fit.params
        print(f"fitted on {len(fit.runs)} full-training runs of {args.fitted} at {profile.lr:g} and above, "
              f"d_model {args.min_width} or wider: rms {fit.rms_before:.4f} -> {fit.rms_after:.4f} nats")
    print(f"limit {params.lr_limit:.3g} x (d_model/64)^-{params.lr_limit_width_exponent:.3f} x layers^-"
          f"{params.lr_limit_depth_exponent:.3f}; above it a slow start first loses {params.lr_slow_share:.3f} of "
          f"its pace and recovers over {params.lr_slow_tokens:.3g} ideal tokens")

    def full_at_batch32(runs):
        return sorted([r for r in runs if r.is_full_training and r.spec.training.batch_size == 32
                       and r.spec.training.lr_schedule.kind == "constant"],
                      key=lambda r: (r.final_shape[0], r.final_shape[1], r.spec.training.lr_schedule.lr, r.seed))

    sweep = full_at_batch32([r for r in fitted_on if r.family.startswith("full")])
    held = full_at_batch32(load_runs(HELD_OUT))
    fitted_rows = table(f"the LR sweep and the corpus (full training at batch 32, constant LR; fitted where at "
                        f"{profile.lr:g} or above and d_model {args.min_width} or wider)", sweep, params)
    held_rows = table("held out (never fitted)", held, params)
    fitted = {r.name for r in lr_limit_runs(fitted_on, profile.lr, args.min_width)}
    print()
    summary("fitted", [r for r in fitted_rows if r[0].name in fitted])
    summary("in the sweep, not fitted (narrower, or under the profile's LR)",
            [r for r in fitted_rows if r[0].name not in fitted])
    summary(f"held out, at {profile.lr:g} or above", [r for r in held_rows
                                                      if r[0].spec.training.lr_schedule.lr >= profile.lr])
    # under the profile's LR a run is slower throughout (each step moves the weights less): not a slow start
    summary(f"held out, under {profile.lr:g}", [r for r in held_rows if r[0].spec.training.lr_schedule.lr < profile.lr])
    growth_at_limits(params, profile.lr)


if __name__ == "__main__":
    main()
