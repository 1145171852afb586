"""The start-up, read from full training at two depths of one width (not a timed test).

For every width with full training at two or more depths at the corpus's recipe (peak LR
2e-3, constant, batch 32), over every dataset that has such runs (the corpus, the sweep and
the held-out sets), prints the deeper model's loss minus the shallowest one's at equal tokens
(seeds averaged), measured and as a profile predicts it LR-blind, at 0.4M, 0.8M, 1.6M and
3.2M tokens, with the deeper model's peak LR over its LR limit (near 1 the seed can start
slow, which looks like a longer start-up):

    python benchmarks/depth_gaps.py [--profile NAME_OR_FILE]

A start-up that grows with depth shows as a gap that grows with the layers and lasts longer;
one that does not, as early gaps of one size at every depth, gone by the same tokens.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from costsim.corpus import load_runs
from costsim.errors import CostsimError
from costsim.loss import load_loss_profile, lr_limit, predict

DATA = "growth_corpus,lr_sweep,heldout_larger,heldout_deep,heldout_wide,heldout_lr_band,heldout_deep12,heldout_depth"
AT_TOKENS = (0.4e6, 0.8e6, 1.6e6, 3.2e6)
RECIPE_LR, RECIPE_BATCH = 2e-3, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="stdlib-bytes", help="a profile's name or JSON file")
    parser.add_argument("--data", default=DATA, help="datasets (those not shipped yet are skipped)")
    args = parser.parse_args()
    profile = load_loss_profile(args.profile)
    blind = profile.model_copy(update={"params": profile.params.model_copy(update={"lr_limit": 0.0})})
    runs = []
    for name in args.data.split(","):
        try:
            runs += load_runs(name)
        except CostsimError as error:  # a held-out set not trained yet
            print(f"skipped {name}: {error}")
    by_shape = defaultdict(list)
    for run in runs:
        training = run.spec.training
        if (run.is_full_training and training.lr_schedule.lr == RECIPE_LR and training.batch_size == RECIPE_BATCH
                and training.lr_schedule.kind == "constant"):
            by_shape[(run.final_shape[0], run.plans[0].layers)].append(run)
    print(f"deeper minus shallowest at equal tokens, measured / predicted by {args.profile} (LR-blind)")
    for width in sorted({w for w, _ in by_shape}):
        depths = sorted(layers for w, layers in by_shape if w == width)
        shallow = by_shape[(width, depths[0])]
        for layers in depths[1:]:
            deep = by_shape[(width, layers)]
            last = min(r.tokens[-1] for r in deep + shallow)
            at = np.array([t for t in AT_TOKENS if t <= last])
            measured = (np.mean([np.interp(at, r.tokens, r.loss) for r in deep], axis=0)
                        - np.mean([np.interp(at, r.tokens, r.loss) for r in shallow], axis=0))
            predicted = (predict(blind, deep[0].plans, at_tokens=at).loss
                         - predict(blind, shallow[0].plans, at_tokens=at).loss)
            over = RECIPE_LR / float(lr_limit(profile.params, layers, width / layers))
            cells = "  ".join(f"{t / 1e6:.1f}M {m:+.3f}/{p:+.3f}" for t, m, p in zip(at, measured, predicted,
                                                                                       strict=True))
            print(f"d{width} L{layers} - L{depths[0]} ({len(deep)}/{len(shallow)} seeds, peak/limit {over:.2f}): "
                  f"{cells}")


if __name__ == "__main__":
    main()
