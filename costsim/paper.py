"""The study's schedule (arXiv 2411.18700) and its cost framework.

Layer-wise incremental training in S stages: stage s runs the first s*L/S blocks.
Stage 1 trains everything; each later stage first trains only the new blocks (older
ones frozen, embeddings and head still training), then all active blocks, for equal
token counts; then "continual training" of the full model with a fresh optimizer.

In the paper's units (c per layer per token forward, the same backward, backward only
through trainable layers), C_inc / C_base = (3S+5)/(8S), and the continual tokens that
spend the baseline's compute are T_cont = (5/8)(1 - 1/S) T.
"""

from __future__ import annotations

from fractions import Fraction

from costsim.errors import SpecError
from costsim.spec import HardwareSpec, ModelSpec, ScheduleSpec, StageSpec, TrainingSpec

GPT2_SMALL = ModelSpec(d_model=768, n_heads=12, vocab_size=50304, seq_len=1024, tied_embeddings=True, bias=True)
# 512 sequences of 1024 tokens = 524,288 tokens per step, as in the study.
STUDY_TRAINING = TrainingSpec(micro_batch_size=16, batch_size=512, precision="bf16-mixed")


def continual_tokens(tokens: float, n_stages: int) -> Fraction:
    """Tokens of continual training that bring the schedule to the baseline's compute."""
    return Fraction(5, 8) * (1 - Fraction(1, n_stages)) * Fraction(tokens)


def study_cost_ratio(n_stages: int) -> Fraction:
    """C_incremental / C_baseline in the paper's units: (3S+5)/(8S)."""
    return Fraction(3 * n_stages + 5, 8 * n_stages)


def paper_incremental(
    n_layers: int = 12,
    n_stages: int = 4,
    tokens: float = 10_000 * 524_288,
    freeze: bool = True,
    *,
    continual: float | None = None,
    model: ModelSpec = GPT2_SMALL,
    training: TrainingSpec = STUDY_TRAINING,
    hardware: HardwareSpec | None = None,
) -> ScheduleSpec:
    """The study's schedule as a spec.

    ``tokens`` is the incremental part (stage 1 to S); ``continual`` the continual
    phase, by default the study's T_cont; pass 0 to leave it out.
    """
    if n_stages < 1 or n_layers % n_stages:
        raise SpecError(f"n_layers {n_layers} must be a positive multiple of n_stages {n_stages}; "
                        "the study adds L/S blocks per stage")
    per_stage = tokens / n_stages
    step = n_layers // n_stages
    stages = [StageSpec(layers=step, tokens=per_stage, train="all", name="stage 1")]
    for s in range(2, n_stages + 1):
        layers = s * step
        if freeze:
            stages.append(StageSpec(layers=layers, tokens=per_stage / 2, train="new", name=f"stage {s} freeze"))
            stages.append(StageSpec(layers=layers, tokens=per_stage / 2, train="all", name=f"stage {s} all"))
        else:
            stages.append(StageSpec(layers=layers, tokens=per_stage, train="all", name=f"stage {s}"))
    continual_tokens_ = float(continual_tokens(tokens, n_stages)) if continual is None else continual
    if continual_tokens_ > 0:
        stages.append(StageSpec(layers=n_layers, tokens=continual_tokens_, train="all", reset_optimizer=True,
                                name="continual"))
    return ScheduleSpec(
        name=f"paper incremental S={n_stages}" + ("" if freeze else " (no freezing)"),
        model=model, training=training, hardware=hardware or HardwareSpec(), stages=stages,
    )


def full_training(n_layers: int = 12, tokens: float = 10_000 * 524_288, *, model: ModelSpec = GPT2_SMALL,
                  training: TrainingSpec = STUDY_TRAINING, hardware: HardwareSpec | None = None) -> ScheduleSpec:
    """The study's baseline: the full model from the start."""
    return ScheduleSpec(name="full training", model=model, training=training, hardware=hardware or HardwareSpec(),
                        stages=[StageSpec(layers=n_layers, tokens=tokens, name="full")])
