"""The growth-run corpus the loss model is fitted on and checked against.

``python -m studies.growth_corpus --db growth_corpus.duckdb`` trains, one run at a time,
byte-level GPTs on the offline stdlib corpus, at the largest scale 2 CPU cores allow in
about two hours:

- full training at five sizes (non-embedding parameters 25k to 666k, a 27x span), the
  largest (d96, 6 layers) for 6.55M tokens = 9.84 tokens per parameter;
- at the largest size: the study's schedule (arXiv 2411.18700: stages of 2 blocks, each
  after the first split into a freeze phase and an all-blocks phase, then continual
  training of the same length with a fresh optimizer), with a second seed, and its
  no-freeze variant; depth growth 3 -> 6 blocks by ``random_top`` early (10% of the
  tokens) and late (50%), by ``stack_copy`` and by ``identity`` (25%); width growth
  d48 -> d96 (``widen_preserving``, 25%);
- at a middle size (d64, 4 layers, 3.3M tokens): the same families (the study's schedule
  with a second seed), so growth can be fitted on one size and predicted on a larger one;
- batch size: the middle size at 8, 16, 64, 128, 256, 512 and 2048 sequences a step (the
  last 25 optimizer steps), and at 256 for four times the tokens, to fit a critical batch
  size and the gradient noise of small batches, with batch 8 also at d32 L2, d48 L4 and
  the largest size, 64 and 256 at the largest and 128 at d48 L4; a cosine-decay run for
  annealing;
- second seeds (each seed has its own held-out batches, so each has its own baselines):
  full training at d48 L4, d64 L4 and d96 L6 (three seeds), the study's schedule at every
  size, ``random_top`` at d96 and the two small width runs; third seeds of the study's schedule
  at d48 and d64 and of the small width runs; second seeds of every d96 growth family and of
  ``random_top`` early at d48 and d64; second seeds of the middle size at 8 and 16
  sequences a step; every growth family at d48 and d64 on three seeds, the no-freeze
  variant at d96 on two.

``--set heldout`` trains runs larger than the corpus's largest (``heldout()``: d128 L6),
``--set heldout-deep`` deeper ones (``heldout_deep()``: d128 L8), ``--set heldout-longer``
longer ones (d64 L4 for 3,200 steps), ``--set heldout-wide`` wider ones (d192 with 6 and
3 layers, full training: the start-up at a width no fit has seen) and ``--set heldout-lr``
d128 L8 at the peak LR that suits its full training (the corpus has one peak LR), and
``--set heldout-lr96`` the corpus's d96 L6 at half and twice its LR, and ``--set heldout-lr160``
d160 L4 either side of its LR limit, which no fit sees, and ``--set heldout-lr-band`` the band where
the seed decides and above it at d96 L8, d160 L6 and d80 L12 (``--set lr-sweep``: the corpus's shapes at
other peak LRs, the LR limit's fit):
``benchmarks/heldout_larger.py`` scores the shipped profile on them.

Every run evaluates about 40 times. Runs already complete in the store are skipped, so
an interrupted corpus resumes. ``python -m studies.growth_corpus --export`` adds the
curves to ``costsim/data/corpus/growth_corpus.json``, the versioned dataset
``costsim.fit`` and ``benchmarks/loss_accuracy.py`` read without re-training.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from costsim.corpus import DATASET
from costsim.errors import CostsimError, cli_errors
from studies.runner import train_spec

SEQ_LEN = 64
BATCH = 32  # sequences per optimizer step, unless a run says otherwise
MICRO = 32
LR = 2e-3
LARGE_STEPS = 3200  # d96 L6: 3200 x 2048 = 6.55M tokens, 9.84 per non-embedding parameter
MIDDLE_STEPS = 1600
EVALS_PER_RUN = 40
EVAL_TOKENS = 16 * MICRO * SEQ_LEN  # the same held-out batches for every run of a seed


@dataclass(frozen=True)
class Run:
    spec: dict
    family: str  # the schedule family, for leave-one-schedule-out

    @property
    def name(self) -> str:
        return self.spec["name"]


def _model(d_model: int, head_dim: int = 32) -> dict:
    return {"d_model": d_model, "n_heads": max(2, d_model // head_dim), "vocab_size": 256, "seq_len": SEQ_LEN}


def _training(steps: int, batch: int = BATCH, seed: int = 1, schedule: str = "constant", peak: float = LR) -> dict:
    lr = {"kind": schedule, "lr": peak, "warmup_steps": min(20, max(1, steps // 10))}
    if schedule == "cosine":
        lr["min_lr_ratio"] = 0.1
    return {"micro_batch_size": min(batch, MICRO), "batch_size": batch, "precision": "fp32",
            "lr_schedule": lr, "seed": seed}


def _lr_tag(lr: float) -> str:
    """A run's name says its peak LR where it is not the corpus's (whose runs keep their names)."""
    return "" if lr == LR else f" lr{lr:g}"


def _tokens(steps: int, batch: int = BATCH) -> int:
    return steps * batch * SEQ_LEN


def full(d_model: int, layers: int, steps: int, *, seed: int = 1, batch: int = BATCH,
         schedule: str = "constant", tag: str = "", lr: float = LR) -> Run:
    tag += "" if batch == BATCH else f" batch{batch}"
    tag += "" if schedule == "constant" else f" {schedule}"
    tag += _lr_tag(lr)
    steps = steps * BATCH // batch
    return Run({"name": f"full d{d_model} L{layers}{tag} seed{seed}", "model": _model(d_model),
                "training": _training(steps, batch, seed, schedule, lr),
                "stages": [{"layers": layers, "tokens": _tokens(steps, batch), "name": "full"}]},
               "full" if batch == BATCH and schedule == "constant" and lr == LR else f"full{tag}")


def study(d_model: int, layers: int, n_stages: int, steps: int, *, freeze: bool, seed: int = 1, tag: str = "",
          lr: float = LR) -> Run:
    """The study's shape: the first half of the steps grows (stage 1, then each later
    stage a freeze phase that trains only the new blocks and an all-blocks phase, or one
    all-blocks phase without freezing); the second half is continual training of the
    full model with a fresh optimizer."""
    growing = steps // 2
    per_stage = growing // n_stages
    step = layers // n_stages
    stages = [{"layers": step, "tokens": _tokens(per_stage), "name": "stage 1"}]
    for s in range(2, n_stages + 1):
        if freeze:
            half = per_stage // 2
            stages += [{"layers": s * step, "tokens": _tokens(half), "train": "new", "growth": "random_top",
                        "name": f"stage {s} freeze"},
                       {"layers": s * step, "tokens": _tokens(per_stage - half), "name": f"stage {s} all"}]
        else:
            stages.append({"layers": s * step, "tokens": _tokens(per_stage), "growth": "random_top",
                           "name": f"stage {s}"})
    stages.append({"layers": layers, "tokens": _tokens(steps - per_stage * n_stages), "reset_optimizer": True,
                   "name": "continual"})
    kind = "freeze" if freeze else "nofreeze"
    tag += _lr_tag(lr)
    return Run({"name": f"study d{d_model} L{layers} S{n_stages} {kind}{tag} seed{seed}", "model": _model(d_model),
                "training": _training(steps, seed=seed, peak=lr), "stages": stages}, f"study-{kind}")


def deepen(d_model: int, layers: int, steps: int, operator: str, at: float, *, seed: int = 1, tag: str = "",
           lr: float = LR) -> Run:
    """Half the blocks for the first ``at`` of the steps, then all of them (``operator``)."""
    first = round(steps * at)
    tag += _lr_tag(lr)
    return Run({"name": f"deepen d{d_model} L{layers // 2}->{layers} {operator} at{at:g}{tag} seed{seed}",
                "model": _model(d_model), "training": _training(steps, seed=seed, peak=lr),
                "stages": [{"layers": layers // 2, "tokens": _tokens(first), "name": "half depth"},
                           {"layers": layers, "tokens": _tokens(steps - first), "growth": operator,
                            "name": "full depth"}]},
               f"deepen-{operator}-at{at:g}")


def widen(d_model: int, layers: int, steps: int, at: float = 0.25, *, seed: int = 1, head_dim: int = 16) -> Run:
    """Function-preserving widening doubles every width and the number of heads."""
    half, first = d_model // 2, round(steps * at)
    return Run({"name": f"widen d{half}->{d_model} L{layers} at{at:g} seed{seed}",
                "model": _model(d_model, head_dim=head_dim), "training": _training(steps, seed=seed),
                "stages": [{"layers": layers, "tokens": _tokens(first), "d_model": half, "n_heads": half // head_dim,
                            "d_ff": 2 * d_model, "name": "narrow"},
                           {"layers": layers, "tokens": _tokens(steps - first), "growth": "widen_preserving",
                            "name": "wide"}]},
               "widen")


def corpus() -> list[Run]:
    """Every run, most important first (a corpus cut short still has the core)."""
    large, middle, small = (96, 6, LARGE_STEPS), (64, 4, MIDDLE_STEPS), (48, 4, MIDDLE_STEPS)
    return [
        full(*large), study(96, 6, 3, LARGE_STEPS, freeze=True), full(96, 3, LARGE_STEPS), full(64, 4, LARGE_STEPS),
        full(48, 3, LARGE_STEPS), study(96, 6, 3, LARGE_STEPS, freeze=False),
        deepen(*large, "stack_copy", 0.25), deepen(*large, "identity", 0.25), widen(*large),
        deepen(*large, "random_top", 0.1), deepen(*large, "random_top", 0.5),
        study(96, 6, 3, LARGE_STEPS, freeze=True, seed=2),
        study(64, 4, 2, MIDDLE_STEPS, freeze=True), study(64, 4, 2, MIDDLE_STEPS, freeze=True, seed=2),
        study(64, 4, 2, MIDDLE_STEPS, freeze=False),
        deepen(*middle, "stack_copy", 0.25), deepen(*middle, "identity", 0.25), widen(*middle),
        full(*middle, batch=256), full(*middle, batch=2048), full(*middle, batch=8), full(*middle, schedule="cosine"),
        full(32, 2, LARGE_STEPS),
        # a third growth size, so a growth penalty that changes with scale can be fitted on
        # two sizes and checked on the third: d48 L4, the same steps as d64 L4
        full(*small), study(48, 4, 2, MIDDLE_STEPS, freeze=True), study(48, 4, 2, MIDDLE_STEPS, freeze=False),
        deepen(*small, "stack_copy", 0.25), deepen(*small, "identity", 0.25), deepen(*small, "random_top", 0.1),
        deepen(*small, "random_top", 0.5), widen(*small, head_dim=8),
        deepen(*middle, "random_top", 0.1), deepen(*middle, "random_top", 0.5),
        study(48, 4, 2, MIDDLE_STEPS, freeze=True, seed=2),
        # small batches at the corpus's LR, at two more sizes: gradient noise, not only
        # a critical batch, decides what a batch of a few sequences reaches
        full(*small, batch=8), full(32, 2, LARGE_STEPS, batch=8),
        # a small model trained long (1,000 tokens per parameter): where the law's data
        # term must stop paying, as it does for the small models a small budget favours
        full(32, 2, 4 * LARGE_STEPS, tag=" long"),
        full(*small, seed=2),  # the baseline's own seed noise: d48 L4 starts slower than d48 L3
        # the largest baseline's seed noise: every d96 ratio is measured against its start-up
        full(*large, seed=2), full(*large, seed=3),
        # second seeds of the runs the loss model misses most (random_top at d96, the small
        # width runs' crossovers): is the miss the model's or one seed's?
        deepen(*large, "random_top", 0.1, seed=2), deepen(*large, "random_top", 0.5, seed=2),
        widen(*small, head_dim=8, seed=2), widen(*middle, seed=2),
        # each seed evaluates on its own held-out batches, so a seed-2 run needs a seed-2 baseline
        full(64, 4, LARGE_STEPS, seed=2),  # as long as seed 1's: the middle runs use its prefix
        # third seeds where two seeds of a ratio disagree by more than the target (the study's
        # schedule at d48 and d64, the small width runs), with their baselines, and second seeds of
        # every other growth family at d96 and of random_top early at d48 and d64: a schedule's
        # measured ratio is then a mean over seeds, not one draw
        full(*small, seed=3), full(64, 4, LARGE_STEPS, seed=3),
        study(48, 4, 2, MIDDLE_STEPS, freeze=True, seed=3), study(64, 4, 2, MIDDLE_STEPS, freeze=True, seed=3),
        widen(*small, head_dim=8, seed=3), widen(*middle, seed=3),
        deepen(*small, "random_top", 0.1, seed=2), deepen(*middle, "random_top", 0.1, seed=2),
        deepen(*large, "identity", 0.25, seed=2), deepen(*large, "stack_copy", 0.25, seed=2), widen(*large, seed=2),
        # batches between 8 and 256 sequences: every batch-8 run ended above the loss model's
        # curve and the batch-256 run below it, so the batch terms need the batches a search
        # actually picks, at the largest size too
        full(*middle, batch=16), full(*large, batch=8), full(*middle, batch=64),
        # batches above 32: the runs at 64 and 256 sequences ended 0.06-0.09 below the loss
        # model and the one at 2,048 0.10 above, so the critical batch needs more batches, at two
        # more sizes, and one large batch trained four times as long (does B_crit grow as the loss
        # falls as fast as the fit says?)
        full(*middle, batch=128), full(*middle, batch=512), full(*large, batch=64), full(*large, batch=256),
        full(*small, batch=128), full(64, 4, 4 * MIDDLE_STEPS, batch=256, tag=" long"),
        # second seeds at 8 and 16 sequences: the batch-8 run at d64 L4 ended 0.013 above batch 16
        # on one seed each, and the 65-run profile ranked them the other way; a ranking or a draw?
        full(*middle, batch=8, seed=2), full(*middle, batch=16, seed=2),
        # second seeds at d32 L2, batch 8 and 32: the 67-run profile put batch 8 0.015 ahead of
        # 32 there, seed 1 trained it 0.037 behind; one seed's draw or the model's miss?
        full(32, 2, LARGE_STEPS, batch=8, seed=2), full(32, 2, LARGE_STEPS, seed=2),
        # every growth family at d48 and d64 on the three seeds of its baselines (until then most
        # had one): a ratio read against one baseline seed moves with that seed's start (d64's
        # seed 2 starts late), and the no-freeze variant's d48 ratio, 0.62 on one seed, was the one
        # leave-one-schedule-out ratio miss; random_top early already had seed 2. And the
        # no-freeze variant's second seed at d96
        *[run for seed in (2, 3) for dims in (small, middle) for run in (
            study(dims[0], dims[1], 2, MIDDLE_STEPS, freeze=False, seed=seed),
            deepen(*dims, "stack_copy", 0.25, seed=seed), deepen(*dims, "identity", 0.25, seed=seed),
            deepen(*dims, "random_top", 0.5, seed=seed),
            *([deepen(*dims, "random_top", 0.1, seed=seed)] if seed == 3 else []))],
        study(96, 6, 3, LARGE_STEPS, freeze=False, seed=2),
        # full training's shapes at one length: depths 2 to 8 at d32-d64 and d96 L2, then two
        # small models four times as long. The search at small budgets picks among d32-d64 with
        # 2-4 layers trained 50-300 tokens per parameter, and the corpus had one depth at most
        # widths: the check at 4e12 trained d32 L4 0.06 worse and d64 L2 0.02 better than a law
        # in N alone predicted, so the law's shape term and its data term past 100 tokens per
        # parameter need these shapes
        full(32, 4, LARGE_STEPS), full(64, 2, LARGE_STEPS), full(48, 2, LARGE_STEPS), full(32, 6, LARGE_STEPS),
        full(48, 6, LARGE_STEPS), full(96, 2, LARGE_STEPS), full(32, 8, LARGE_STEPS),
        full(32, 4, 4 * LARGE_STEPS, tag=" long"), full(64, 2, 4 * LARGE_STEPS, tag=" long"),
    ]


HELDOUT_DATASET = "heldout_larger"


def heldout() -> list[Run]:
    """Runs at a size larger than any in ``corpus()``, never fitted on: d128 with 6 layers,
    1.18M non-embedding parameters (1.8x the corpus's largest), at the corpus's steps, batch
    and LR. Full training and three growth families (the study's schedule, ``stack_copy``
    and width growth), one seed each, then a second seed of width growth (with its own
    baseline: each seed evaluates on its own batches), whose first seed saved more than
    predicted. The shipped loss profile's predictions for them were written down before
    they were trained (``benchmarks/heldout_larger.py``)."""
    large = (128, 6, LARGE_STEPS)
    return [full(*large), study(128, 6, 3, LARGE_STEPS, freeze=True), deepen(*large, "stack_copy", 0.25),
            widen(*large), full(*large, seed=2), widen(*large, seed=2)]


DEEP_DATASET = "heldout_deep"


def heldout_deep() -> list[Run]:
    """The main question at a depth and size no fit has seen: d128 with 8 layers (1.57M
    non-embedding parameters, 2.4x the corpus's largest; the corpus stops at 6 layers, the
    study's CPU preset has 8), at the corpus's steps, batch and LR. Full training, the
    study's schedule in 4 stages and its no-freeze variant: where the shipped profile
    extrapolates its depth-proportional start-up. Predictions registered before training
    (``benchmarks/heldout_larger.py --set deep --predict``). Full training's second seed
    came after the first ended 0.08 nats above its prediction, to tell a slow seed from a
    slow depth; the growth runs' second seeds after the two baselines differed by 0.5 in the
    ratio they gave, so that each schedule is scored on two seeds against two. Full
    training's third seed: the two baselines' start-ups differed by up to 0.21 nats, so two
    seeds cannot say which of them is typical of 8 layers; then the growth schedules' third
    seeds, each against its own seed's baseline."""
    return [full(128, 8, LARGE_STEPS), study(128, 8, 4, LARGE_STEPS, freeze=False),
            study(128, 8, 4, LARGE_STEPS, freeze=True), full(128, 8, LARGE_STEPS, seed=2),
            study(128, 8, 4, LARGE_STEPS, freeze=False, seed=2), study(128, 8, 4, LARGE_STEPS, freeze=True, seed=2),
            full(128, 8, LARGE_STEPS, seed=3), study(128, 8, 4, LARGE_STEPS, freeze=True, seed=3),
            study(128, 8, 4, LARGE_STEPS, freeze=False, seed=3)]


LONGER_DATASET = "heldout_longer"


def heldout_longer() -> list[Run]:
    """Growth at d64 L4 trained as long as the corpus's d96 runs (3,200 steps, 6.55M tokens;
    the corpus's d64 growth runs train for 1,600): is the deficit's time scale set by the
    model's size or by the run's length? A faster-fading deficit fitted on the whole corpus
    predicts d128 (same length as d96) almost exactly, and fitted without d96 predicts d96
    (twice d64's length) too favourable to growth; the corpus cannot tell the two apart.
    Full training (the corpus's seed-1 run, retrained so that the set carries its own
    baseline: on one thread it ended 0.010 above the corpus's curve of the same spec and
    seed, trained in an earlier session), the study's schedule and ``identity`` at 25%.
    Predictions registered before training (``benchmarks/heldout_larger.py --set longer
    --predict``); the second seeds were trained a session later against the same registered
    predictions (a single run's compute-to-match ratio has seed noise of about 0.08), and
    third seeds after full training's seed 2 started slowly, to tell which start is typical."""
    # tagged apart from the corpus's d64 L4 schedules of half the length, which a list of
    # both would otherwise take for more seeds of one schedule
    longer = (64, 4, LARGE_STEPS)
    return [run for seed in (1, 2, 3) for run in (
        full(*longer, tag=" long", seed=seed), study(64, 4, 2, LARGE_STEPS, freeze=True, tag=" long", seed=seed),
        deepen(*longer, "identity", 0.25, tag=" long", seed=seed))]


WIDE_DATASET = "heldout_wide"


def heldout_wide() -> list[Run]:
    """The start-up at a width no fit has seen: full training of d192 with 6 layers and with
    3 (2.65M and 1.33M non-embedding parameters, 4x and 2x the corpus's largest), at the
    corpus's batch and LR for 1,600 steps (3.3M tokens). Beyond the corpus the start-up
    carries the growth answer (``benchmarks/scale_sensitivity.py``), and the profile shipped
    then counted it in tokens, proportional to depth and the same at every width: it predicted the
    6-layer model no better than the 3-layer one for most of this run, as d96 L6 tracked
    d96 L3 for its first 3M tokens. Predictions registered before training
    (``benchmarks/heldout_larger.py --set wide --predict``). The first L6 run stayed 0.2-0.4
    nats behind L3 for its first 1.8M tokens, far beyond either prediction; then a second
    seed of L6 (a slow seed, or the depth?) and both depths at a quarter of the LR for half
    the steps (a start-up set by depth, or by a learning rate too high for a wide, deep
    model? The loss model sees the LR only relative to its peak). At a quarter of the LR the
    handicap mostly went, so last the main question at both LRs: growth from 3 to 6 layers
    (``random_top`` at 25%, 800 steps) against full training at the same LR (the 1,600-step
    run's first half is that baseline at the corpus's constant LR)."""
    return [full(192, 6, MIDDLE_STEPS), full(192, 3, MIDDLE_STEPS), full(192, 6, MIDDLE_STEPS, seed=2),
            full(192, 6, MIDDLE_STEPS // 2, lr=LR / 4), full(192, 3, MIDDLE_STEPS // 2, lr=LR / 4),
            deepen(192, 6, MIDDLE_STEPS // 2, "random_top", 0.25), deepen(192, 6, MIDDLE_STEPS // 2, "random_top",
                                                                           0.25, lr=LR / 4)]


LR_DATASET = "heldout_lr"


def heldout_lr() -> list[Run]:
    """The main question at a learning rate that suits full training. Every fitted run has one
    peak LR (2e-3), and at d192 it was too high for 6 layers: full training started far slower
    than 3 layers, and most of that slow start, which growth skips, went at a quarter of the LR
    (``heldout_wide``). The loss model reads the LR only relative to its peak, so it predicts
    one curve at every peak. Here d128 with 8 layers (``heldout_deep``'s shape and length, three
    seeds of each schedule at 2e-3) trains from scratch at half and a quarter of the corpus's
    LR; then the study's schedule and its no-freeze variant at the LR where full training ended
    lowest, each against full training at that LR: does growth still save compute when full
    training's LR suits it? Predictions registered before training (``benchmarks/heldout_larger.py
    --set lr --predict``)."""
    deep = (128, 8, LARGE_STEPS)
    # full training ended lowest at half the corpus's LR (1.2589; a quarter 1.3065, the corpus's
    # LR 1.3205 on the same seed): the growth schedules train there
    return [full(*deep, lr=LR / 2), full(*deep, lr=LR / 4),
            study(128, 8, 4, LARGE_STEPS, freeze=False, lr=LR / 2),
            study(128, 8, 4, LARGE_STEPS, freeze=True, lr=LR / 2),
            # second and third seeds at that LR: at the corpus's LR one seed of three started far
            # later than the others and moved the growth ratios by up to 0.5
            *[run for seed in (2, 3) for run in (
                full(*deep, lr=LR / 2, seed=seed), study(128, 8, 4, LARGE_STEPS, freeze=False, lr=LR / 2, seed=seed),
                study(128, 8, 4, LARGE_STEPS, freeze=True, lr=LR / 2, seed=seed))]]


LR96_DATASET = "heldout_lr96"


def heldout_lr96() -> list[Run]:
    """The corpus's largest shape at half its peak LR: d96 with 6 layers, 3,200 steps, the
    fitted runs' shape and length, from scratch on three seeds and the study's schedule and its
    no-freeze variant on two, then ``random_top`` at 50% (the schedule leave-one-schedule-out
    misses most), each against full training at the same LR; then at twice the corpus's LR,
    full training at 6 layers (two seeds) and 3, the no-freeze variant and the study's schedule
    (two seeds each). At d128 L8 half the LR suited
    full training and took 0.15 from both schedules' compute savings (``heldout_lr``); every
    fitted run, d96 L6's included, trained at 2e-3. Is the profile's start-up, fitted there, a
    depth effect or partly a learning rate that is too high for the corpus's deepest models?
    Predictions registered before training (``benchmarks/heldout_larger.py --set lr96
    --predict``)."""
    large, half = (96, 6, LARGE_STEPS), LR / 2
    # ordered for two runners (--part 0/2 and 1/2): each seed's baseline trains before its growth runs
    return [full(*large, lr=half), full(*large, lr=half, seed=2),
            study(96, 6, 3, LARGE_STEPS, freeze=True, lr=half), study(96, 6, 3, LARGE_STEPS, freeze=False, lr=half),
            full(*large, lr=half, seed=3), study(96, 6, 3, LARGE_STEPS, freeze=False, lr=half, seed=2),
            study(96, 6, 3, LARGE_STEPS, freeze=True, lr=half, seed=2), deepen(*large, "random_top", 0.5, lr=half),
            # then twice the corpus's LR. At half of it d96 L6 trained no better than at 2e-3 and growth's
            # ratios moved by at most 0.03; at d128 L8 and d192 L6 the corpus's LR was too high and growth saved
            # far more than at a lower one. If growth's extra saving is a deep model's slow start at an LR too
            # high for it, then here full training ends above its 2e-3 runs, the 3-layer model beats it for
            # longer, and the no-freeze variant needs less of full training's compute than at 2e-3 (0.87)
            full(*large, lr=2 * LR), full(*large, lr=2 * LR, seed=2),
            study(96, 6, 3, LARGE_STEPS, freeze=False, lr=2 * LR),
            study(96, 6, 3, LARGE_STEPS, freeze=False, lr=2 * LR, seed=2), full(96, 3, LARGE_STEPS, lr=2 * LR),
            # the no-freeze variant needed 0.61 there (0.87 at 2e-3): the study's own schedule at that LR
            study(96, 6, 3, LARGE_STEPS, freeze=True, lr=2 * LR), study(96, 6, 3, LARGE_STEPS, freeze=True, lr=2 * LR,
                                                                        seed=2)]


LR_SWEEP_DATASET = "lr_sweep"


def lr_sweep() -> list[Run]:
    """Full training of the corpus's own shapes at peak LRs other than its 2e-3, for 1,600 steps
    (the corpus's 2e-3 runs of the same seed are the reference: with a constant LR their first
    1,600 steps are the same run): how high an LR each width and depth takes before its start
    slows. Above such a limit a deep model starts slow and growth, which starts shallow, escapes
    much of it (d96 L6 at 4e-3, d128 L8 and d192 L6 at 2e-3: ``heldout_lr96``, ``heldout_lr``,
    ``heldout_wide``). Those held-out shapes are not here: a limit fitted on these shapes is
    checked on them. Last, six growth runs whose grown shape is above its limit: how much of a
    slow start a grown model pays."""
    steps = MIDDLE_STEPS
    # ordered for two runners (--part 0/2 and 1/2): the LRs just above the corpus's first
    return [full(32, 8, steps, lr=2 * LR), full(48, 6, steps, lr=2 * LR), full(64, 4, steps, lr=2 * LR),
            full(96, 2, steps, lr=2 * LR), full(64, 8, steps), full(64, 8, steps, lr=2 * LR),
            full(32, 8, steps, lr=4 * LR), full(48, 6, steps, lr=4 * LR), full(64, 4, steps, lr=4 * LR),
            full(96, 3, steps, lr=4 * LR), full(96, 2, steps, lr=4 * LR), full(64, 8, steps, lr=LR / 2),
            full(32, 4, steps, lr=4 * LR), full(64, 2, steps, lr=4 * LR), full(32, 8, steps, lr=8 * LR),
            full(32, 4, steps, lr=8 * LR), full(48, 6, steps, lr=LR / 2), full(64, 4, steps, lr=LR / 2),
            full(128, 4, steps), full(128, 4, steps, lr=2 * LR), full(128, 4, steps, lr=LR / 2),
            # then, where the first runs bracket a limit to a factor of two, the LR between (and d64 L2 at
            # 4e-3, slow at 8e-3 like d64 L4), and second seeds of two slow starts: how much of one is the seed
            full(64, 8, steps, lr=1.5 * LR), full(64, 4, steps, lr=3 * LR), full(96, 3, steps, lr=3 * LR),
            full(48, 6, steps, lr=3 * LR), full(64, 2, steps, lr=2 * LR), full(96, 2, steps, lr=3 * LR),
            full(64, 8, steps, lr=2 * LR, seed=2), full(96, 3, steps, lr=4 * LR, seed=2),
            # growth where the full model is above its limit: does a grown model skip the slow start, or
            # pay part of it? (at d96 L6 at 4e-3 the growth runs started 0.12-0.35 nats above their curves)
            study(64, 8, 4, steps, freeze=False, lr=2 * LR), deepen(64, 8, steps, "random_top", 0.25, lr=2 * LR),
            deepen(64, 4, steps, "random_top", 0.25, lr=4 * LR), study(64, 4, 2, steps, freeze=False, lr=4 * LR),
            deepen(128, 4, steps, "random_top", 0.25, lr=2 * LR), study(128, 4, 2, steps, freeze=False, lr=2 * LR)]


LR160_DATASET = "heldout_lr160"


def heldout_lr160() -> list[Run]:
    """The LR limit at a width no run has had: d160 with 4 layers from scratch, 1,600 steps, at
    a peak LR the shipped limit (fitted on the LR sweep and the corpus, d48 to d128) puts 1.5x
    above it (3e-3: predicted to start slow) and at 0.6x of it (1.2e-3: predicted to start
    normally). Verdicts registered before training in ``benchmarks/lr_limit_predicted.json``."""
    return [full(160, 4, MIDDLE_STEPS, lr=1.5 * LR), full(160, 4, MIDDLE_STEPS, lr=0.6 * LR)]


BAND_DATASET = "heldout_lr_band"


def heldout_lr_band() -> list[Run]:
    """The LR limit's band, where the seed decides, and above it, at shapes no run has had
    (d96 L8, d160 L6, and d80 L12, deeper than any fit has seen), 1,600 steps: full training
    in the band (two seeds where it is widest), above it and under it; growth whose grown shape is
    above its limit, against full training at the same peak LR. Predictions registered before
    training in ``benchmarks/heldout_lr_band_predicted.json``."""
    steps = MIDDLE_STEPS
    # ordered for two runners (--part 0/2 and 1/2), about the same time each
    return [full(96, 8, steps, lr=1.5 * LR), full(160, 6, steps), full(96, 8, steps, lr=1.5 * LR, seed=2),
            full(160, 6, steps, seed=2), full(160, 6, steps, lr=1.5 * LR), full(96, 8, steps, lr=2 * LR),
            full(80, 12, steps, lr=2 * LR), full(80, 12, steps, lr=1.5 * LR),
            deepen(160, 6, steps, "stack_copy", 0.25, lr=1.5 * LR), study(160, 6, 3, steps, freeze=False, lr=1.5 * LR),
            deepen(96, 8, steps, "random_top", 0.25, lr=2 * LR), study(96, 8, 4, steps, freeze=True, lr=2 * LR),
            full(160, 6, steps, lr=LR / 2), full(96, 8, steps)]


DEEP12_DATASET = "heldout_deep12"


def heldout_deep12() -> list[Run]:
    """The main question at 12 layers, deeper than any fit (the corpus stops at 8), at the
    corpus's LR, where the shipped limit expects few slow starts (d80 L12's limit is about
    1.5x above 2e-3): the start-up a deep model from scratch pays is what growth skips, and
    the profile carries it to depth as a power of the layers fitted on 2 to 8 of them; at 12
    it decides what the search says at GPU scale. d80 (two heads of 40), 1,600 steps, the band
    set's d80 L12 runs at 3e-3 and 4e-3 its LR companions: full training at 12 layers (two
    seeds) and at 6 (the depth pair: the start-up itself), the study's schedule in 4 stages
    and its no-freeze variant, ``stack_copy`` early and ``random_top`` late from 6 layers.
    Predictions registered before training (``benchmarks/heldout_larger.py --set deep12
    --predict``)."""
    steps = MIDDLE_STEPS
    # ordered for two runners (--part 0/2 and 1/2), about the same time each
    return [full(80, 12, steps), full(80, 6, steps), study(80, 12, 4, steps, freeze=True),
            study(80, 12, 4, steps, freeze=False), deepen(80, 12, steps, "stack_copy", 0.25),
            full(80, 12, steps, seed=2), deepen(80, 12, steps, "random_top", 0.5)]


DEPTH_DATASET = "heldout_depth"


def heldout_depth() -> list[Run]:
    """Deeper still, at widths the corpus has: d64 with 16 layers and d48 with 12 (the corpus
    has d64 L8 and d48 L6 at the same steps, batch and LR), each far under its LR limit at
    the corpus's LR, so a slow start there is the depth's, not the LR's. Registered before
    training with two profiles (``benchmarks/heldout_larger.py --set depth --predict``): the
    one shipped then, whose start-up is proportional to depth, and a candidate whose
    start-up's depth exponent is fitted (docs/loss-model.md, "Held out at 12 layers"), shipped
    since. Full training at 16 layers (two seeds) and 12, the study's schedule in 4 stages and
    its no-freeze variant at d64, ``stack_copy`` early from 8 layers; at d48 the no-freeze
    variant and ``random_top`` late from 6."""
    steps = MIDDLE_STEPS
    # ordered for two runners (--part 0/2 and 1/2), about the same time each
    return [full(64, 16, steps), study(64, 16, 4, steps, freeze=True), full(64, 16, steps, seed=2),
            study(64, 16, 4, steps, freeze=False), deepen(64, 16, steps, "stack_copy", 0.25),
            full(48, 12, steps), study(48, 12, 4, steps, freeze=False), deepen(48, 12, steps, "random_top", 0.5)]


SETS = {"corpus": (corpus, DATASET), "heldout": (heldout, HELDOUT_DATASET),
        "heldout-deep": (heldout_deep, DEEP_DATASET), "heldout-longer": (heldout_longer, LONGER_DATASET),
        "heldout-wide": (heldout_wide, WIDE_DATASET), "heldout-lr": (heldout_lr, LR_DATASET),
        "heldout-lr96": (heldout_lr96, LR96_DATASET), "lr-sweep": (lr_sweep, LR_SWEEP_DATASET),
        "heldout-lr160": (heldout_lr160, LR160_DATASET), "heldout-lr-band": (heldout_lr_band, BAND_DATASET),
        "heldout-deep12": (heldout_deep12, DEEP12_DATASET), "heldout-depth": (heldout_depth, DEPTH_DATASET)}


def _complete_names(db: Path) -> set[str]:
    if not db.exists():
        return set()
    from costsim.store import Store

    rows = Store(db).query("SELECT spec_json FROM run_summary WHERE status = 'complete'")
    return {json.loads(r["spec_json"]).get("name") for r in rows}


def train(run: Run, db: Path, workdir: Path, threads: int) -> str:
    spec = {**run.spec, "name": f"{run.name} [{run.family}]"}
    steps = sum(s["tokens"] for s in spec["stages"]) // (spec["training"]["batch_size"] * SEQ_LEN)
    micro = spec["training"]["micro_batch_size"]
    summary = train_spec(spec, db, workdir, threads=threads, eval_every=steps // EVALS_PER_RUN,
                         eval_batches=EVAL_TOKENS // (micro * SEQ_LEN), label=run.name)
    return json.dumps(summary)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.growth_corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="growth_corpus.duckdb", help="DuckDB store the runs go to")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch threads for the one run at a time (default: 2 or the CPU count)")
    checked_only = [name for name in SETS if name not in ("corpus", "lr-sweep")]
    parser.add_argument("--set", choices=sorted(SETS), default="corpus",
                        help="corpus: the runs the loss model is fitted on; lr-sweep: the runs its LR limit is "
                        f"fitted on; {', '.join(checked_only)}: runs it is only checked on; each is exported to "
                        "costsim/data/corpus/ as " + ", ".join(f"{SETS[name][1]}.json" for name in SETS))
    parser.add_argument("--only", help="run only the runs whose name contains this text")
    parser.add_argument("--part", metavar="I/N", help="run only every N-th run still to do, from the I-th (0-based): "
                        "N runners with --threads 1 share a machine's cores")
    parser.add_argument("--list", action="store_true", help="list the corpus and what is already stored")
    parser.add_argument("--export", action="store_true",
                        help="add the stored curves to the shipped dataset (runs it already has are kept)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise CostsimError(f"--threads must be a positive integer, got {args.threads}")
    db = Path(args.db).resolve()
    done = _complete_names(db)
    listing, dataset = SETS[args.set]
    runs = [r for r in listing() if not args.only or args.only in r.name]
    if not runs:
        raise CostsimError(f"--only {args.only!r} matches no run of --set {args.set}; --list shows their names")
    if args.list:
        for run in runs:
            print(f"{'done' if f'{run.name} [{run.family}]' in done else 'todo':4s}  {run.name}")
        return 0
    if args.export:
        from costsim.corpus import dataset_path, export_store

        if not db.exists():
            raise CostsimError(f"--db {args.db}: no such store; train the corpus first")
        n = export_store(db, dataset_path(dataset))
        print(f"{dataset_path(dataset)} now holds {n} curves")
        return 0
    todo = [run for run in runs if f"{run.name} [{run.family}]" not in done]
    if args.part:
        try:
            index, count = (int(v) for v in args.part.split("/"))
            assert 0 <= index < count
        except (ValueError, AssertionError):
            raise CostsimError(f"--part {args.part!r}: give I/N with 0 <= I < N, e.g. --part 0/2") from None
        todo = todo[index::count]
    with tempfile.TemporaryDirectory() as tmp:
        for run in todo:
            print(train(run, db, Path(tmp), args.threads), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
