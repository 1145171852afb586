"""A loss model for any schedule: the validation-loss trajectory against tokens.

Full training from scratch follows a Chinchilla-form law in non-embedding parameters N
and *ideal* tokens D:

    L(N, D) = E + (A / N^alpha + B / (D + d0)^beta) * (1 - anneal * decay(t))

- D counts each token at the learning rate it was trained with (lr_t / peak), at the
  trainable share of a frozen phase (share^frozen_exponent), and at the batch's
  efficiency 1 / (1 + batch / B_crit(L)), where the critical batch B_crit(L) =
  bcrit * L^-bcrit_exponent grows as the loss falls (McCandlish et al. 2018; Kaplan et
  al. 2020): a batch far above B_crit spends tokens without progress, so a schedule of
  a few huge steps cannot learn. ``batch_reference_tokens`` is the batch a published
  law's D was measured at (its efficiency there is 1).
- Below B_crit, ``small_batch_exponent`` g says what a smaller batch buys at the same LR:
  the efficiency is (P / batch)^g x (the McCandlish term)^(1 - g), P the reference batch
  (``BATCH_PIVOT_TOKENS`` when there is none). g = 0 is SGD at its best LR, where a batch
  under B_crit spends its tokens as well as any smaller one; Adam at a fixed LR takes steps
  of about the same size whatever the batch, so where the gradient is mostly noise a
  step's progress grows only as sqrt(batch) and a smaller batch makes more progress per
  token (g = 1/2); above B_crit the steps, not the tokens, count either way.
- d0 keeps the start of the curve finite (the loss of an untrained model).
- Gradient noise: at LR factor f = lr_t/peak and a batch of B tokens the reducible loss
  is multiplied by 1 + s / (1 + s), s = noise_tokens * L^-noise_exponent * f / B (L: the
  loss without it). Tokens alone cannot say that a batch of a few sequences at a high LR
  settles higher; this term does, and an LR decay removes it. The gradient's noise grows
  against its signal as the loss falls (why B_crit grows), so at one LR a small batch's
  lift grows along a run: every batch-8 run of the corpus ends further above a
  loss-independent lift than it starts. The saturation keeps the loss falling as L falls
  for any exponent up to NOISE_EXPONENT_MAX.
- decay(t) = 1 - lr_t/peak after the peak: annealing removes a share of the reducible loss.

Growth is tracked by equivalent tokens: at a boundary the model keeps its loss (plus a
jump for operators that change the function, ``jumps``, and for a fresh optimizer,
``reset_jump``), and D is re-solved so the new model has that loss. What happens next
is the *growth structure*, a registered class chosen by ``LossParams.structure``:

- ``equivalent``: the grown model then learns exactly like a from-scratch model of its
  size at that loss (Shen et al. 2022's assumption);
- ``fading``: its tokens count at efficiency 1 - lag * exp(-s / (lag_tokens * D_g)) after
  growth (s: ideal tokens since growth, D_g: equivalent tokens at growth), a deficit that
  fades;
- ``lingering``: at 1 - lag / (1 + s / (lag_tokens * D_g)), a deficit that fades ever
  more slowly (shipped);
- ``multiplier``: its tokens count at 1 - lag for the rest of the run (lag < 0: faster);
- ``grow_into``: the new parameters start contributing nothing (a share ``lag`` of them)
  and the effective parameter count approaches N with the same time constant.

Lags are per operator and scale with the share of parameters the growth adds, like the
jumps. The deficit's clock s counts ideal tokens (``lag_clock`` can count its time in
tokens per parameter instead); a frozen phase advances it by its discounted tokens or,
with ``frozen_clock: trained``, by the tokens its trainable blocks (the grown ones) see.

Boundaries also cost transients that decay over ``transient_steps`` optimizer
steps (``bumps`` x reducible loss): switching a frozen model to training all blocks
(stale optimizer state), a fresh optimizer (its first steps are large), and a growth
operator (stacked copies at first compute the wrong function, recovered within a few
dozen steps).

Parameters are fitted to stored runs (``costsim.fit``); bootstrap refits over runs give
the law's and the growth parameters' uncertainty, and the measured seed noise and the
held-out error are added on top (``LossProfile``).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from costsim.errors import SpecError
from costsim.growth import JUMP_OPERATORS, OPERATORS, WIDTH_OPERATORS
from costsim.lr import lr_at
from costsim.shipped import shipped_names, shipped_text
from costsim.spec import ScheduleSpec

MAX_LR_POINTS = 4096
BATCH_CHUNK_GROWTH = 4  # batch efficiency is re-evaluated at steps 0, 3, 15, 63, ... of a stage
MAX_BATCH_CHUNKS = 8
# L (1 + s/(1 + s)) with s ~ L^-g falls with L for every s while g < 3 + 2 sqrt(2):
# above that a small batch's lift could make more training raise the loss
NOISE_EXPONENT_MAX = 5.0
# the batch a small_batch_exponent is quoted against when a law has no reference batch: the
# growth corpus's (32 sequences of 64 bytes); any value rescales D by a constant, which the
# law's B absorbs
BATCH_PIVOT_TOKENS = 2048.0
SMALL_BATCH_EXPONENT_MAX = 0.75
STARTUP_WIDTH_REFERENCE = 64.0  # d_model at which a profile's startup_tokens is quoted (and its lr_limit)
LR_LIMIT_DOMAIN = "lr_limit_peak_lr"  # a profile's domain entry: the peak LRs its LR limit was fitted on
# A slow start is all or nothing in the runs: at 1.64M tokens every run that started slow needed
# about twice the tokens of its curve (0.43-0.62), however far above its limit, and d64 L8 ran
# faster at 3e-3 than at 2e-3 and slow at 4e-3. Near the limit the seed decides (d128 L8 at 2e-3:
# one seed in three). So the limit is where half of all seeds start slow (a probit in log LR,
# ``lr_limit_spread`` wide), and a prediction follows the likelier outcome: the whole slow start
# at or above the limit, none below; where the other outcome has at least the interval's tail
# probability, the interval covers it too (``lr_branches``).
# The limit was measured on d48-d128 (20 warmup steps) and held at d160 and d192; a slow start is
# predicted up to this many times the widest fitted width, and only noted beyond: at GPT-2's width
# the fitted power law would put a standard recipe (6e-4) twice over its limit
LR_LIMIT_WIDTH_REACH = 2.0
LAW_INTERACTION_MAX = 20.0  # past Kaplan et al.'s ~10 the combination is a plain max(a, b)
# Every full-training curve of the corpus past 1.5M tokens is, on its own, a floor plus a power
# law of exponent 0.5-0.85, while a single power law over whole runs settles at 0.23 with the floor
# at 0 (docs/loss-model.md, "Small models trained long, explained"): the data term is a smoothly
# broken power law, D^-beta early and D^-late_beta late. Its inverse has no closed form: Newton's
# method in log tokens, which converges from the unbroken solution (the data term is log-concave
# in log D when late_beta >= beta).
LATE_BETA_MAX = 3.0
# The break's place may move with the model: data_break_tokens is where a model of this
# capacity (N * aspect^shape, as the capacity term sees it: between d32 L2's 6.6e4 and d64 L2's
# 3.4e5) breaks, a model of capacity N at data_break_tokens * (N / this)^data_break_size_exponent.
# In Kaplan et al. 2020's law the knee moves as N^0.74 (a larger model keeps gaining from data
# longer); the corpus's full training fits the other sign, -0.37 (docs/loss-model.md).
DATA_BREAK_REFERENCE_PARAMS = 1e5
INVERSE_ITERATIONS = 40


class LossParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    structure: str = Field("equivalent", description="growth structure (STRUCTURES)")
    E: float = Field(ge=0, description="irreducible loss (nats)")
    A: float = Field(gt=0)
    alpha: float = Field(gt=0)
    B: float = Field(gt=0)
    beta: float = Field(gt=0)
    d0: float = Field(0.0, ge=0, description="tokens offset: the untrained model's loss is finite")
    data_break_tokens: float = Field(0.0, ge=0, description="tokens (offset d0 included) around which the data "
                                     "term steepens from D^-beta to D^-late_beta: a smoothly broken power law "
                                     "(0: none, one power law)")
    late_beta: float = Field(0.0, ge=0, le=LATE_BETA_MAX, description="the data term's exponent well past "
                             "data_break_tokens (read only with a break)")
    data_break_size_exponent: float = Field(0.0, ge=-2, le=2, description="the break moves with the model: at "
                                            "data_break_tokens x (N / 1e5)^this for a model of capacity N (0: at "
                                            "one token count for every model)")
    law_interaction: float = Field(1.0, ge=1, le=LAW_INTERACTION_MAX, description="the capacity term a and the "
                                   "data term b combine as (a^q + b^q)^(1/q): 1 adds them (Chinchilla's form); "
                                   "above 1 a model near its capacity gains less from more data, its curve "
                                   "flattening sooner (Kaplan et al. 2020's form is q = 1/alpha_D, about 10)")
    shape_exponent: float = Field(0.0, description="capacity counts N * (d_model/layers)^this: at one size, "
                                  "wider, shallower models reach lower loss (0: N alone)")
    aspect_range: tuple[float, float] = Field((1.0, 1e6), description="d_model/layers the shape effect was fitted "
                                              "on; outside it the nearest end is used, never extrapolated")
    anneal: float = Field(0.0, ge=0, le=1, description="share of reducible loss removed by full LR decay")
    bcrit: float = Field(0.0, ge=0, description="critical batch (tokens) at loss 1 nat; 0: no batch effect")
    bcrit_exponent: float = Field(1 / 0.21, ge=0, description="B_crit(L) = bcrit * L^-exponent (Kaplan: 1/0.21)")
    batch_reference_tokens: float = Field(0.0, ge=0, description="batch at which D counts fully (0: ideal D)")
    small_batch_exponent: float = Field(0.0, ge=0, le=SMALL_BATCH_EXPONENT_MAX,
                                        description="below B_crit a batch's tokens count x (reference / batch)^this "
                                        "(0: SGD at its best LR, every batch under B_crit alike; 1/2: Adam at a "
                                        "fixed LR where the gradient is mostly noise)")
    noise_tokens: float = Field(0.0, ge=0, description="gradient noise: at LR factor f, a batch of B tokens and a "
                                "loss L the reducible loss is x (1 + s / (1 + s)), s = noise_tokens * "
                                "L^-noise_exponent * f / B, "
                                "relative to the reference batch")
    noise_exponent: float = Field(0.0, ge=0, le=NOISE_EXPONENT_MAX,
                                  description="how the gradient noise's lift grows as the loss falls (0: the "
                                  "same at every loss; B_crit's exponent if noise and critical batch are one "
                                  "gradient noise scale)")
    frozen_exponent: float = Field(1.0, ge=0, description="a frozen phase's token efficiency at half the "
                                   "parameters trainable is 2 ** -this (frozen_form says how it goes elsewhere)")
    frozen_form: Literal["power", "saturating"] = Field(
        "power", description="a frozen phase's token efficiency in its trainable share s: 'power' s ** k; "
        "'saturating' s / (s + (2**k - 1)(1 - s)), the same at s = 1/2 and linear in s as s -> 0 (k: frozen_exponent)")
    bumps: dict[str, float] = Field(default_factory=dict, description="transient loss at a boundary, x reducible "
                                    "loss: 'unfreeze', 'reset' (fresh optimizer) or an operator (per new share)")
    transient_steps: float = Field(1.0, gt=0, description="decay time of the bumps (optimizer steps)")
    jumps: dict[str, float] = Field(default_factory=dict, description="loss jump per operator, per new share, x (L-E)")
    reset_jump: float = Field(0.0, ge=0, description="loss jump of a fresh optimizer, x (L-E)")
    lags: dict[str, float] = Field(default_factory=dict, description="learning deficit after growth per operator, "
                                   "per new share (meaning depends on the structure)")
    lag_tokens: float = Field(1.0, gt=0, description="how long the deficit lasts, in units of lag_clock")
    width_lag_scale: float = Field(1.0, gt=0, description="width growth's deficit lasts this many times longer "
                                   "than depth growth's (lag_tokens x this): a widened model's new neurons "
                                   "(copies, or fresh slices) must first grow apart from the old ones, where "
                                   "added blocks start learning at once (1: one time scale for every operator)")
    lag_clock: Literal["tokens_seen", "parameters"] = Field(
        "tokens_seen", description="the deficit's unit of time: 'tokens_seen' is the equivalent tokens at growth "
        "D_g (a model grown late takes longer to catch up), 'parameters' the grown model's non-embedding "
        "parameters (its time counted in tokens per parameter, however late it grew)")
    frozen_clock: Literal["ideal", "trained"] = Field(
        "ideal", description="how a frozen phase advances the growth deficit's clock: 'ideal' by its ideal tokens "
        "(discounted by frozen_efficiency, like the tokens it learns from), 'trained' by the tokens the trainable "
        "blocks see (undiscounted: the grown blocks, the ones behind, get all the training)")
    lag_size_slope: float = Field(0.0, description="lags change by this per e-fold of the size grown to: "
                                  "lag(N) = lags[op] + slope * ln(N / lag_reference_params), so growth can help "
                                  "small models (lag < 0: faster than from scratch) and cost large ones")
    lag_reference_params: float = Field(1e6, gt=0, description="non-embedding parameters at which lags are quoted")
    startup_tokens: float = Field(0.0, ge=0, description="start-up time of a one-layer model from scratch, in "
                                  "ideal tokens (0: none); see startup_capacity and startup_lost")
    startup_depth_exponent: float = Field(1.0, ge=0, description="the start-up scales as layers ** this")
    startup_width_exponent: float = Field(0.0, description="the start-up scales as (d_model / 64) ** this: at "
                                          "one learning rate a wider model's blocks move sooner (0: width-free)")
    startup_shape: float = Field(1.0, gt=0, description="'capacity' start-up's shape k: the unused share decays as "
                                 "exp(-(D/T)^k); 1 is exponential, above 1 the deeper blocks join late and fast")
    startup_form: Literal["capacity", "delay"] = Field(
        "capacity", description="'capacity': the parameters that count grow from one block's share to all of them "
        "as 1 - exp(-D/T); 'delay': tokens count at 1 - exp(-D/T)")
    startup_growth: Literal["escape", "inherit", "depth_escapes", "carry"] = Field(
        "escape", description="what growth does to a 'capacity' start-up: 'escape' ends it (the grown model uses "
        "all its parameters at once); 'inherit' continues it from the share in use, where fresh blocks start "
        "unused and copied or widened ones are as much in use as the blocks they came from; 'depth_escapes' "
        "ends it when growth adds depth and continues it when growth keeps the depth (width growth); 'carry' "
        "continues it from the share the old model had in use, fresh blocks included (growth cannot bring into "
        "use more of the model than its source had)")

    lr_limit: float = Field(0.0, ge=0, description="the peak LR at which half of the seeds of a one-layer model of "
                            "d_model 64 from scratch start slow (0: no limit, the peak LR is not read)")
    lr_limit_spread: float = Field(0.0, ge=0, description="how wide in log LR the band is where the seed decides: "
                                   "the share of seeds that start slow is Phi(ln(peak / limit) / this) (0: a sharp "
                                   "limit)")
    lr_limit_widths: tuple[float, float] = Field((0.0, 0.0), description="the d_model range a slow start is "
                                                 "predicted in: the widths the limit was measured on, reached "
                                                 "LR_LIMIT_WIDTH_REACH times further up (outside it the limit is "
                                                 "only noted; an upper end of 0: no upper end)")
    lr_limit_width_exponent: float = Field(0.0, ge=0, description="the limit falls as (d_model / 64) ** -this")
    lr_limit_depth_exponent: float = Field(0.0, ge=0, description="the limit falls as layers ** -this")
    lr_slow_share: float = Field(0.0, ge=0, le=1, description="at or above the limit a model from scratch first "
                                 "learns at 1 - this of its pace (the share of its tokens it loses at the start)")
    lr_slow_tokens: float = Field(0.0, ge=0, description="ideal tokens over which a slow start recovers its "
                                  "pace (it loses share x this ideal tokens in all), at every depth")
    lr_slow_grown: float = Field(0.0, ge=0, le=1, description="the share of a slow start a grown model pays when "
                                 "its new shape is above its LR limit, on a clock from its growth (0: growth skips "
                                 "it; 1: a grown model starts slow as one from scratch)")

    def bump(self, event: str) -> float:
        return self.bumps.get(event, 0.0)

    def jump(self, operator: str) -> float:
        # a function-preserving operator cannot cost a jump, by construction
        return self.jumps.get(operator, 0.0) if operator in JUMP_OPERATORS else 0.0

    def lag(self, operator: str, n_params: float | None = None) -> float:
        """The operator's lag per new share, at the size grown to (``n_params``)."""
        lag = self.lags.get(operator, 0.0)
        if n_params is None or self.lag_size_slope == 0 or operator not in self.lags:
            return lag
        return lag + self.lag_size_slope * math.log(n_params / self.lag_reference_params)

    def lag_scale(self, operator: str) -> float:
        """The operator's deficit time scale relative to ``lag_tokens``."""
        return self.width_lag_scale if operator in WIDTH_OPERATORS else 1.0


class LossProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params: LossParams
    samples: list[LossParams] = Field(default_factory=list, description="bootstrap fits, for intervals")
    residual_std: float = Field(0.0, ge=0, description="per-point error of held-out prediction (nats)")
    seed_std: float = Field(0.0, ge=0, description="seed-to-seed standard deviation of a final loss (nats)")
    seed_std_along: list[tuple[float, float]] = Field(
        default_factory=list, description="seed-to-seed standard deviation at shares of a run's tokens, "
        "[(share, nats), ...] by share, measured on repeated schedules: early in a run from scratch the loss "
        "depends on when the model leaves its first plateau, which varies with the seed far more than the "
        "final loss does (empty: seed_std throughout); for growth runs, and full training without its own table")
    seed_std_along_scratch: list[tuple[float, float]] = Field(
        default_factory=list, description="the same for full training, a model trained from scratch at its final "
        "depth, whose early plateau varies with the seed more than a growth run's shallow start does (empty: "
        "seed_std_along)")
    model_std: float | None = Field(None, ge=0, description="the model's own held-out error (nats): residual_std "
                                    "with the seed noise of the runs it was measured on taken out, since the "
                                    "interval adds the seed noise itself (None: residual_std is used as it is)")
    extrapolation_growth: float = Field(0.0, ge=0, description="relative growth of model_std per e-fold of "
                                        "non-embedding parameters and of depth outside the fitted domain, "
                                        "measured by holding out the largest size")
    law_rel_std: float = Field(0.0, ge=0, description="relative uncertainty of the reducible loss not in samples")
    growth_rel_std: float = Field(0.0, ge=0, description="held-out error of growth predictions relative to the "
                                  "reducible loss: carried with the growth parameters to a transferred law, where "
                                  "it widens the growth-against-full-training comparison")
    interval: float = Field(0.9, gt=0, lt=1)
    source: str = ""
    report: dict = Field(default_factory=dict)
    vocab_size: int | None = Field(None, description="the tokenizer it was fitted for, if specific")
    lr: float | None = Field(None, gt=0, description="peak learning rate of the runs it was fitted on")
    domain: dict[str, list[float]] = Field(default_factory=dict, description="fitted range: name -> [min, max] "
                                           "for non_embedding_params, tokens, flops_counted, layers")

    @property
    def shallowest_fitted_layers(self) -> int | None:
        """The fewest layers of any model it was fitted on (None: not recorded, as for a published
        law): the search keeps every stage at least this deep, and a prediction below it says so."""
        depths = self.domain.get("layers")
        return max(1, math.ceil(depths[0])) if depths else None

    def switched(self, **update) -> LossProfile:
        """The point fit with some parameters replaced and no bootstrap samples: what one
        term contributes to a point prediction, by predicting without it (``startup_tokens=0``:
        a model from scratch that uses all its depth at once)."""
        return self.model_copy(update={"params": self.params.model_copy(update=update), "samples": []})

    @field_validator("seed_std_along", "seed_std_along_scratch")
    @classmethod
    def _shares_increase(cls, table: list[tuple[float, float]], info: ValidationInfo) -> list[tuple[float, float]]:
        shares = [share for share, _ in table]
        if any(not 0 < share <= 1 for share in shares) or shares != sorted(set(shares)):
            raise ValueError(f"{info.field_name}: shares must increase, each in (0, 1]")
        if any(not std >= 0 for _, std in table):
            raise ValueError(f"{info.field_name}: standard deviations must be >= 0")
        return table


