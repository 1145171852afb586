"""How much the fit should weigh growth runs' gaps to full training (``costsim.fit.PAIRED_WEIGHT``).

For each weight, the size hold-out of ``benchmarks/loss_accuracy.py`` (fit the shipped
variant on d64 and smaller, predict every d96 L6 run): the model's error there without
seed noise, and per schedule the error of the predicted final gap to full training (what a
search at a fixed budget decides on). About 5 minutes a weight on one core.

Run: python benchmarks/paired_weight.py [--weights 0,1,3]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from costsim.corpus import load_runs
from costsim.fit import HELD_VALUES, SeedNoise, holding
from costsim.heldout import size_holdout
from costsim.loss import load_loss_profile

# the shipped variant, fading/N/flat/linear/w0/carry in loss_accuracy.py's terms
HOLD = ("shape_exponent", "lag_size_slope", "startup_depth_exponent", "startup_width_exponent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="0,1,3", help="comma-separated weights of the gap residuals")
    args = parser.parse_args()
    try:
        weights = [float(w) for w in args.weights.split(",") if w.strip()]
    except ValueError:
        raise SystemExit(f"--weights {args.weights!r}: give numbers separated by commas, e.g. 0,1,3") from None
    runs = load_runs("growth_corpus")
    noise = SeedNoise.of(runs)
    start = holding(load_loss_profile("stdlib-bytes").params, tuple(HELD_VALUES)).model_copy(
        update={"structure": "fading", "startup_growth": "carry"})
    for weight in weights:
        held = size_holdout(runs, start, "fading", noise=noise, hold=HOLD, paired_weight=weight)
        gaps = [abs(s.predicted.end_gap - s.measured.end_gap) for s in held.schedule_scores if s.predicted]
        print(f"weight {weight:g}: model error at the held-out size {held.model_rms:.4f} nats, final gap error "
              f"per schedule mean {np.mean(gaps):.3f} max {np.max(gaps):.3f} ({len(gaps)} schedules)", flush=True)


if __name__ == "__main__":
    main()
