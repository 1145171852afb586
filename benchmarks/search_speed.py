"""Speed of the schedule search: trials per second of ``costsim.search.run`` (not a timed test).

One in-memory study at 1e19 counted FLOPs on 8 H100s over the default search space,
seed 0, timed end to end: sampling, building and evaluating every candidate, and the
reference points the answer is reported against (full training, the study's schedule,
the budget full training needs to match). Target: 1000 trials in at most 20 s on a
2-core machine, so a search finishes while someone waits for it.
The loss profile is ``chinchilla-published`` (fixed published constants) by default, so
the number does not move when a fitted profile changes.
Run: python benchmarks/search_speed.py [--n-trials 1000] [--loss-profile NAME]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the tests: one thread per process

from costsim.planner import Budget
from costsim.search import describe, run
from costsim.spec import HardwareSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-trials", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=1e19, help="counted FLOPs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss-profile", default="chinchilla-published")
    args = parser.parse_args()
    budget, hardware = Budget(flops=args.budget), HardwareSpec(gpu="h100-sxm", n_gpus=8)
    start = time.perf_counter()
    result = run(budget, hardware, n_trials=args.n_trials, seed=args.seed, loss_profile=args.loss_profile)
    seconds = time.perf_counter() - start
    print(f"{result.n_trials} trials in {seconds:.2f} s: {result.n_trials / seconds:.1f} trials/s "
          f"({args.budget:.3g} FLOPs, 8 x h100-sxm, seed {args.seed}, loss profile {args.loss_profile}, "
          f"{os.cpu_count()} CPUs)")
    print(f"best: {describe(result.best[0])}")


if __name__ == "__main__":
    main()