@dataclass(frozen=True)
class StagePlan:
    """What the loss model needs of a stage."""

    n_params: float  # non-embedding parameters
    tokens: float
    trainable_share: float  # trainable / total parameters of the stage
    operator: str  # how this stage's growth was made (ignored when the size is unchanged)
    reset_optimizer: bool
    lr: np.ndarray  # lr factor (lr / peak) at each step of the stage (or of equal slices of a long one)
    batch_tokens: float = 0.0  # tokens per optimizer step (0: no batch effect)
    steps: int = 0  # optimizer steps (0: one per lr entry)
    aspect: float = 0.0  # d_model / layers (0: unknown, the capacity is N alone)
    layers: int = 0  # blocks (0: unknown, no start-up delay)
    peak_lr: float = 0.0  # the schedule's peak LR (0: unknown, no LR limit)

    @property
    def n_steps(self) -> int:
        return self.steps or len(self.lr)


@dataclass(frozen=True)
class LossCurve:
    tokens: np.ndarray
    loss: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    stage: np.ndarray  # stage index of each point


def capacity(p: LossParams, n_params, aspect=0.0):
    """The parameter count the law's capacity term sees: N, scaled by the model's shape."""
    if not np.any(p.shape_exponent):
        return n_params
    aspect = np.clip(np.asarray(aspect, dtype=float), *p.aspect_range)
    return n_params * np.where(aspect > 0, aspect, 1.0) ** p.shape_exponent


def data_break_at(p: LossParams | FitStack, n_params) -> np.ndarray:
    """Where the data term breaks for a model of capacity ``n_params`` (inf: no break)."""
    moved = p.data_break_tokens * np.power(np.asarray(n_params, dtype=float) / DATA_BREAK_REFERENCE_PARAMS,
                                           p.data_break_size_exponent)
    return np.where(p.data_break_tokens > 0, moved, np.inf)


def data_term(p: LossParams | FitStack, tokens, n_params=DATA_BREAK_REFERENCE_PARAMS) -> np.ndarray:
    """The law's data term at ``tokens``: B (D + d0)^-beta, steepening to late_beta past
    the break (where a model of capacity ``n_params`` has it) when the profile has one."""
    offset = np.maximum(tokens + p.d0, 1.0)
    data_part = p.B / np.power(offset, p.beta)
    if not np.any(p.data_break_tokens > 0):
        return data_part
    return data_part * np.power(1 + offset / data_break_at(p, n_params), -(p.late_beta - p.beta))


def _data_inverse(p: LossParams | FitStack, data_part, n_params=DATA_BREAK_REFERENCE_PARAMS) -> np.ndarray:
    """Offset tokens (D + d0) at which ``data_term`` is ``data_part`` (> 0), elementwise."""
    log_ratio = np.log(p.B) - np.log(data_part)
    log_offset = log_ratio / p.beta  # the unbroken solution: at or right of the root
    if not np.any(p.data_break_tokens > 0):
        return np.exp(log_offset)
    breaks = data_break_at(p, n_params)
    steepening = p.late_beta - p.beta
    for _ in range(INVERSE_ITERATIONS):
        ratio = np.exp(log_offset) / breaks
        value = log_ratio - p.beta * log_offset - steepening * np.log1p(ratio)
        slope = -p.beta - steepening * ratio / (1 + ratio)
        step = value / slope
        log_offset = log_offset - step
        if np.all(np.abs(step) < 1e-12):
            break
    return np.exp(log_offset)


