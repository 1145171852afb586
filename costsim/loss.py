"""A loss model for any schedule: the validation-loss trajectory against tokens.

Full training from scratch follows a Chinchilla-form law in non-embedding parameters
N and effective tokens D:

    L(N, D) = E + (A / N^alpha + B / D^beta) * (1 - anneal * decay(t))

where D counts each token at the learning rate it was trained with (lr_t / peak lr:
warmup and decay make progress slower), and ``decay(t) = 1 - lr_t/peak`` after
warmup: annealing removes a fraction ``anneal`` of the reducible loss (constant LR:
none). The published defaults are Hoffmann et al. 2022 (Chinchilla, approach 3):
E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28.

Growth is tracked by *equivalent tokens*: the state of a run is the number of tokens
D at which the current model, trained from scratch, would have its current loss. At a
stage boundary the model changes size; its loss right after growing is the old loss
plus a jump (random fresh blocks cost loss; function-preserving operators cost
nothing), and the grown model continues from the D at which a model of the new size
would have that loss (Shen et al. 2022's "equivalent step"). Within a stage, a token
advances D by ``(trainable share)^frozen_exponent`` (frozen blocks progress slower) and
by the LR factor. A fresh optimizer costs a jump too. Jumps are fractions of the
reducible loss L - E, so growth parameters fitted at one scale transfer to another.

Parameters are fitted to stored runs (``costsim.fit``) with bootstrap samples, which
give the prediction intervals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from costsim.errors import SpecError
from costsim.growth import JUMP_OPERATORS
from costsim.lr import lr_at
from costsim.spec import ScheduleSpec

MAX_LR_POINTS = 4096


class LossParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    E: float = Field(ge=0, description="irreducible loss (nats)")
    A: float = Field(gt=0)
    alpha: float = Field(gt=0)
    B: float = Field(gt=0)
    beta: float = Field(gt=0)
    anneal: float = Field(0.0, ge=0, le=1, description="share of reducible loss removed by full LR decay")
    frozen_exponent: float = Field(1.0, ge=0, description="token efficiency = trainable share ** this")
    jumps: dict[str, float] = Field(default_factory=dict, description="loss jump per operator, per new share, x (L-E)")
    reset_jump: float = Field(0.0, ge=0, description="loss jump of a fresh optimizer, x (L-E)")

    def jump(self, operator: str) -> float:
        # a function-preserving operator cannot cost a jump, by construction
        return self.jumps.get(operator, 0.0) if operator in JUMP_OPERATORS else 0.0


class LossProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params: LossParams
    samples: list[LossParams] = Field(default_factory=list, description="bootstrap fits, for intervals")
    residual_std: float = Field(0.0, ge=0, description="per-point noise of the fit (nats)")
    interval: float = Field(0.9, gt=0, lt=1)
    source: str = ""
    report: dict = Field(default_factory=dict)
    vocab_size: int | None = Field(None, description="the tokenizer it was fitted for, if specific")


@dataclass(frozen=True)
class StagePlan:
    """What the loss model needs of a stage."""

    n_params: float  # non-embedding parameters
    tokens: float
    trainable_share: float  # trainable / total parameters of the stage
    operator: str  # how this stage's growth was made (ignored when the size is unchanged)
    reset_optimizer: bool
    lr: np.ndarray  # lr factor (lr / peak) at each step of the stage


@dataclass(frozen=True)
class LossCurve:
    tokens: np.ndarray
    loss: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    stage: np.ndarray  # stage index of each point


def reducible(p: LossParams, n_params, tokens) -> np.ndarray:
    return p.A / np.power(n_params, p.alpha) + p.B / np.power(np.maximum(tokens, 1.0), p.beta)


def equivalent_tokens(p: LossParams, n_params: float, loss_minus_e: float) -> float:
    """Tokens at which a model of ``n_params`` from scratch has reducible loss ``loss_minus_e``."""
    data_part = loss_minus_e - p.A / n_params**p.alpha
    if data_part <= 0:
        return float("inf")  # already at (or below) this size's limit
    return (p.B / data_part) ** (1 / p.beta)


def trajectory(p: LossParams, plans: list[StagePlan], points_per_stage: int = 16,
               at_tokens: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, loss, stage index) along a schedule, at ``points_per_stage`` points per
    stage or at the cumulative token counts ``at_tokens``."""
    tokens_out, loss_out, stage_out = [], [], []
    d_eff = 0.0
    done = 0.0
    previous: StagePlan | None = None
    for index, plan in enumerate(plans):
        if previous is not None:
            current = reducible(p, previous.n_params, d_eff)
            if plan.n_params != previous.n_params:
                current *= 1 + p.jump(plan.operator) * (1 - previous.n_params / plan.n_params)
            if plan.reset_optimizer:
                current *= 1 + p.reset_jump
            d_eff = equivalent_tokens(p, plan.n_params, float(current))
        steps = len(plan.lr)
        efficiency = plan.trainable_share ** p.frozen_exponent
        per_step = plan.tokens / steps
        # effective tokens after each step of the stage
        cumulative = d_eff + np.cumsum(plan.lr) * per_step * efficiency
        decay = np.where(np.arange(steps) >= np.argmax(plan.lr), 1 - plan.lr, 0.0)
        if at_tokens is None:
            # always the stage's last step; the rest spread evenly before it
            picks = np.unique(np.linspace(steps - 1, 0, min(points_per_stage, steps)).round().astype(int))
        else:
            local = at_tokens[(at_tokens > done) & (at_tokens <= done + plan.tokens + 1e-9)] - done
            picks = np.clip(np.ceil(local / per_step).astype(int) - 1, 0, steps - 1)
        loss = p.E + reducible(p, plan.n_params, cumulative[picks]) * (1 - p.anneal * decay[picks])
        tokens_out.append(done + (picks + 1) * per_step)
        loss_out.append(loss)
        stage_out.append(np.full(len(picks), index))
        d_eff = float(cumulative[-1])
        done += plan.tokens
        previous = plan
    return np.concatenate(tokens_out), np.concatenate(loss_out), np.concatenate(stage_out)


