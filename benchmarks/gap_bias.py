"""Is the final gap between growth and full training predicted without bias? (not a timed test)

For every growth schedule of a dataset (default: the shipped corpus; seeds averaged, each
against its own seed's baseline), the predicted minus the measured gap to full training at
the last common counted FLOPs, then where along the runs the error sits: at a share of the
growth run's FLOPs, the growth run's residual (predicted minus measured) and its baseline's
at the same FLOPs. In sample for the corpus (the profile was fitted on it); out of sample
for the held-out datasets (``--data heldout_larger`` and so on).

Run: python benchmarks/gap_bias.py [--data NAME] [--profile stdlib-bytes]
"""

from __future__ import annotations

import argparse

import numpy as np

from costsim.corpus import RunData, load_runs
from costsim.heldout import schedule_curves, score_schedules
from costsim.loss import LossParams, load_loss_profile

SHARES = (0.25, 0.5, 0.75, 1.0)


def residuals_along(params: LossParams, held: list[RunData], runs: list[RunData]) -> list[tuple[float, float]]:
    """(growth run's residual, baseline's residual) at each of ``SHARES`` of the growth
    run's FLOPs (NaN where the baseline has no point yet), seeds averaged."""
    c = schedule_curves(sorted(held, key=lambda r: r.seed), runs, params)
    flops, loss, predicted = c.flops, c.loss, c.predicted
    base_flops, base_loss, base_predicted = c.base_flops, c.base_loss, c.base_predicted
    out = []
    for share in SHARES:
        x = flops[-1] * share
        if x < max(flops[0], base_flops[0]):
            out.append((np.nan, np.nan))
            continue
        out.append((float(np.interp(x, flops, predicted) - np.interp(x, flops, loss)),
                    float(np.interp(x, base_flops, base_predicted) - np.interp(x, base_flops, base_loss))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset name or file (default: the shipped corpus)")
    parser.add_argument("--profile", default="stdlib-bytes")
    args = parser.parse_args()
    params = load_loss_profile(args.profile).params
    runs = load_runs(args.data)
    scores = score_schedules(runs, runs, params)
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        if not r.is_full_training:
            groups.setdefault(r.schedule, []).append(r)
    print("final gap error = predicted - measured gap to full training (> 0: growth predicted too far behind)")
    print("along: growth run's residual / its baseline's, at " + ", ".join(f"{s:g}" for s in SHARES)
          + " of the growth run's FLOPs (residual = predicted - measured)")
    errors, along = [], []
    for s in scores:
        error = s.predicted.end_gap - s.measured.end_gap
        rows = residuals_along(params, groups[s.run], runs)
        errors.append(error)
        along.append(rows)
        cells = "  ".join("   -   " if np.isnan(g) else f"{g:+.3f}/{b:+.3f}" for g, b in rows)
        print(f"{s.run[:44]:44s} x{s.seeds}  final gap error {error:+.3f}  along {cells}")
    mean = np.nanmean(np.array(along), axis=0)
    print(f"{args.profile}: final gap error mean {np.mean(errors):+.4f}, too large on "
          f"{sum(e > 0 for e in errors)}/{len(errors)} schedules; along, mean growth/baseline residual: "
          + ", ".join(f"{s:g}: {g:+.3f}/{b:+.3f}" for s, (g, b) in zip(SHARES, mean)))


if __name__ == "__main__":
    main()
