"""A loss profile against the runs the search's checks trained (not a timed test).

``heldout_check`` holds every run ``studies.check_recommendation`` trained at 2e12-2e13
counted FLOPs: the search's picks, its runners-up and the study's schedule, three seeds
each, none of them fitted on. For each schedule (its seeds' mean) the profile's predicted
final loss against the measured one; then the error's rms, how many finals fall inside
their 90% intervals and the rms over the last three quarters of every curve; then, budget by
budget, each schedule's measured and predicted distance from the best: whether the profile
orders what the search had to choose between as the runs did.

Run: python benchmarks/check_runs.py [--profile stdlib-bytes]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from costsim.corpus import load_runs
from costsim.loss import load_loss_profile, predict


def score(profile_name: str) -> list[str]:
    profile = load_loss_profile(profile_name)
    runs = load_runs("heldout_check")
    finals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    inside, late, outside = 0, [], []
    for run in runs:
        curve = predict(profile, run.plans, at_tokens=run.tokens, after_boundary=True)
        finals[run.schedule].append((float(run.loss[-1]), float(curve.loss[-1])))
        if curve.lower[-1] <= run.loss[-1] <= curve.upper[-1]:
            inside += 1
        else:
            outside.append(f"  outside: {run.name} measured {run.loss[-1]:.4f}, predicted {curve.loss[-1]:.4f} "
                           f"[{curve.lower[-1]:.4f}, {curve.upper[-1]:.4f}]")
        late.append((curve.loss - run.loss)[len(run.loss) // 4:])
    errors = np.array([np.mean([p for _, p in rows]) - np.mean([m for m, _ in rows]) for rows in finals.values()])
    late_rms = np.sqrt(np.mean(np.concatenate(late) ** 2))
    lines = [f"{profile_name}: {len(finals)} schedules, {len(runs)} runs; final loss error rms "
             f"{np.sqrt(np.mean(errors**2)):.4f}, mean {errors.mean():+.4f}, largest {np.abs(errors).max():.4f}; "
             f"finals inside their intervals {inside}/{len(runs)}; curve rms past a quarter of each run {late_rms:.4f}",
             *outside]
    by_budget: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for schedule, rows in finals.items():
        budget = next((w for w in schedule.split() if w.startswith("at")), "?")
        by_budget[budget].append((schedule, float(np.mean([m for m, _ in rows])), float(np.mean([p for _, p in rows]))))
    for budget, rows in sorted(by_budget.items(), key=lambda item: float(item[0][2:] or "inf")):
        best_measured, best_predicted = min(m for _, m, _ in rows), min(p for _, _, p in rows)
        lines.append(f"  {budget}:")
        for schedule, measured, predicted in sorted(rows, key=lambda row: row[1]):
            lines.append(f"    {schedule:44s} measured {measured:.4f} ({measured - best_measured:+.3f})  "
                         f"predicted {predicted:.4f} ({predicted - best_predicted:+.3f})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/check_runs.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="stdlib-bytes", help="loss profile (a name or a JSON path)")
    args = parser.parse_args(argv)
    print("\n".join(score(args.profile)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
