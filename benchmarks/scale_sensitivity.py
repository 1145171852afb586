"""What decides the loss model's growth answer beyond the corpus (not a timed test; a sensitivity table).

The corpus is CPU-sized (the largest fitted model has 0.67M non-embedding parameters). A
user at GPU scale gets the profile's answer from terms fitted there; this prints, for the
study's schedule and its no-freeze variant at a ladder of byte-level sizes (the CPU study
preset up to d512 with 12 layers, about 4e16 counted FLOPs), the predicted compute-to-match
ratio (as ``loss_accuracy.py`` reads it: FLOPs to reach full training's loss at half its
FLOPs, over those FLOPs; > 1: growth costs more) and the final gap to full training at equal
FLOPs, with the shipped profile and with one growth-relevant term switched off at a time:

- no start-up: a model from scratch uses all its depth at once, so growth has no slow
  start to skip;
- no lags: a grown model learns like a from-scratch one at its loss (the deficit gone);
- no frozen cost: a frozen phase's tokens count fully.

Nothing here is measured: it says which fitted term carries the answer where no run can
check it, so a reader knows what to measure first (docs/loss-model.md, "Beyond the corpus").

Run: python benchmarks/scale_sensitivity.py [--profile stdlib-bytes]
"""

from __future__ import annotations

import argparse

from costsim.heldout import compare_curves
from costsim.loss import LossProfile, efolds_outside, load_loss_profile, predict_curve
from costsim.paper import full_training, paper_incremental
from costsim.spec import ModelSpec, TrainingSpec

# (d_model, layers, seq_len, batch, steps of the growing part): the first is the study's CPU
# preset's shape, batch and steps (studies.incremental_training; without its 20 warmup
# steps), the rest byte-level GPTs at growing scale
LADDER = ((96, 8, 64, 16, 480), (128, 8, 64, 32, 800), (256, 8, 256, 32, 1200), (384, 12, 256, 64, 2000),
          (512, 12, 512, 64, 3000))
STAGES = 4
SWITCHES = {"shipped": {}, "no start-up": {"startup_tokens": 0.0}, "no lags": {"lags": {}},
            "no frozen cost": {"frozen_exponent": 0.0}}


def rung(d_model: int, layers: int, seq_len: int, batch: int, steps: int) -> tuple[ModelSpec, TrainingSpec, float]:
    """A ladder row's model, training (constant LR at the corpus's peak) and growing part's tokens."""
    model = ModelSpec(d_model=d_model, n_heads=max(2, d_model // 64), vocab_size=256, seq_len=seq_len)
    training = TrainingSpec(micro_batch_size=batch, batch_size=batch, precision="fp32",
                            lr_schedule={"kind": "constant", "lr": 2e-3, "warmup_steps": 0})
    return model, training, float(steps * batch * seq_len)


def comparison(profile: LossProfile, model: ModelSpec, training: TrainingSpec, layers: int, tokens: float,
               freeze: bool):
    grown = paper_incremental(layers, STAGES, tokens, freeze=freeze, model=model, training=training)
    full = full_training(layers, grown.total_tokens, model=model, training=training)
    a = predict_curve(grown, profile, points_per_stage=64)
    b = predict_curve(full, profile, points_per_stage=256)
    return compare_curves(a.x_flops, a.loss, b.x_flops, b.loss), float(b.x_flops[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="stdlib-bytes", help="loss profile (name or JSON path)")
    args = parser.parse_args()
    profile = load_loss_profile(args.profile)
    print(f"profile {profile.name}: fitted on {profile.domain.get('non_embedding_params')} non-embedding "
          f"parameters, {profile.domain.get('layers')} layers")
    print(f"{'model':>10} {'FLOPs':>8} {'outside':>8}  " + "  ".join(f"{name:>24}" for name in SWITCHES))
    print(f"{'':>10} {'':>8} {'e-folds':>8}  " + "  ".join(f"{'freeze / no-freeze':>24}" for _ in SWITCHES))
    for d, layers, seq, batch, steps in LADDER:
        model, training, tokens = rung(d, layers, seq, batch, steps)
        cells, flops = [], 0.0
        for update in SWITCHES.values():
            p = profile.switched(**update)
            pair = []
            for freeze in (True, False):
                c, flops = comparison(p, model, training, layers, tokens, freeze)
                ratio = f"{c.ratio:.2f}" if c.ratio is not None else f">{c.ratio_floor:.2f}"
                pair.append(f"{ratio} ({c.end_gap:+.3f})")
            cells.append(" / ".join(pair))
        n = 12 * d * d * layers
        print(f"{f'd{d} L{layers}':>10} {flops:>8.1e} {efolds_outside(profile.domain, n, layers):>8.1f}  "
              + "  ".join(f"{cell:>24}" for cell in cells))
    print("ratio: compute-to-match (> 1: growth costs more); in brackets the final gap to full training at equal "
          "FLOPs (> 0: growth behind)")


if __name__ == "__main__":
    main()