def reducible(p: LossParams, n_params, tokens) -> np.ndarray:
    capacity_part = p.A / np.power(n_params, p.alpha)
    data_part = data_term(p, tokens, n_params)
    if np.all(p.law_interaction == 1):
        return capacity_part + data_part
    q = p.law_interaction
    return np.power(np.power(capacity_part, q) + np.power(data_part, q), 1 / q)


def equivalent_tokens(p: LossParams | FitStack, n_params, loss_minus_e):
    """Tokens at which a model of ``n_params`` from scratch has reducible loss
    ``loss_minus_e`` (inf: at or below that size's limit), elementwise over fits and sizes."""
    capacity_part = p.A / np.power(n_params, p.alpha)
    if np.all(p.law_interaction == 1):
        data_part = loss_minus_e - capacity_part
    else:  # the inverse of reducible's combination: b = ((L - E)^q - a^q)^(1/q), 0 at or below the limit
        q = p.law_interaction
        left = np.power(np.maximum(loss_minus_e, 0.0), q) - np.power(capacity_part, q)
        data_part = np.power(np.maximum(left, 0.0), 1 / q)
    # a data part within float precision of nothing beside the capacity part is the limit
    # itself: a loss computed as the capacity part another way can differ in its last bit,
    # which would otherwise read as ~1e64 tokens rather than "never"
    data_part = np.where(data_part > 1e-12 * capacity_part, data_part, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.maximum(_data_inverse(p, np.where(data_part > 0, data_part, 1.0), n_params) - p.d0, 0.0)
    return np.where(data_part > 0, d, np.inf)


def startup_scale(p: LossParams, layers, aspect=0.0) -> np.ndarray:
    """Ideal tokens of a from-scratch model's start-up, at its depth and width (0: none;
    an unknown width, ``aspect`` 0, counts as the reference width)."""
    layers = np.asarray(layers, dtype=float)
    width = np.asarray(aspect, dtype=float) * layers
    width_factor = np.power(np.where(width > 0, width, STARTUP_WIDTH_REFERENCE) / STARTUP_WIDTH_REFERENCE,
                            p.startup_width_exponent)
    return np.where(layers > 0, p.startup_tokens * np.power(np.maximum(layers, 1.0), p.startup_depth_exponent)
                    * width_factor, 0.0)


def startup_lost(p: LossParams, layers, ideal, aspect=0.0) -> np.ndarray:
    """Ideal tokens a model trained from scratch has lost after ``ideal`` of them ('delay'
    start-up, always exponential: ``startup_shape`` is the 'capacity' form's): its tokens
    count at 1 - exp(-ideal / T) with T = ``startup_scale`` (depth and width), so
    a deep model starts slower than a shallow one of the same size (the real baselines
    do: d96 with 6 layers tracks d96 with 3 for the first ~3M tokens). Growth is what
    escapes it: a grown model inherits trained blocks and continues at its loss."""
    scale = startup_scale(p, layers, aspect)
    ideal = np.asarray(ideal, dtype=float)
    safe = np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, scale * -np.expm1(-ideal / safe), 0.0)


def startup_capacity(p: LossParams, layers, ideal, aspect=0.0) -> np.ndarray:
    """Share of its parameters a from-scratch model uses after ``ideal`` tokens ('capacity'
    start-up): one block's share at first, all of them as 1 - exp(-(ideal / T)^k). With
    k > 1 the unused share stays near (1 - 1/layers) for a while and then falls fast: in
    the corpus d48 with 4 layers is no better than with 2 halfway through its run and
    clearly better at its end, which an exponential (k = 1) cannot follow."""
    scale = startup_scale(p, layers, aspect)
    layers = np.maximum(np.asarray(layers, dtype=float), 1.0)
    elapsed = np.asarray(ideal, dtype=float) / np.where(scale > 0, scale, 1.0)
    share = 1 - (1 - 1 / layers) * np.exp(-np.power(np.maximum(elapsed, 0.0), p.startup_shape))
    return np.where(scale > 0, share, 1.0)


def _limit_width(layers, aspect) -> np.ndarray:
    """d_model of a shape for the LR limit (an unknown width counts as the reference width)."""
    width = np.asarray(aspect, dtype=float) * np.maximum(np.asarray(layers, dtype=float), 1.0)
    return np.where(width > 0, width, STARTUP_WIDTH_REFERENCE)


def lr_limit(p: LossParams, layers, aspect=0.0) -> np.ndarray:
    """The peak LR at which half of the seeds of a model of this depth and width from scratch
    start slow (inf: no limit; an unknown width counts as the reference width)."""
    layers = np.maximum(np.asarray(layers, dtype=float), 1.0)
    width = _limit_width(layers, aspect) / STARTUP_WIDTH_REFERENCE
    limit = p.lr_limit * np.power(width, -p.lr_limit_width_exponent) * np.power(layers, -p.lr_limit_depth_exponent)
    return np.where(limit > 0, limit, np.inf)


def lr_slow_probability(p: LossParams, over) -> np.ndarray:
    """The share of seeds that start slow at ``over`` times the limit: a probit in log LR."""
    from scipy.stats import norm

    log_over = np.log(np.maximum(np.asarray(over, dtype=float), 1e-300))
    if p.lr_limit_spread <= 0:
        return (log_over >= 0).astype(float)
    return norm.cdf(log_over / p.lr_limit_spread)


def lr_band(p: LossParams, interval: float = 0.9) -> float:
    """The factor either side of the limit within which each outcome has at least the
    interval's tail probability ((1 - interval) / 2): where the seed decides."""
    return math.exp(z_score(interval) * p.lr_limit_spread)


def lr_verdict(p: LossParams, over: float, interval: float = 0.9) -> str:
    """What the LR limit says of a model from scratch at ``over`` times it: 'slow' where the
    slow start is the likelier outcome and the other one is under the interval's tail, 'normal'
    the same way round, 'seed decides' between (``lr_band``)."""
    band = lr_band(p, interval)  # >= 1
    if over >= band:
        return "slow"
    return "normal" if over < 1 / band else "seed decides"


def lr_slow_share(p: LossParams, layers, aspect=0.0, peak=0.0) -> np.ndarray:
    """The share of its pace a model from scratch loses at the start at this peak LR: all of
    ``lr_slow_share`` at or above its limit (the likelier outcome there), none below, and none
    at a width outside ``lr_limit_widths`` (where the limit is not known)."""
    over = np.maximum(np.asarray(peak, dtype=float), 0.0) / lr_limit(p, layers, aspect)
    return np.where((over >= 1) & lr_limit_known(p, layers, aspect), p.lr_slow_share, 0.0)


def lr_limit_known(p: LossParams, layers, aspect=0.0) -> np.ndarray:
    """Whether a shape's width is in ``lr_limit_widths``, where a slow start is predicted (an
    unknown width counts as the reference width)."""
    width = _limit_width(layers, aspect)
    low, high = p.lr_limit_widths
    return (width >= low) & (width <= np.where(np.asarray(high) > 0, high, np.inf))


def lr_branches(p: LossParams, interval: float = 0.9) -> tuple[LossParams, LossParams]:
    """The point fit with the limit moved so that a shape starts slow where that outcome has at
    least the interval's tail probability (the pessimistic branch), and only where the other
    has less (the optimistic one): a prediction's interval covers both."""
    band = lr_band(p, interval)
    return (p.model_copy(update={"lr_limit": p.lr_limit / band}),
            p.model_copy(update={"lr_limit": p.lr_limit * band}))


