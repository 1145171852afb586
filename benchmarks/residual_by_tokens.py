"""Where along a run the shipped loss profile errs (not a timed test).

For every run of a corpus (default: the shipped one) the profile's prediction at each
evaluation, minus the measured loss, binned by tokens seen and split into full training
and growth runs: mean error (< 0: the profile is optimistic), its spread, and the share of
measured points inside the 90% interval. In-sample: the profile was fitted on these runs,
so this says where its structure cannot follow them, not how well it predicts new ones
(``loss_accuracy.py`` does that). Then, for each full-training shape run on several seeds,
the measured loss of each seed at a few token counts, and the prediction: early in a run from scratch the
seeds differ by far more than at its end, which no deterministic prediction can follow.

Run: python benchmarks/residual_by_tokens.py [--data FILE] [--profile stdlib-bytes]
"""

from __future__ import annotations

import argparse

import numpy as np

from costsim.corpus import load_runs
from costsim.loss import load_loss_profile, predict

EDGES = (0, 2e5, 5e5, 1e6, 2e6, 4e6, np.inf)


def binned(runs, profile) -> dict[str, list[tuple[str, int, float, float, float]]]:
    rows: dict[str, dict[int, list[tuple[float, bool]]]] = {"full training": {}, "growth": {}}
    for run in runs:
        curve = predict(profile, run.plans, at_tokens=run.tokens, after_boundary=True)
        inside = (run.loss >= curve.lower) & (run.loss <= curve.upper)
        group = rows["full training" if run.is_full_training else "growth"]
        for b, error, ok in zip(np.digitize(run.tokens, EDGES), curve.loss - run.loss, inside):
            group.setdefault(int(b), []).append((float(error), bool(ok)))
    out = {}
    for group, by_bin in rows.items():
        out[group] = []
        for b in sorted(by_bin):
            errors = np.array([e for e, _ in by_bin[b]])
            label = f"{EDGES[b - 1]:.2g}-{EDGES[b]:.2g}" if np.isfinite(EDGES[b]) else f">{EDGES[b - 1]:.2g}"
            out[group].append((label, len(errors), float(errors.mean()), float(errors.std()),
                               float(np.mean([ok for _, ok in by_bin[b]]))))
    return out


SEED_TOKENS = (164e3, 328e3, 655e3, 1.15e6, 2.46e6)


def seed_spread(runs, profile) -> list[tuple[str, list[list[float]], np.ndarray]]:
    """Full-training schedules repeated over seeds: each seed's loss at ``SEED_TOKENS``
    (nan past its end), and the profile's prediction there."""
    groups: dict[str, list] = {}
    for run in runs:
        if run.is_full_training:
            groups.setdefault(run.schedule, []).append(run)
    return [(name, [list(np.interp(SEED_TOKENS, r.tokens, r.loss, left=np.nan, right=np.nan))
                    for r in sorted(group, key=lambda r: r.seed)],
             predict(profile, group[0].plans, at_tokens=np.array(SEED_TOKENS)).loss)
            for name, group in sorted(groups.items()) if len(group) > 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="corpus file or store (default: the shipped corpus)")
    parser.add_argument("--profile", default="stdlib-bytes")
    args = parser.parse_args()
    profile = load_loss_profile(args.profile)
    runs = load_runs(args.data)
    for group, rows in binned(runs, profile).items():
        print(f"{group}: tokens seen | points | mean error (pred - meas) | sd | inside 90% interval")
        for label, n, mean, sd, cover in rows:
            print(f"  {label:>13s}  {n:5d}  {mean:+.3f}  {sd:.3f}  {cover:.0%}")
    print("full training repeated over seeds: each seed's loss at " + ", ".join(f"{t:.3g}" for t in SEED_TOKENS)
          + " tokens (predicted in brackets)")
    for name, seeds, predicted in seed_spread(runs, profile):
        cells = ["/".join(f"{s[i]:.2f}" for s in seeds) + f" ({predicted[i]:.2f})" for i in range(len(SEED_TOKENS))]
        print(f"  {name:24s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
