"""The LR limit against full-training runs at several peak LRs (not a timed test).

A model trained from scratch at a peak LR above its shape's limit starts slow: at 1.64M tokens
it has the loss its curve reaches with about half the tokens, and it recovers part of that
later; near the limit the seed decides. ``python -m costsim.fit --lr-limit`` fits where (the
limit, where half of all seeds start slow, falling with width and depth, and how wide the band
is: a probit in log LR, by maximum likelihood on which runs started slow), then how much (the
slow start's share and recovery, on the runs that did), on ``studies.growth_corpus --set
lr-sweep`` (the corpus's shapes from 1e-3 to 1.6e-2) and the corpus (2e-3), the law held, on
d_model 48 and wider. This fits it again (or reads the profile's own, ``--shipped``) and prints

- the fit;
- per run of the fitted set and of the held-out sets (d96 L6 at 4e-3, d128 L6 and L8 and
  d192 at 2e-3, ...: never fitted): its limit, its peak LR over it, the share of seeds the
  limit expects to start slow (P), what the limit says ("slow" or "normal" where the other
  outcome is under the 90% interval's 5% tail, "seed decides" between), the token efficiency
  measured and predicted at 0.82M, 1.64M and 3.28M tokens (the tokens the LR-blind curve
  needs for the run's loss there, over the run's tokens: 1 on the curve, 0.5 a run that needs
  twice the tokens), its final loss measured, LR-blind and with the limit (the likelier
  outcome), and both rms;
- per verdict, fitted and held out: how many runs started slow (efficiency under 0.65 at
  1.64M) against how many the limit expected, and the rms LR-blind and with the limit;
- full-training runs under the profile's LR, which the model predicts on the curve of a run
  at its LR: their token efficiency against LR over the profile's, and a power law in it
  fitted on the sweep and read on the held-out runs;
- the held-out growth schedules in a limit's band or above: compute-to-match ratio measured,
  LR-blind and with the limit.

    python benchmarks/lr_limit.py
"""

from __future__ import annotations

import argparse

import numpy as np

from costsim.corpus import load_runs
from costsim.fit import SLOW_AT, SLOW_EFFICIENCY, fit_lr_limit, lr_limit_runs, token_efficiency
from costsim.heldout import ratio_seed_noise, score_schedules
from costsim.loss import load_loss_profile, lr_limit, lr_slow_probability, lr_verdict, trajectory

FITTED = "lr_sweep,growth_corpus"
HELD_OUT = ("heldout_lr96,heldout_wide,heldout_deep,heldout_lr,heldout_larger,heldout_longer,heldout_lr160,"
            "heldout_lr_band")
READ_AT = (0.82e6, 1.64e6, 3.28e6)  # tokens: early, the middle of a 1,600-step run, its end
MIN_WIDTH = 48  # d32 took 1.6e-2 without a slow start, far above where wider models' limit puts it