def stage_plans(spec: ScheduleSpec, steps: list[int] | None = None) -> list[StagePlan]:
    """The loss model's view of a spec (``steps``: the steps actually run per stage)."""
    from costsim.engine import stage_shape, steps_per_stage
    from costsim.flops import parameter_counts

    shape = stage_shape(spec)
    counts = parameter_counts(shape)
    steps = steps or steps_per_stage(spec)
    t = spec.training
    total_steps = sum(steps)
    plans, start = [], 0
    for i, stage in enumerate(spec.stages):
        n = steps[i]
        # a long stage is followed in at most MAX_LR_POINTS equal slices (the LR at each
        # slice's middle): the same trajectory to well within the fit's noise, at a
        # bounded cost for runs of millions of steps
        local = np.arange(n) if n <= MAX_LR_POINTS else (np.arange(MAX_LR_POINTS) + 0.5) * n / MAX_LR_POINTS
        if t.lr_reset_per_stage:
            lr = lr_at(t.lr_schedule, local, n)
        else:
            lr = lr_at(t.lr_schedule, start + local, total_steps)
        plans.append(StagePlan(
            n_params=float(counts.non_embedding[i]),
            tokens=float(n * t.batch_size * spec.model.seq_len),
            trainable_share=float(counts.trainable[i] / counts.total[i]),
            operator=_operator(spec, i),
            reset_optimizer=stage.reset_optimizer,
            lr=np.atleast_1d(lr) / t.lr_schedule.lr,
        ))
        start += n
    return plans


def _operator(spec: ScheduleSpec, index: int) -> str:
    if index == 0:
        return "none"
    depth, width = spec.growth_operators(index)
    prev, cur = spec.stages[index - 1], spec.stages[index]
    return width if spec.stage_width(prev) != spec.stage_width(cur) else depth


def predict(profile: LossProfile, plans: list[StagePlan], points_per_stage: int = 16) -> LossCurve:
    """Point prediction with a prediction interval (bootstrap spread plus fit noise)."""
    tokens, loss, stage = trajectory(profile.params, plans, points_per_stage)
    if profile.samples:
        sampled = np.stack([trajectory(s, plans, at_tokens=tokens)[1] for s in profile.samples])
        q = (1 - profile.interval) / 2
        lo, hi = np.quantile(sampled, [q, 1 - q], axis=0)
    else:
        lo = hi = loss
    z = 1.6448536269514722 if abs(profile.interval - 0.9) < 1e-12 else _normal_quantile(0.5 + profile.interval / 2)
    noise = z * profile.residual_std
    lower = np.minimum(lo - noise, loss)
    upper = np.maximum(hi + noise, loss)
    return LossCurve(tokens=tokens, loss=loss, lower=lower, upper=upper, stage=stage)


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def profile_for_spec(spec: ScheduleSpec) -> LossProfile:
    """A profile fitted for the spec's tokenizer (by vocabulary size) if one ships, else the default."""
    for name in loss_profile_names():
        profile = load_loss_profile(name)
        if profile.vocab_size == spec.model.vocab_size:
            return profile
    return load_loss_profile()


def predict_spec(spec: ScheduleSpec, profile: LossProfile | None = None, points_per_stage: int = 16,
                 steps: list[int] | None = None) -> LossCurve:
    return predict(profile or profile_for_spec(spec), stage_plans(spec, steps), points_per_stage)


@dataclass(frozen=True)
class PredictedCurve:
    """A predicted loss curve on the axes a user compares runs on."""

    label: str
    tokens: np.ndarray
    x_flops: np.ndarray  # counted FLOPs so far
    x_time_s: np.ndarray  # predicted wall time so far, on the spec's hardware
    loss: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def predict_curve(spec: ScheduleSpec, profile: LossProfile | None = None, steps: list[int] | None = None,
                  points_per_stage: int = 16) -> PredictedCurve:
    from costsim.engine import along_schedule, estimate, steps_per_stage

    profile = profile or profile_for_spec(spec)
    steps = steps or steps_per_stage(spec)
    curve = predict_spec(spec, profile, points_per_stage, steps)
    costs = estimate(spec)
    return PredictedCurve(
        label=profile.name, tokens=curve.tokens,
        x_flops=along_schedule(spec, steps, curve.tokens, [s.flops_counted_per_step for s in costs.stages]),
        x_time_s=along_schedule(spec, steps, curve.tokens, [s.step_time_s for s in costs.stages]),
        loss=curve.loss, lower=curve.lower, upper=curve.upper)


# --- profiles ---------------------------------------------------------------------------

def _profile_dir():
    return resources.files("costsim") / "data" / "loss"


@cache
def loss_profile_names() -> tuple[str, ...]:
    return tuple(sorted(p.name.removesuffix(".json") for p in _profile_dir().iterdir() if p.name.endswith(".json")))


DEFAULT_LOSS_PROFILE = "chinchilla"


@cache
def load_loss_profile(name_or_path: str = DEFAULT_LOSS_PROFILE) -> LossProfile:
    if name_or_path in loss_profile_names():
        text = (_profile_dir() / f"{name_or_path}.json").read_text()
    elif Path(name_or_path).is_file():
        text = Path(name_or_path).read_text()
    else:
        raise SpecError(f"unknown loss profile {name_or_path!r}; use one of {', '.join(loss_profile_names())} "
                        "or a profile .json path (python -m costsim.fit writes one)")
    return LossProfile.model_validate(json.loads(text))