def lr_slow_lost(p: LossParams, layers, ideal, aspect=0.0, peak=0.0) -> np.ndarray:
    """Ideal tokens a model trained from scratch above its LR limit has lost after ``ideal``
    of them: it first learns at 1 - ``lr_slow_share`` of its pace and recovers over
    ``lr_slow_tokens`` ideal tokens. In the runs a model at a peak LR too high for its
    width and depth (d96 L6 at 4e-3, d64 L8 at 4e-3, d192 L6 at 2e-3) needs about twice the
    tokens its curve says to reach a loss for the first 1.6M tokens, and recovers part of
    that after, where one under its limit stays on its curve. A grown model above its new
    shape's limit pays ``lr_slow_grown`` of it, on a clock from its growth."""
    lost_share = lr_slow_share(p, layers, aspect, peak)
    # one recovery time at every depth: the slow runs of 2 to 8 layers were at about 0.5 of
    # their curve's tokens at 1.64M and 0.56-0.89 at 3.28M alike
    scale = p.lr_slow_tokens * np.ones_like(np.asarray(layers, dtype=float))
    safe = np.where(scale > 0, scale, 1.0)
    return np.where(scale > 0, lost_share * scale * -np.expm1(-np.asarray(ideal, dtype=float) / safe), 0.0)


def deficit_rate(p: LossParams, share: float):
    """How far the growth deficit's clock moves per ideal token in a phase with a ``share``
    of the parameters trainable (1 when all are)."""
    return 1.0 / frozen_efficiency(p, share) if p.frozen_clock == "trained" else 1.0


def frozen_efficiency(p: LossParams, share: float):
    """How much a token trained with a ``share`` of the parameters trainable counts."""
    if p.frozen_form == "saturating":
        return share / (share + (2.0**p.frozen_exponent - 1) * (1 - share))
    return share**p.frozen_exponent


def batch_efficiency(p: LossParams, batch_tokens, loss):
    """Share of a step's tokens that make progress at this batch and loss."""
    if not np.any(p.bcrit > 0):
        return np.ones_like(np.asarray(loss, dtype=float))
    critical = np.maximum(p.bcrit * np.power(np.maximum(loss, 1e-3), -p.bcrit_exponent), 1e-300)
    batch_tokens = np.maximum(np.asarray(batch_tokens, dtype=float), 1.0)
    mccandlish = (1 + p.batch_reference_tokens / critical) / (1 + batch_tokens / critical)
    g = p.small_batch_exponent
    pivot = np.where(np.asarray(p.batch_reference_tokens) > 0, p.batch_reference_tokens, BATCH_PIVOT_TOKENS)
    efficiency = np.power(pivot / batch_tokens, g) * np.power(mccandlish, 1 - g)
    return np.where(p.bcrit > 0, efficiency, 1.0)


def noise_factor(p: LossParams, batch_tokens, lr_factor=1.0, loss=1.0):
    """How much gradient noise lifts the reducible loss at this batch, LR and loss without
    it (relative to the batch a published law was measured at): small steps at a high LR
    settle higher, the more so the lower the loss, and decaying the LR removes it."""
    if not np.any(p.noise_tokens > 0):
        return np.ones_like(np.asarray(batch_tokens, dtype=float) * lr_factor * loss)
    batch_tokens = np.maximum(np.asarray(batch_tokens, dtype=float), 1.0)
    scale = p.noise_tokens * np.power(np.maximum(loss, 1e-3), -p.noise_exponent)

    def lifted(s):  # s for small s; saturating, so the loss still falls as training lowers L
        return 1 + s / (1 + s)

    known = np.asarray(p.batch_reference_tokens) > 0
    reference = np.where(known, lifted(scale / np.where(known, p.batch_reference_tokens, 1.0)), 1.0)
    return lifted(scale * np.asarray(lr_factor) / batch_tokens) / reference


# --- growth structures ------------------------------------------------------------------

@dataclass(frozen=True)
class GrowthState:
    """Where a run stands between steps: its size, equivalent tokens, and the deficit
    left by the last growth."""

    n_params: float
    d: float  # equivalent (ideal) tokens at the start of the current stage
    lag: float = 0.0  # deficit at the last growth (structure's meaning)
    d_growth: float = 1.0  # the deficit's unit of time in ideal tokens (deficit_time_unit), set at the last growth
    since: float = 0.0  # ideal tokens since the last growth, at the start of the current stage


def deficit_time_unit(p: LossParams, d, n_new: float):
    """The deficit's unit of time after growing to ``n_new`` parameters with ``d``
    equivalent tokens, in ideal tokens (``lag_tokens`` of them is its time scale)."""
    if p.lag_clock == "parameters":
        return np.zeros_like(np.asarray(d, dtype=float)) + n_new
    return np.maximum(d + p.d0, 1.0)


class GrowthStructure(ABC):
    """How a grown model learns after growing. ``along`` maps ideal tokens ``s`` since
    the start of the current stage to (effective parameters, equivalent tokens)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    fitted: ClassVar[tuple[str, ...]] = ()  # LossParams fields it adds to the fit
    lag_bounds: ClassVar[tuple[float, float]] = (0.0, 0.0)

    @abstractmethod
    def along(self, p: LossParams, state: GrowthState, s: np.ndarray, rate=1.0) -> tuple[np.ndarray, np.ndarray]:
        """``rate``: how fast the deficit's clock runs per ideal token in this stage (``deficit_rate``)."""

    max_lag: ClassVar[float] = 0.99  # a deficit never stops learning altogether

    def grown(self, p: LossParams, state: GrowthState, n_new: float, operator: str, loss_minus_e: float,
              end_since: float, in_use=1.0) -> GrowthState:
        """State after growing to ``n_new`` (its loss, jumps included, is ``loss_minus_e``;
        ``in_use``: the share of its parameters a start-up lets count at that point)."""
        share = 1 - state.n_params / n_new
        remaining = self.remaining(p, state, end_since)
        lag = np.minimum(p.lag(operator, n_new) * share + remaining * (1 - share), self.max_lag)
        d = equivalent_tokens(p, n_new * in_use, loss_minus_e)
        unit = deficit_time_unit(p, d, n_new) * p.lag_scale(operator)
        return GrowthState(n_params=n_new, d=d, lag=lag, d_growth=unit, since=0.0)

    def remaining(self, p: LossParams, state: GrowthState, since: float) -> float:
        return state.lag

    def continued(self, p: LossParams, state: GrowthState, loss_minus_e: float, end_since: float,
                  in_use=1.0) -> GrowthState:
        """State at a boundary without growth (the loss may have jumped)."""
        return replace(state, d=equivalent_tokens(p, state.n_params * in_use, loss_minus_e), since=end_since)


class Equivalent(GrowthStructure):
    name = "equivalent"
    summary = "the grown model learns like a from-scratch model of its size at the same loss"

    def along(self, p, state, s, rate=1.0):
        return np.zeros_like(s) + state.n_params, state.d + s


class Fading(GrowthStructure):
    name = "fading"
    summary = "after growth tokens count at 1 - lag*exp(-s/(lag_tokens*D_g)): a deficit that fades"
    fitted = ("lags", "lag_tokens")
    # per share of new parameters; the deficit itself is capped at max_lag. Never below 0: a
    # grown model does not learn faster than a from-scratch model of its size at the same
    # loss. Lags below 0 were how fits without the start-up term explained the deep
    # baselines' slow start; with it only stack_copy went negative, to the bound, and the
    # search then chained stacking steps into predicted gains that training refuted
    lag_bounds = (0.0, 4.0)

    def along(self, p, state, s, rate=1.0):
        scale = p.lag_tokens * state.d_growth
        lost = state.lag * scale * (np.exp(-state.since / scale) - np.exp(-(state.since + rate * s) / scale)) / rate
        return np.zeros_like(s) + state.n_params, state.d + s - lost

    def remaining(self, p, state, since):
        return state.lag * np.exp(-since / (p.lag_tokens * state.d_growth))


class Lingering(Fading):
    name = "lingering"
    summary = "after growth tokens count at 1 - lag/(1 + s/(lag_tokens*D_g)): a deficit that fades ever more slowly"
    # Fading's exponential leaves a fit two choices: a deficit gone within a few D_g (no late
    # crossover) or one that never fades (too large a gap late in long runs). A hyperbolic
    # decay is both: most of the deficit early, a tail that outlasts any single time scale.

    def along(self, p, state, s, rate=1.0):
        scale = p.lag_tokens * state.d_growth
        lost = state.lag * scale * (np.log1p((state.since + rate * s) / scale) - np.log1p(state.since / scale)) / rate
        return np.zeros_like(s) + state.n_params, state.d + s - lost

    def remaining(self, p, state, since):
        return state.lag / (1 + since / (p.lag_tokens * state.d_growth))