def rms(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def table(title: str, runs: list, params) -> list[tuple]:
    print(f"\n{title}")
    read_at = "efficiency measured/predicted at " + ", ".join(f"{t / 1e6:.2f}M" for t in READ_AT)
    print(f"{'run':34s} {'limit':>8s} {'over':>5s} {'P':>4s} {'says':12s} {read_at:54s} {'final':>6s} {'blind':>6s} "
          f"{'limit':>6s} {'rms':>6s} {'limit':>6s}")
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
        print(f"{run.name:34s} {limit:8.2e} {over:5.2f} {float(lr_slow_probability(params, over)):4.2f} "
              f"{lr_verdict(params, over):12s} {cells:54s} {run.loss[-1]:6.3f} "
              f"{without[-1]:6.3f} "
              f"{with_limit[-1]:6.3f} {rms(without, run.loss):6.3f} {rms(with_limit, run.loss):6.3f}")
        rows.append((run, over, measured[1], predicted[1], without, with_limit))
    return rows


def summary(title: str, rows: list[tuple], params) -> None:
    """Per verdict: how many runs started slow (efficiency under SLOW_EFFICIENCY at SLOW_AT
    tokens) and how many the limit's probability expected, and the rms LR-blind and with the
    limit (the likelier outcome)."""
    for label in ("normal", "seed decides", "slow"):
        chosen = [r for r in rows if lr_verdict(params, r[1]) == label]
        if not chosen:
            continue
        run_loss = np.concatenate([r[0].loss for r in chosen])
        without = np.concatenate([r[4] for r in chosen])
        with_limit = np.concatenate([r[5] for r in chosen])
        read = [r for r in chosen if r[2] is not None]
        slow = sum(r[2] < SLOW_EFFICIENCY for r in read)
        expected = sum(float(lr_slow_probability(params, r[1])) for r in read)
        print(f"{title}, limit says {label!r}: {len(chosen)} runs, {slow} of {len(read)} started slow (efficiency "
              f"< {SLOW_EFFICIENCY} at {SLOW_AT / 1e6:.2f}M; expected {expected:.1f}); rms "
              f"{rms(without, run_loss):.4f} LR-blind, {rms(with_limit, run_loss):.4f} with the limit")


def under_the_profile_lr(fitted_rows: list[tuple], held_rows: list[tuple], profile_lr: float) -> None:
    """Full-training runs at a peak LR under the profile's (the corpus's): the loss model counts
    a step's tokens at its LR relative to the run's own peak, so it predicts them on the curve
    of a run at the profile's LR. Each run's token efficiency at 1.64M tokens (as in the tables)
    against its LR over the profile's; a power law, efficiency = (LR / profile LR)^alpha, fitted
    on the sweep's runs and read on the held-out ones, says how much a term for it would carry."""
    def under(rows):
        return [r for r in rows if r[0].spec.training.lr_schedule.lr < profile_lr and r[2] is not None]

    fitted, held = under(fitted_rows), under(held_rows)
    print(f"\nunder the profile's LR ({profile_lr:g}): efficiency at {SLOW_AT / 1e6:.2f}M tokens against LR / "
          f"{profile_lr:g} (the model predicts 1); final loss measured minus predicted")
    print(f"{'run':34s} {'set':8s} {'LR ratio':>8s} {'over':>5s} {'efficiency':>10s} {'final error':>11s}")
    for label, rows in (("sweep", fitted), ("held out", held)):
        for run, over, efficiency, _, _, with_limit in rows:
            ratio = run.spec.training.lr_schedule.lr / profile_lr
            print(f"{run.name:34s} {label:8s} {ratio:8.2f} {over:5.2f} {efficiency:10.2f} "
                  f"{run.loss[-1] - with_limit[-1]:+11.3f}")
    if not fitted or not held:
        return
    x = np.log([r[0].spec.training.lr_schedule.lr / profile_lr for r in fitted])
    alpha = float(np.dot(x, np.log([r[2] for r in fitted])) / np.dot(x, x))
    ratios = np.array([r[0].spec.training.lr_schedule.lr / profile_lr for r in held])
    measured = np.array([r[2] for r in held])
    errors = np.array([r[0].loss[-1] - r[5][-1] for r in held])
    overs = np.array([r[1] for r in fitted + held])
    efficiencies = np.array([r[2] for r in fitted + held])
    print(f"efficiency = (LR ratio)^alpha fitted on the sweep's {len(fitted)} runs: alpha {alpha:.2f}; on the "
          f"{len(held)} held-out runs it predicts efficiency with rms {rms(ratios ** alpha, measured):.2f} "
          f"(the model's 1: {rms(np.ones_like(measured), measured):.2f}); their final losses are "
          f"{errors.mean():+.3f} nats from the model's on average, above it on {int((errors > 0).sum())}/{len(errors)}")
    print(f"over all {len(overs)}, efficiency against LR over the shape's limit ('over'): correlation "
          f"{np.corrcoef(np.log(overs), efficiencies)[0, 1]:+.2f}; under 0.3 of the limit mean "
          f"{efficiencies[overs < 0.3].mean():.2f}, at 0.3 or more {efficiencies[overs >= 0.3].mean():.2f}")


def held_out_sets(fitted: str) -> list[str]:
    """The held-out sets the limit was not fitted on (a set named in ``--fitted`` is not held out)."""
    return [name for name in HELD_OUT.split(",") if name not in fitted.split(",")]


def growth_at_limits(params, profile_lr: float, held: list[str]) -> None:
    """Each held-out growth schedule (seeds averaged) whose final shape is in its limit's band or
    above, at the profile's peak LR or above: its compute-to-match ratio measured, LR-blind and
    with the limit (the likelier outcome: a grown model paying its share of a slow start)."""
    blind = params.model_copy(update={"lr_limit": 0.0})
    noise, _ = ratio_seed_noise(load_runs())
    rows = []
    for name in held:
        runs = load_runs(name)
        for shipped, slow in zip(score_schedules(runs, runs, blind), score_schedules(runs, runs, params), strict=True):
            last = next(r for r in runs if r.schedule == shipped.run).plans[-1]
            over = last.peak_lr / float(lr_limit(params, last.layers, last.aspect))
            if last.peak_lr >= profile_lr and lr_verdict(params, over) != "normal":
                rows.append((shipped.run, shipped.seeds, shipped.measured.ratio, shipped.predicted.ratio,
                             slow.predicted.ratio))
    print("\nheld-out growth at or above a limit: compute-to-match ratio (seeds averaged)")
    print(f"{'schedule':44s} {'seeds':>5s} {'measured':>8s} {'LR-blind':>8s} {'limit':>8s}")
    for name, seeds, measured, shipped, slow in rows:
        print(f"{name:44s} {seeds:5d} {measured:8.2f} {shipped:8.2f} {slow:8.2f}")
    for label, column in (("LR-blind", 3), ("with the limit", 4)):
        errors = np.array([abs(r[column] - r[2]) for r in rows])
        decided = [r for r in rows if abs(r[2] - 1) > noise]  # a measured ratio within seed noise of 1 is a tie
        signs = sum((r[2] < 1) == (r[column] < 1) for r in decided)
        print(f"{label}: mean ratio error {errors.mean():.3f}, largest {errors.max():.3f}, within 0.15 "
              f"{int((errors <= 0.15).sum())}/{len(rows)}, signs {signs}/{len(decided)} (ties within {noise:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="stdlib-bytes", help="the profile whose law is held (a name or a path)")
    parser.add_argument("--fitted", default=FITTED, help=f"the runs the limit is fitted on (default {FITTED})")
    parser.add_argument("--width-exponent", type=float, default=1.0, help="hold the limit's width exponent "
                        "(default 1, as shipped; a negative value fits it)")
    parser.add_argument("--min-width", type=int, default=MIN_WIDTH, help=f"fit on d_model this or more "
                        f"(default {MIN_WIDTH}, as shipped)")
    parser.add_argument("--shipped", action="store_true", help="score the profile's own limit instead of fitting "
                        "one here")
    args = parser.parse_args()
    profile = load_loss_profile(args.profile)
    fitted_on = load_runs(args.fitted)
    if args.shipped:
        params = profile.params
        if not profile.report.get("lr_slow_start_applied", True):
            params = params.model_copy(update=profile.report.get("lr_slow_start_fitted", {}))
        print(f"the profile's own limit ({profile.report.get('lr_limit_from', 'no source recorded')})")
    else:
        width_exponent = None if args.width_exponent < 0 else args.width_exponent
        fit = fit_lr_limit(fitted_on, profile.params, profile.lr, width_exponent, args.min_width)
        params = fit.params
        print(f"fitted on {len(fit.runs)} full-training runs of {args.fitted} at {profile.lr:g} and above, "
              f"d_model {args.min_width} or wider ({len(fit.slow_runs)} started slow; {len(fit.grown_runs)} growth "
              f"runs above it): rms {fit.rms_before:.4f} -> {fit.rms_after:.4f} nats")
    print(f"limit {params.lr_limit:.3g} x (d_model/64)^-{params.lr_limit_width_exponent:.3f} x layers^-"
          f"{params.lr_limit_depth_exponent:.3f} (half of all seeds start slow there; probit spread "
          f"{params.lr_limit_spread:.3f} in log LR); a slow start first loses {params.lr_slow_share:.3f} of its "
          f"pace and recovers over {params.lr_slow_tokens:.3g} ideal tokens; a grown model pays "
          f"{params.lr_slow_grown:.2f} of it")

    def full_at_batch32(runs):
        return sorted([r for r in runs if r.is_full_training and r.spec.training.batch_size == 32
                       and r.spec.training.lr_schedule.kind == "constant"],
                      key=lambda r: (r.final_shape[0], r.final_shape[1], r.spec.training.lr_schedule.lr, r.seed))

    sweep = full_at_batch32([r for r in fitted_on if r.family.startswith("full")])
    held_sets = held_out_sets(args.fitted)
    held = full_at_batch32(load_runs(",".join(held_sets)))
    fitted_rows = table(f"the LR sweep and the corpus (full training at batch 32, constant LR; fitted where at "
                        f"{profile.lr:g} or above and d_model {args.min_width} or wider)", sweep, params)
    held_rows = table("held out (never fitted)", held, params)
    fitted = {r.name for r in lr_limit_runs(fitted_on, profile.lr, args.min_width)}
    print()
    summary("fitted", [r for r in fitted_rows if r[0].name in fitted], params)
    summary("in the sweep, not fitted (narrower, or under the profile's LR)",
            [r for r in fitted_rows if r[0].name not in fitted], params)
    summary(f"held out, at {profile.lr:g} or above", [r for r in held_rows
                                                      if r[0].spec.training.lr_schedule.lr >= profile.lr], params)
    # under the profile's LR a run is slower throughout (each step moves the weights less): not a slow start
    summary(f"held out, under {profile.lr:g}", [r for r in held_rows if r[0].spec.training.lr_schedule.lr < profile.lr],
            params)
    under_the_profile_lr(fitted_rows, held_rows, profile.lr)
    growth_at_limits(params, profile.lr, held_sets)


if __name__ == "__main__":
    main()
