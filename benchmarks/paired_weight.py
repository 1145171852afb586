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
from loss_accuracy import end_gap_errors, variant_holds, variant_start

from costsim.corpus import load_runs
from costsim.fit import SeedNoise
from costsim.heldout import size_holdout

SHIPPED_VARIANT = "fading/N/flat/linear/w0/carry"  # in loss_accuracy.py's terms


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
    structure, hold = variant_holds(SHIPPED_VARIANT)
    start = variant_start(SHIPPED_VARIANT)
    for weight in weights:
        held = size_holdout(runs, start, structure, noise=noise, hold=hold, paired_weight=weight)
        gaps = np.abs(end_gap_errors(held.schedule_scores))
        print(f"weight {weight:g}: model error at the held-out size {held.model_rms:.4f} nats, final gap error "
              f"per schedule mean {np.mean(gaps):.3f} max {np.max(gaps):.3f} ({len(gaps)} schedules)", flush=True)


if __name__ == "__main__":
    main()
