"""The LR limit's fit, scored by leaving one shape out (not a timed test).

Every full-training run at the profile's peak LR or above, long enough to tell a slow start
(``costsim.fit.started_slow``), from the LR sweep, the corpus and every held-out set: for each
shape (d_model, layers) the limit is fitted on the other shapes' runs (``fit_lr_limit``, the law
held) and asked about this shape's. Printed per variant of the fit (width exponent held at 1 or
fitted; d48 and wider, or every width) and per shape: the share of seeds it expects to start
slow against how many did, and over all shapes

- log loss (nats per run; 0.693 is a coin) and Brier score of P(slow) against what happened;
- the likelier outcome right: how many runs started slow exactly when P(slow) >= 0.5;
- slow starts expected against seen.

    python benchmarks/lr_limit_cv.py [--data SETS]

A shape no fit has seen is what the search meets; this is the number to choose a fit by.
"""

from __future__ import annotations

import argparse

import numpy as np

from costsim.corpus import load_runs
from costsim.fit import fit_lr_limit, lr_limit_runs, started_slow
from costsim.loss import load_loss_profile, lr_limit, lr_slow_probability

DATA = ("lr_sweep,growth_corpus,heldout_lr96,heldout_wide,heldout_deep,heldout_lr,heldout_larger,heldout_longer,"
        "heldout_lr160,heldout_lr_band,heldout_deep12,heldout_depth")
VARIANTS = {"width exponent 1, d48+ (shipped)": (1.0, 48), "width exponent fitted, d48+": (None, 48),
            "width exponent 1, every width": (1.0, 0)}


def shape(run) -> tuple[int, int]:
    return run.final_shape[0], run.plans[-1].layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DATA, help="the runs (default: the sweep, the corpus, every held-out set)")
    parser.add_argument("--profile", default="stdlib-bytes", help="the profile whose law is held")
    args = parser.parse_args()
    profile = load_loss_profile(args.profile)
    runs = load_runs(args.data)
    for variant, (width_exponent, min_width) in VARIANTS.items():
        scored = lr_limit_runs(runs, profile.lr, min_width)
        outcome = {r.name: started_slow(r, profile.params) for r in scored}
        shapes = sorted({shape(r) for r in scored})
        print(f"\n{variant}: {len(scored)} runs of {len(shapes)} shapes, {sum(outcome.values())} started slow")
        chances, seen = [], []
        for held in shapes:
            rest = [r for r in runs if shape(r) != held]
            try:
                params = fit_lr_limit(rest, profile.params, profile.lr, width_exponent, min_width).params
            except Exception as error:  # a fold without both outcomes: said, not scored
                print(f"  d{held[0]} L{held[1]}: no fit without it ({error})")
                continue
            these = [r for r in scored if shape(r) == held]
            cells = []
            for run in these:
                plan = run.plans[0]
                chance = float(lr_slow_probability(params, plan.peak_lr / float(lr_limit(params, plan.layers,
                                                                                         plan.aspect))))
                chances.append(chance)
                seen.append(outcome[run.name])
                cells.append(f"{plan.peak_lr:.0e} {chance:4.0%}{' SLOW' if outcome[run.name] else ''}")
            print(f"  d{held[0]} L{held[1]}: " + "; ".join(cells))
        p, y = np.clip(np.array(chances), 1e-6, 1 - 1e-6), np.array(seen, dtype=float)
        log_loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        brier = float(np.mean((p - y) ** 2))
        right = int(np.sum((p >= 0.5) == (y == 1)))
        print(f"  {variant}: log loss {log_loss:.3f} nats/run, Brier {brier:.3f}, likelier outcome right "
              f"{right}/{len(y)}, slow starts expected {p.sum():.1f}, seen {int(y.sum())}")


if __name__ == "__main__":
    main()