class Multiplier(GrowthStructure):
    name = "multiplier"
    summary = "after growth tokens count at 1 - lag for the rest of the run"
    fitted = ("lags",)
    lag_bounds = (-2.0, 4.0)
    max_lag = 0.95

    def along(self, p, state, s, rate=1.0):
        return np.zeros_like(s) + state.n_params, state.d + s * (1 - state.lag)


class GrowInto(GrowthStructure):
    name = "grow_into"
    summary = "the new parameters start contributing nothing (share lag) and grow in over lag_tokens*D_g"
    fitted = ("lags", "lag_tokens")
    lag_bounds = (0.0, 1.0)

    def _n_eff(self, p, state, since):
        gap = state.lag * state.n_params * np.exp(-since / (p.lag_tokens * state.d_growth))
        return state.n_params - gap

    def along(self, p, state, s, rate=1.0):
        return self._n_eff(p, state, state.since + rate * s), state.d + s

    def remaining(self, p, state, since):
        return state.lag * np.exp(-since / (p.lag_tokens * state.d_growth))

    def grown(self, p, state, n_new, operator, loss_minus_e, end_since, in_use=1.0):
        old_gap = self.remaining(p, state, end_since) * state.n_params  # parameters not yet contributing
        gap = p.lag(operator, n_new) * (n_new - state.n_params) + old_gap
        lag = np.minimum(gap / n_new, 0.999)
        n_eff = n_new * (1 - lag) * in_use
        d = equivalent_tokens(p, n_eff, loss_minus_e)
        unit = deficit_time_unit(p, d, n_new) * p.lag_scale(operator)
        return GrowthState(n_params=n_new, d=d, lag=lag, d_growth=unit, since=0.0)

    def continued(self, p, state, loss_minus_e, end_since, in_use=1.0):
        n_eff = self._n_eff(p, state, end_since) * in_use
        return replace(state, d=equivalent_tokens(p, n_eff, loss_minus_e), since=end_since)


STRUCTURES: dict[str, GrowthStructure] = {s.name: s for s in (Equivalent(), Fading(), Lingering(), Multiplier(),
                                                                   GrowInto())}


def structure_of(p: LossParams) -> GrowthStructure:
    try:
        return STRUCTURES[p.structure]
    except KeyError:
        raise SpecError(f"unknown loss-model structure {p.structure!r}; use one of {', '.join(STRUCTURES)}") from None


# --- trajectories -----------------------------------------------------------------------

def _chunk_end(k: int) -> int:
    return BATCH_CHUNK_GROWTH**k - 1


def _chunks(n: int) -> list[tuple[int, int]]:
    """Step ranges over which the batch efficiency is held (it changes as the loss falls,
    fastest at first): 0, 3, 15, 63, ... then the rest."""
    edges = sorted({0, n} | {min(n, _chunk_end(k)) for k in range(1, MAX_BATCH_CHUNKS)})
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class FitStack:
    """Several fits of one growth structure at once (a profile's point fit and its
    bootstrap samples): every number of ``LossParams`` a column with one row per fit, so
    one ``trajectory`` follows them all (an interval costs one pass, not one per fit)."""

    def __init__(self, fits: list[LossParams]):
        first = fits[0]
        kinds = ("structure", "startup_form", "startup_growth", "lag_clock", "frozen_form", "frozen_clock")
        if any(getattr(f, k) != getattr(first, k) for f in fits for k in kinds):
            raise ValueError(f"a FitStack holds fits that agree on {', '.join(kinds)}")
        self.fits, self.size = fits, len(fits)
        for kind in kinds:
            setattr(self, kind, getattr(first, kind))
        for name in LossParams.model_fields:
            if isinstance(getattr(first, name), float | int):
                setattr(self, name, self._column([getattr(f, name) for f in fits]))
        self.aspect_range = tuple(self._column([f.aspect_range[i] for f in fits]) for i in (0, 1))
        self.lr_limit_widths = tuple(self._column([f.lr_limit_widths[i] for f in fits]) for i in (0, 1))

    @staticmethod
    def _column(values) -> np.ndarray:
        return np.asarray(values, dtype=float).reshape(-1, 1)

    def bump(self, event: str) -> np.ndarray:
        return self._column([f.bump(event) for f in self.fits])

    def jump(self, operator: str) -> np.ndarray:
        return self._column([f.jump(operator) for f in self.fits])

    def lag_scale(self, operator: str) -> np.ndarray:
        return self._column([f.lag_scale(operator) for f in self.fits])

    def lag(self, operator: str, n_params=None) -> np.ndarray:
        if n_params is None:
            return self._column([f.lag(operator) for f in self.fits])
        sizes = np.broadcast_to(n_params, (self.size, 1))[:, 0]
        return self._column([f.lag(operator, float(n)) for f, n in zip(self.fits, sizes)])


def _after_startup(p: LossParams, layers, scratch, ideal: np.ndarray, aspect=0.0, peak=0.0, since=None,
                   pay=1.0) -> np.ndarray:
    """Ideal tokens less what a 'delay' start-up and a slow start above the LR limit lose
    over them (``scratch``: ideal tokens before them while the model has not grown, None
    after growth; a depth of 0: unknown, no start-up; ``peak``: the peak LR, 0 unknown;
    ``since``: ideal tokens before them since the model's last growth, or its start;
    ``pay``: the share of a slow start this model pays, 1 from scratch). Trajectories and
    the planner's full-training grid both go through here."""
    after = ideal
    if scratch is not None and np.any(p.startup_tokens > 0) and p.startup_form == "delay":
        after = after - (startup_lost(p, layers, scratch + ideal, aspect) - startup_lost(p, layers, scratch, aspect))
    # a profile with no limit, or one that only names it (--lr-limit-only), skips this on the hot path
    if since is not None and np.any(p.lr_limit > 0) and np.any(p.lr_slow_share > 0) and np.any(np.asarray(peak) > 0) \
            and np.any(pay > 0):
        after = after - pay * (lr_slow_lost(p, layers, since + ideal, aspect, peak)
                               - lr_slow_lost(p, layers, since, aspect, peak))
    return after


def _startup_share(p: LossParams, layers, scratch, ideal: np.ndarray, aspect=0.0) -> np.ndarray | float:
    """Share of a from-scratch model's parameters a 'capacity' start-up lets count."""
    if scratch is None or not np.any(p.startup_tokens > 0) or p.startup_form != "capacity":
        return 1.0
    return startup_capacity(p, layers, scratch + ideal, aspect)


def _startup_after_growth(p: LossParams, old: StagePlan, new: StagePlan, age):
    """The grown model's start-up age (ideal tokens), or None when growth ends the start-up.
    With ``startup_growth: inherit`` the grown model continues a from-scratch model's
    start-up at its new depth from the age at which that model had as much of itself
    unused: its fresh blocks are unused, copied and widened blocks as much in use as
    those they came from. A grown model therefore skips the part of the start-up its
    trained blocks have done, and no more. With ``depth_escapes`` only growth that keeps
    the depth continues it: a widened model has the same blocks to bring into use as
    before, while added depth ends it as with ``escape``. With ``carry`` every growth
    continues it from the old model's share in use, fresh blocks counted as in use as the
    rest: growth from a model still in its own start-up (early growth) cannot skip more of
    the deeper model's start-up than the source had done, and growth from one past it
    ends it, as ``escape`` does."""
    if age is None or p.startup_growth == "escape" or p.startup_form != "capacity" or new.layers <= 0 \
            or not np.any(p.startup_tokens > 0):
        return None
    if p.startup_growth == "depth_escapes" and new.layers != old.layers:
        return None
    in_use = startup_capacity(p, old.layers, age, old.aspect)  # share of the old model's parameters
    fresh = p.startup_growth == "inherit" and new.operator in OPERATORS and OPERATORS[new.operator].fresh_blocks
    unused = 1 - in_use * (old.n_params / new.n_params if fresh else 1.0)
    at_start = 1 - 1 / max(new.layers, 1)  # a from-scratch model's unused share before any token
    elapsed = np.log(np.maximum(at_start / np.maximum(unused, 1e-12), 1.0))  # (age / T)^k
    return startup_scale(p, new.layers, new.aspect) * np.power(elapsed, 1 / p.startup_shape)


def trajectory(p: LossParams | FitStack, plans: list[StagePlan], points_per_stage: int = 16,
               at_tokens: np.ndarray | None = None, after_boundary: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, loss, stage index) along a schedule, at ``points_per_stage`` points per
    stage (always including its last step) or at the cumulative token counts ``at_tokens``.
    With ``after_boundary``, a point exactly at a stage boundary is the next stage's start
    (grown, before its first step), as a trainer that evaluates on entering a stage sees it.
    For a ``FitStack`` the loss has one row per fit (every fit at the same points)."""
    structure = structure_of(p)
    rows = p.size if isinstance(p, FitStack) else 1
    tokens_out, loss_out, stage_out = [], [], []
    state: GrowthState | None = None
    column = np.zeros((rows, 1))  # numbers carried between stages: one per fit
    end_n_eff, end_d, end_since = column, column, column
    done = 0.0
    scratch = column  # ideal tokens since the start while the model has not grown (None after)
    since = column  # ideal tokens since the model last grew (or started): a slow start's clock
    pay = 1.0  # the share of a slow start above the LR limit this model pays: all from scratch
    previous: StagePlan | None = None
    last = len(plans) - 1
    for index, plan in enumerate(plans):
        bump = column
        n_cap = capacity(p, plan.n_params, plan.aspect)
        if state is None:
            state = GrowthState(n_params=n_cap, d=0.0)
        else:
            current = reducible(p, end_n_eff, end_d)
            grows = plan.n_params != previous.n_params
            share = 1 - previous.n_params / plan.n_params
            if grows:
                current = current * (1 + p.jump(plan.operator) * share)
                bump = bump + p.bump(plan.operator) * share
            if plan.reset_optimizer:
                current = current * (1 + p.reset_jump)
                bump = bump + p.bump("reset")
            state = replace(state, since=end_since)
            if grows:
                since, pay = column, p.lr_slow_grown
                scratch = _startup_after_growth(p, previous, plan, scratch)
                state = structure.grown(p, state, n_cap, plan.operator, current, end_since,
                                        _startup_share(p, plan.layers, scratch, column, plan.aspect))
            else:
                state = structure.continued(p, state, current, end_since,
                                            _startup_share(p, plan.layers, scratch, column, plan.aspect))
                if plan.trainable_share > previous.trainable_share:
                    bump = bump + p.bump("unfreeze")
            bump = bump * current
        slices = len(plan.lr)
        steps_per_slice = plan.n_steps / slices
        per_slice = plan.tokens / slices
        base = np.broadcast_to(plan.lr * per_slice * frozen_efficiency(p, plan.trainable_share), (rows, slices))
        rate = deficit_rate(p, plan.trainable_share)
        if np.any(p.bcrit > 0) and plan.batch_tokens > 0:
            ideal = np.empty((rows, slices))
            before = column
            for a, b in _chunks(slices):
                n_eff, d = structure.along(p, state, _after_startup(p, plan.layers, scratch, before, plan.aspect,
                                                                    plan.peak_lr, since, pay), rate)
                n_eff = _startup_share(p, plan.layers, scratch, before, plan.aspect) * n_eff
                loss_now = p.E + reducible(p, n_eff, d)
                ideal[:, a:b] = before + np.cumsum(base[:, a:b], axis=1) * batch_efficiency(p, plan.batch_tokens,
                                                                                            loss_now)
                before = ideal[:, b - 1:b]
        else:
            ideal = np.cumsum(base, axis=1)
        # slice k ends after k+1 slices; index -1 is the stage's start, before any step
        ideal = np.concatenate([column, ideal], axis=1)
        decay = np.concatenate([[0.0], np.where(np.arange(slices) >= np.argmax(plan.lr), 1 - plan.lr, 0.0)])
        if at_tokens is None:
            picks = np.unique(np.linspace(slices - 1, 0, min(points_per_stage, slices)).round().astype(int))
        else:
            tol = 1e-9 * (done + plan.tokens)
            start_ok = at_tokens >= done - tol if after_boundary and index else at_tokens > done + tol
            through_end = not after_boundary or index == last  # this stage owns its end point
            end_ok = at_tokens <= done + plan.tokens + tol if through_end else at_tokens < done + plan.tokens - tol
            inside = start_ok & end_ok
            local = at_tokens[inside] - done
            picks = np.clip(np.ceil(local / per_slice - 1e-9).astype(int) - 1, -1, slices - 1)
        # the model is evaluated where it is read: at the picked points and the stage's end
        wanted = np.concatenate([picks + 1, [slices]])
        n_eff, d = structure.along(p, state, _after_startup(p, plan.layers, scratch, ideal[:, wanted], plan.aspect,
                                                            plan.peak_lr, since, pay), rate)
        n_eff = _startup_share(p, plan.layers, scratch, ideal[:, wanted], plan.aspect) * n_eff
        loss = p.E + reducible(p, n_eff[:, :-1], d[:, :-1]) * (1 - p.anneal * decay[picks + 1])
        if np.any(p.noise_tokens > 0) and plan.batch_tokens > 0:
            loss = p.E + (loss - p.E) * noise_factor(p, plan.batch_tokens, plan.lr[np.maximum(picks, 0)], loss)
        if np.any(bump):
            loss = loss + bump * np.exp(-(picks + 1) * steps_per_slice / p.transient_steps)
        tokens_out.append(done + (picks + 1) * per_slice)
        loss_out.append(loss)
        stage_out.append(np.full(len(picks), index))
        end_n_eff, end_d, end_since = n_eff[:, -1:], d[:, -1:], state.since + rate * ideal[:, -1:]
        if scratch is not None:
            scratch = scratch + ideal[:, -1:]
        since = since + ideal[:, -1:]
        done += plan.tokens
        previous = plan
    loss = np.concatenate(loss_out, axis=1)
    return np.concatenate(tokens_out), loss if isinstance(p, FitStack) else loss[0], np.concatenate(stage_out)


def full_training_loss(p: LossParams, n_params, tokens, batch_tokens, aspect=0.0, layers=0, peak=0.0) -> np.ndarray:
    """Final loss of full training at constant LR, vectorised over shapes: the law at the
    ideal tokens the batch efficiency, the start-up and a peak LR (``peak``, 0: not read)
    above the shape's limit leave (the same chunks as ``trajectory``)."""
    n_params, tokens, batch_tokens, aspect, layers, peak = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (n_params, tokens, batch_tokens, aspect, layers, peak)))
    n_params = capacity(p, n_params, aspect)

    def started(ideal):  # from scratch: nothing before these tokens
        return _after_startup(p, layers, 0.0, ideal, aspect, peak, since=0.0)

    def used(ideal):
        return n_params * _startup_share(p, layers, 0.0, ideal, aspect)

    def noisy(ideal):
        reducible_loss = reducible(p, used(ideal), started(ideal))
        return p.E + reducible_loss * noise_factor(p, batch_tokens, 1.0, p.E + reducible_loss)

    if p.bcrit <= 0:
        return noisy(tokens)
    steps = np.maximum(np.round(tokens / np.maximum(batch_tokens, 1.0)), 1.0)
    ideal = np.zeros_like(tokens)
    start = np.zeros_like(tokens)
    for k in range(1, 64):
        end = np.minimum(steps, float(_chunk_end(k)) if k < MAX_BATCH_CHUNKS else steps)
        loss_now = p.E + reducible(p, used(ideal), started(ideal))
        ideal = ideal + (end - start) * batch_tokens * batch_efficiency(p, batch_tokens, loss_now)
        start = end
        if np.all(start >= steps):
            break
    return noisy(ideal)


def stage_plans(spec: ScheduleSpec, steps: list[int] | None = None) -> list[StagePlan]:
    """The loss model's view of a spec (``steps``: the steps actually run per stage)."""
    from costsim.engine import stage_shape, steps_per_stage
    from costsim.flops import parameter_counts

    shape = stage_shape(spec)
    counts = parameter_counts(shape)
    steps = steps or steps_per_stage(spec)
    t = spec.training
    total_steps = sum(steps)
    batch_tokens = float(t.batch_size * spec.model.seq_len)
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
            tokens=float(n * batch_tokens),
            trainable_share=float(counts.trainable[i] / counts.total[i]),
            operator=_operator(spec, i),
            reset_optimizer=stage.reset_optimizer,
            lr=np.atleast_1d(lr) / t.lr_schedule.lr,
            batch_tokens=batch_tokens,
            steps=n,
            aspect=spec.stage_width(stage)[0] / stage.layers,
            layers=stage.layers,
            peak_lr=float(t.lr_schedule.lr),
        ))
        start += n
    return plans


def _operator(spec: ScheduleSpec, index: int) -> str:
    if index == 0:
        return "none"
    depth, width = spec.growth_operators(index)
    prev, cur = spec.stages[index - 1], spec.stages[index]
    return width if spec.stage_width(prev) != spec.stage_width(cur) else depth


def z_score(interval: float) -> float:
    if abs(interval - 0.9) < 1e-12:
        return 1.6448536269514722
    from scipy.stats import norm

    return float(norm.ppf(0.5 + interval / 2))


_STACKS: dict[int, tuple[LossProfile, FitStack]] = {}


def fit_stack(profile: LossProfile) -> FitStack:
    """The profile's point fit (row 0) and bootstrap samples as one ``FitStack``, built
    once per profile (a search predicts with one profile thousands of times)."""
    cached = _STACKS.get(id(profile))
    if cached is None or cached[0] is not profile:
        if len(_STACKS) > 64:
            _STACKS.clear()
        cached = _STACKS[id(profile)] = (profile, FitStack([profile.params, *profile.samples]))
    return cached[1]


def predict(profile: LossProfile, plans: list[StagePlan], points_per_stage: int = 16,
            at_tokens: np.ndarray | None = None, after_boundary: bool = False) -> LossCurve:
    """Point prediction with a prediction interval: the bootstrap spread of the fit (law
    and growth parameters) plus the held-out error, the seed noise and any stated law
    uncertainty, added as independent normal parts."""
    p = profile.params
    if profile.samples:
        tokens, every, stage = trajectory(fit_stack(profile), plans, points_per_stage, at_tokens, after_boundary)
        loss, sampled = every[0], every[1:]
        q = (1 - profile.interval) / 2
        lo, hi = np.quantile(sampled, [q, 1 - q], axis=0)
    else:
        tokens, loss, stage = trajectory(p, plans, points_per_stage, at_tokens, after_boundary)
        lo = hi = loss
    from_scratch = len({plan.n_params for plan in plans}) == 1  # full training: no stage grows the model
    seed = seed_std_at(profile, tokens / max(sum(plan.tokens for plan in plans), 1.0), from_scratch)
    model = model_error(profile, max(plan.n_params for plan in plans), max(plan.layers for plan in plans))
    spread = np.sqrt(model**2 + seed**2 + (profile.law_rel_std * (loss - p.E))**2)
    lower, upper = widened(loss, lo, hi, z_score(profile.interval) * spread)
    for branch in seed_decided_branches(profile, plans):  # the other outcome, where the seed decides
        other = trajectory(branch, plans, points_per_stage, at_tokens, after_boundary)[1]
        lower, upper = np.minimum(lower, lower + other - loss), np.maximum(upper, upper + other - loss)
    return LossCurve(tokens=tokens, loss=loss, lower=lower, upper=upper, stage=stage)


def seed_decided_branches(profile: LossProfile, plans: list[StagePlan]) -> tuple[LossParams, ...]:
    """``lr_branches`` of the point fit where a stage's shape is in the band where the seed
    decides whether it starts slow (none elsewhere: the likelier outcome is the only one the
    interval needs)."""
    p = profile.params
    if p.lr_limit <= 0 or p.lr_slow_share <= 0 or p.lr_limit_spread <= 0:
        return ()
    band = lr_band(p, profile.interval)
    overs = [plan.peak_lr / float(lr_limit(p, plan.layers, plan.aspect)) for plan in plans
             if plan.peak_lr > 0 and lr_limit_known(p, plan.layers, plan.aspect)]
    return lr_branches(p, profile.interval) if any(1 / band < over < band for over in overs) else ()


def widened(value, lo, hi, noise):
    """An interval around ``value`` from the fit's bootstrap quantiles ``lo``/``hi`` and a
    half-width ``noise`` (the same coverage) of the parts the bootstrap does not hold,
    combined as the independent normal parts they are: each side's half-widths add in
    quadrature. Added end to end, an interval as wide as the fit's spread and the noise
    together would cover far more than it says."""
    below = np.maximum(np.asarray(value) - lo, 0.0)
    above = np.maximum(hi - np.asarray(value), 0.0)
    return value - np.hypot(below, noise), value + np.hypot(above, noise)


def seed_std_at(profile: LossProfile, share, from_scratch: bool = False) -> np.ndarray:
    """Seed noise at ``share`` of a run's tokens (``seed_std_in``, for a profile): full
    training's (``from_scratch``) table where the profile has one."""
    return seed_std_in(seed_table(profile.seed_std_along, profile.seed_std_along_scratch, from_scratch),
                       profile.seed_std, share)


def seed_table(along: list[tuple[float, float]], along_scratch: list[tuple[float, float]],
               from_scratch: bool) -> list[tuple[float, float]]:
    """Which seed-noise table a run uses: full training's where there is one."""
    return along_scratch if from_scratch and along_scratch else along


def seed_std_in(table: list[tuple[float, float]], final_std: float, share) -> np.ndarray:
    """Seed noise at ``share`` of a run's tokens: the measured table (linear between its
    shares, its first value before them), never below the final loss's."""
    share = np.asarray(share, dtype=float)
    if not table:
        return np.full_like(share, final_std)
    shares, stds = zip(*table)
    return np.maximum(np.interp(share, shares, stds), final_std)


def efolds_outside(domain: dict[str, list[float]], n_params: float, layers: int) -> float:
    """How far a model lies outside a fitted domain: e-folds beyond its range of
    non-embedding parameters plus e-folds beyond its range of depths (0 inside both, or
    where the domain does not record the range)."""
    distance = 0.0
    for key, value in (("non_embedding_params", n_params), ("layers", layers)):
        if key in domain and value > 0:
            lo, hi = domain[key]
            distance += max(0.0, math.log(value / hi), math.log(lo / value))
    return distance


def model_error(profile: LossProfile, n_params: float, layers: int) -> float:
    """The model's own error for a schedule whose largest stage has ``n_params`` and
    ``layers``: the held-out error without seed noise, growing linearly with the e-folds
    the schedule lies outside the fitted domain (``residual_std`` for a profile that does
    not separate the two)."""
    if profile.model_std is None:
        return profile.residual_std
    outside = efolds_outside(profile.domain, n_params, layers)
    return profile.model_std * (1 + profile.extrapolation_growth * outside)


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
    stage: np.ndarray


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
        loss=curve.loss, lower=curve.lower, upper=curve.upper, stage=curve.stage)


# --- profiles ---------------------------------------------------------------------------

@cache
def loss_profile_names() -> tuple[str, ...]:
    return shipped_names("loss")


DEFAULT_LOSS_PROFILE = "chinchilla"


@cache
def load_loss_profile(name_or_path: str = DEFAULT_LOSS_PROFILE) -> LossProfile:
    if name_or_path in loss_profile_names():
        text = shipped_text("loss", name_or_path)
    elif Path(name_or_path).is_file():
        text = Path(name_or_path).read_text()
    else:
        raise SpecError(f"unknown loss profile {name_or_path!r}; use one of {', '.join(loss_profile_names())} "
                        "or a profile .json path (python -m costsim.fit writes one)")
    try:
        profile = LossProfile.model_validate(json.loads(text))
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise SpecError(f"loss profile {name_or_path!r} is not a valid profile ({first}); "
                        "write one with python -m costsim.fit") from None
    structure_of(profile.params)
    return profile
