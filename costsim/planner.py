"""Candidate schedules for a budget: build them from a few numbers, cost them, predict their loss.

A candidate is described by a handful of parameters (final size, number of stages,
where growth starts, the token share spent growing, freeze phases, operator, batch);
``build`` turns them into a full ScheduleSpec whose token counts spend the budget
exactly (rounded down to whole steps, so a candidate never exceeds it), with the
largest micro-batch (and recompute only if needed) that fits the GPU. ``evaluate``
predicts its final loss with an interval and its costs. The search (costsim.search)
only draws parameters; everything it knows about a schedule comes from here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from costsim.constants import COMPUTE_BYTES, LIMITS, MEMORY_HEADROOM, SECONDS_PER_HOUR
from costsim.engine import divisors, estimate_many, spec_layout, stage_shape
from costsim.errors import SpecError
from costsim.growth import DEPTH_OPERATORS
from costsim.hardware import GPUSpec
from costsim.loss import (
    LossParams,
    LossProfile,
    capacity,
    fit_stack,
    full_training_loss,
    model_error,
    predict,
    reducible,
    seed_decided_branches,
    stage_plans,
    trajectory,
    widened,
    z_score,
)
from costsim.lr import ConstantLR
from costsim.memory import memory_use, usable_memory_bytes
from costsim.ops import StageShape
from costsim.paper import paper_incremental
from costsim.parallel import Layout, suits
from costsim.profile import CostProfile
from costsim.spec import HardwareSpec, ScheduleSpec, parse_spec
from costsim.text import binary_bytes
from costsim.trainers import REFERENCE, load_trainer, shape_fields


class Budget(BaseModel):
    """Exactly one of counted FLOPs, wall-clock hours or US dollars."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    flops: float | None = Field(None, gt=0, description="counted FLOPs")
    hours: float | None = Field(None, gt=0, description="wall-clock hours")
    usd: float | None = Field(None, gt=0, description="US dollars")

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if sum(v is not None for v in (self.flops, self.hours, self.usd)) != 1:
            raise ValueError("give exactly one budget: --budget (FLOPs), --budget-hours or --budget-usd")
        flag, limit = {"flops": ("--budget", 1e30), "hours": ("--budget-hours", 1e7), "usd": ("--budget-usd", 1e12)
                       }[self.kind]
        if self.amount > limit:
            raise ValueError(f"{flag} {self.amount:g} is beyond any real run (at most {limit:g})")
        return self

    @property
    def kind(self) -> str:
        return "flops" if self.flops is not None else "hours" if self.hours is not None else "usd"

    @property
    def amount(self) -> float:
        return self.flops or self.hours or self.usd  # type: ignore[return-value]

    def describe(self) -> str:
        return {"flops": f"{self.amount:.3g} counted FLOPs", "hours": f"{self.amount:g} hours",
                "usd": f"${self.amount:,.0f}"}[self.kind]


MIN_STEPS = 250  # a schedule with fewer optimizer steps is barely trained, whatever its batch


class SearchSpace(BaseModel):
    """What the search may choose, and the fixed parts of every schedule.

    ``SearchSpace.for_budget`` sizes it to a budget; the defaults here are a fixed
    GPU-scale space."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = 50304
    seq_len: int = 1024
    head_dim: int = 64
    d_models: tuple[int, ...] = (256, 384, 512, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096)
    min_layers: int = 2
    max_layers: int = 48
    max_stages: int = 6
    operators: tuple[str, ...] = DEPTH_OPERATORS
    batch_tokens: tuple[int, ...] = (2**18, 2**19, 2**20, 2**21)
    aspect_ratio: tuple[float, float] = (16.0, 256.0)  # d_model / layers: outside, shapes train badly
    # every growing stage's d_model / layers too, where a loss profile knows the shapes it
    # was fitted on (None: only the final shape is bounded, as for a published law)
    stage_aspect_ratio: tuple[float, float] | None = None
    # every stage's layers at least this, where a loss profile records the depths it was
    # fitted on (None: no floor beyond min_layers, as for a published law)
    stage_min_layers: int | None = None
    width_growth: bool = True
    precision: str = "bf16-mixed"
    lr: float | None = Field(None, gt=0, description="peak LR of every schedule (None: the spec's default)")
    min_steps: int = Field(1, ge=1, description="fewest optimizer steps a schedule may take")
    min_heads: int = Field(2, ge=1, description="fewest attention heads of a full-width model: a width below "
                           "min_heads x head_dim gets narrower heads (every run the loss profiles were fitted on "
                           "has two or more, and a one-head d32 trained 0.019 nats worse than two heads of 16)")

    def n_heads(self, d_model):
        """Heads of ``head_dim``, or where that makes fewer than ``min_heads`` the fewest
        heads from ``min_heads`` to twice it that divide the width (one if none does)."""
        d_model = np.asarray(d_model)
        wanted = d_model // self.head_dim
        narrow = np.arange(self.min_heads, 2 * self.min_heads + 1)[:, None]  # a whole number of heads lies here
        fits = (d_model.ravel()[None, :] % narrow == 0) | (narrow > d_model.ravel()[None, :])
        divisor = np.where(fits.any(axis=0), narrow[fits.argmax(axis=0), 0], 1).reshape(d_model.shape)
        return np.where(wanted >= self.min_heads, wanted, np.minimum(divisor, d_model))

    @classmethod
    def for_budget(cls, flops: float, *, profile: LossProfile, vocab_size: int = 50304, seq_len: int = 1024,
                   n_gpus: int = 1, d_model_range: tuple[int, int] | None = None,
                   layers_range: tuple[int, int] | None = None, batch_range: tuple[int, int] | None = None,
                   min_steps: int = MIN_STEPS, **fixed) -> SearchSpace:
        """A space sized to a budget of ``flops`` counted FLOPs: widths from a quarter to
        three times the compute-optimal width under the profile's law, depths up to four
        times its depth, batches (powers of two, in tokens) from one sequence per GPU up
        to what leaves ``min_steps`` optimizer steps and at most four critical batches;
        the profile's learning rate. Each range can be given instead."""
        d_opt, layers_opt, tokens_opt, loss_opt = compute_optimal_shape(profile.params, flops, vocab_size, seq_len)
        lo, hi = d_model_range or (max(16, d_opt / 4), min(d_opt * 3, LIMITS["d_model"]))
        head_dim = fixed.pop("head_dim", 64 if hi >= 512 else 32 if hi >= 128 else 16)
        grain = head_dim  # every width a whole number of heads
        d_models = sorted({int(max(grain, round(d / grain) * grain)) for d in np.geomspace(lo, hi, 10)})
        d_models = [d for d in d_models if lo <= d <= hi] or [int(max(grain, round(lo / grain) * grain))]
        # no shallower than the profile was fitted on: 1-layer models lie below every fitted
        # depth, and each one the checks trained on bytes was worse than predicted (d32 L1 at
        # 2e12 by 0.10 nats, beaten by the d32 L2 it was predicted to beat; d64 grown from 1
        # layer at 4e12 ended 0.054 behind full training, predicted 0.020 ahead; d96 L1 under
        # an earlier profile by 0.057). Deeper than the fits is allowed: the start-up's depth
        # was registered at 12 and 16 layers and held (docs/loss-model.md)
        if profile.shallowest_fitted_layers:
            fixed.setdefault("stage_min_layers", profile.shallowest_fitted_layers)
        floor = profile.shallowest_fitted_layers or 1
        min_layers, max_layers = layers_range or (floor, max(floor, min(max(8, 4 * layers_opt), LIMITS["layers"])))
        smallest = seq_len * n_gpus
        if batch_range:
            b_lo, b_hi = batch_range
        else:
            b_hi = tokens_opt / min_steps
            p = profile.params
            if p.bcrit > 0:
                b_hi = min(b_hi, 4 * p.bcrit * loss_opt ** -p.bcrit_exponent)
            b_lo = smallest
        powers = [2**k for k in range(int(np.log2(max(b_lo, 1))) - 1, int(np.log2(max(b_hi, 1))) + 2)
                  if max(b_lo, smallest) <= 2**k <= max(b_hi, smallest)]
        largest = LIMITS["batch_size"] * seq_len
        batches = tuple(b for b in powers[-6:] if b <= largest) or (int(2 ** np.ceil(np.log2(smallest))),)
        # shapes the loss model was fitted on only: a law in N alone says nothing about a
        # 1-layer model of a deep model's size (at 1.6e13 FLOPs on bytes the search picked
        # d128 with 1 layer, aspect 128 against a fitted 6-48, and it trained 0.15 nats
        # worse than predicted and 0.08 worse than the d64 L2 an earlier check trained)
        fitted_lo, fitted_hi = profile.params.aspect_range
        aspect = (max(4.0, fitted_lo), min(512.0, fitted_hi))
        fixed.setdefault("aspect_ratio", aspect if aspect[0] <= aspect[1] else (4.0, 512.0))
        if (fitted_lo, fitted_hi) != tuple(LossParams.model_fields["aspect_range"].default):
            # at 4e12 on bytes the search grew d64 from 1 layer (aspect 64, fitted 4-48), and
            # it trained 0.054 behind the full training it was predicted to tie
            fixed.setdefault("stage_aspect_ratio", fixed["aspect_ratio"])
        return cls(vocab_size=vocab_size, seq_len=seq_len, d_models=tuple(d_models), min_layers=int(min_layers),
                   max_layers=int(max_layers), batch_tokens=batches, head_dim=head_dim, lr=profile.lr,
                   min_steps=min_steps, **fixed)

    def describe(self) -> str:
        return (f"d_model {self.d_models[0]}-{self.d_models[-1]} ({len(self.d_models)} widths), layers "
                f"{self.min_layers}-{self.max_layers}, batch {self.batch_tokens[0]}-{self.batch_tokens[-1]} tokens, "
                f"at least {self.min_steps} steps, lr {self.lr if self.lr else 'spec default'}")



def approximate_flops(budget: Budget, hardware: HardwareSpec, precision: str = "bf16-mixed",
                      utilisation: float = 0.4) -> float:
    """Counted FLOPs a budget buys, roughly (hours and dollars at ``utilisation`` of the
    GPUs' peak): only to size a search space, never to spend."""
    if budget.kind == "flops":
        return float(budget.amount)
    gpu = hardware.resolved_gpu()
    rate = gpu.peak_flops_per_s(precision) * hardware.n_gpus * utilisation
    seconds = budget.amount * SECONDS_PER_HOUR if budget.kind == "hours" else \
        budget.amount / hardware.cost_usd(1.0)
    return float(seconds * rate)


def compute_optimal_shape(p, flops: float, vocab_size: int, seq_len: int) -> tuple[int, int, float, float]:
    """(d_model, layers, tokens, loss) of the best full-training model at ``flops`` under a
    law, on a coarse grid of shapes 32 wide per layer (counted FLOPs per token
    approximated as 6 N + 6 d V + 14 T d L: weights, head, attention)."""
    d = np.geomspace(16, 32768, 200)
    layers = np.maximum(1, np.round(d / 32))
    n = 12 * d**2 * layers
    per_token = 6 * n + 6 * d * vocab_size + 14 * seq_len * d * layers
    tokens = flops / per_token
    # a shape that cannot take MIN_STEPS steps of one sequence is not a candidate
    loss = np.where(tokens >= seq_len * MIN_STEPS, p.E + reducible(p, capacity(p, n, 32.0), tokens), np.inf)
    best = int(np.argmin(loss)) if np.isfinite(loss).any() else 0
    return int(round(d[best])), int(layers[best]), float(tokens[best]), float(loss[best])


@dataclass(frozen=True)
class ScheduleSummary:
    """A schedule's predicted loss and costs: what a search result stores (report_json)."""

    loss: float
    loss_lower: float
    loss_upper: float
    flops_counted: float
    time_s: float
    cost_usd: float
    peak_memory_bytes: float
    stages: int

    def summary(self) -> ScheduleSummary:
        return ScheduleSummary(**{f.name: getattr(self, f.name) for f in fields(ScheduleSummary)})

    @classmethod
    def from_report(cls, summary: dict) -> ScheduleSummary:
        """Raises KeyError or TypeError when the report lacks a field."""
        return cls(**{f.name: summary[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Evaluation(ScheduleSummary):
    """The summary plus what only the planner needs."""

    spec: ScheduleSpec
    fits_in_memory: bool
    budget_used: float  # share of the budget spent (<= 1)
    params_total: int  # of the model the schedule ends with
    params_non_embedding: int


# What the search records of every candidate, by name, in Optuna's convention (<= 0 holds):
# the shape is one the space and the spec accept; its peak fits the usable memory (peak /
# usable - 1); the budget buys the steps it needs (> 0: the share of them missing) and is
# not exceeded (<= 0: share spent - 1).
CONSTRAINTS = ("spec", "memory", "budget")


@dataclass(frozen=True)
class Candidate:
    """What ``Planner.attempt`` makes of a candidate's parameters: its schedule, or why there
    is none. A constraint after the first that fails is not evaluated, so not present."""

    spec: ScheduleSpec | None
    constraints: dict[str, float]
    reason: str | None = None  # one line, when there is no schedule
    peak_memory_bytes: float | None = None  # of the chosen micro-batch, or of the most frugal one that failed
    params_total: int | None = None
    params_non_embedding: int | None = None


@dataclass(frozen=True)
class Comparison:
    """A growing schedule against full training at the same budget. The gap's interval
    is paired: each bootstrap fit of the loss model predicts both, so what they share
    (the law's own uncertainty) cancels; the seed noise of two runs and the held-out
    error are added."""

    gap: float  # full training's predicted loss minus the schedule's (> 0: growing is better)
    lower: float
    upper: float
    intervals_overlap: bool  # the two marginal intervals overlap
    verdict: str  # "growth better", "full training better" or "tie"
    # the same gap predicted without the start-up (a model from scratch using all its depth at
    # once) and without a slow start above the LR limit (None where the profile has neither):
    # the part of growth's lead that is the slow start it skips (docs/loss-model.md, "The LR limit")
    gap_without_startup: float | None = None

    def describe(self, interval: float) -> str:
        """One plain line: which is better, by how much, and whether the gap is inside the
        uncertainty (its paired interval includes 0) or outside it."""
        leader, other = ("growing", "full training") if self.gap > 0 else ("full training", "growing")
        size = "both predict the same loss" if self.gap == 0 else \
            f"{leader} predicts {abs(self.gap):.4f} nats lower loss than {other}"
        span = (f"the gap's {interval:.0%} interval [{self.lower:+.4f}, {self.upper:+.4f}] (paired; + is growing "
                f"ahead)")
        marginal = f"; their own intervals {'overlap' if self.intervals_overlap else 'do not overlap'}"
        if self.verdict == "tie":
            return (f"a tie within the uncertainty: {size}, but {span} includes 0, so the gap is "
                    f"inside the uncertainty{marginal}: recommend full training (do not grow)")
        verdict = "growing is better" if self.verdict == "growth better" else "full training is better (do not grow)"
        return (f"{verdict}: {size}, and {span} excludes 0, so the gap is outside the "
                f"uncertainty{marginal}{self._startup_note()}")

    def _startup_note(self) -> str:
        """Where growth's lead is the slow start it skips, say so: without it full training
        would lead, and a peak LR above the full model's limit lengthens it."""
        if self.verdict != "growth better" or self.gap_without_startup is None or self.gap_without_startup > 0:
            return ""
        return (f"; the lead is the full model's slow start from scratch, which growth skips: without it full "
                f"training predicts {-self.gap_without_startup:.4f} nats lower. A peak LR above the full model's "
                "limit lengthens that start, and growth's lead with it; check the limit before choosing to grow "
                "(docs/loss-model.md, 'The LR limit')")


def grows(spec: ScheduleSpec) -> bool:
    """Whether a schedule changes its model's size at all."""
    shapes = {(st.layers, spec.stage_width(st)) for st in spec.stages}
    return len(shapes) > 1


class Planner:
    """Builds and evaluates candidates for one budget, hardware and pair of profiles."""

    def __init__(self, budget: Budget, hardware: HardwareSpec, space: SearchSpace, cost_profile: CostProfile,
                 loss_profile: LossProfile, max_memory_bytes: float | None = None, parallelism: str = "ddp",
                 memory_headroom: float = MEMORY_HEADROOM, layout_search: bool = True,
                 trainer_profile: str = REFERENCE, context_parallel: int = 1):
        self.budget, self.hardware, self.space = budget, hardware, space
        self.layout_search = layout_search  # choose tensor x pipeline parallel sizes (else data parallel only)
        self._grid_costs = None  # full-training costs of the space, computed on first use
        self.cost_profile, self.loss_profile = cost_profile, loss_profile
        self.gpu: GPUSpec = hardware.resolved_gpu()
        self.memory_limit = usable_memory_bytes(self.gpu.memory_bytes, memory_headroom, max_memory_bytes)
        self.parallelism = parallelism
        # what the training framework keeps and overlaps (costsim/trainers.py), as every candidate's spec says
        self.trainer_profile, self.trainer = trainer_profile, load_trainer(trainer_profile)
        self.context_parallel = context_parallel  # GPUs splitting each sequence, in every layout
        # the peak LR every candidate trains at: the space's, else a spec's default
        self.peak_lr = space.lr or ConstantLR().lr

    # --- building ------------------------------------------------------------------------

    def stages_layout(self, *, layers: int, d_model: int, n_stages: int, first_fraction: float, grow_share: float,
                      freeze_share: float, operator: str, width_stages: int) -> list[dict]:
        """Stage entries with relative token weights (``_weight``): depths rise linearly
        from ``first_fraction`` of the final depth; the growing stages share
        ``grow_share`` of the tokens, the final one the rest; each stage that adds
        blocks optionally starts with a phase training only them (``freeze_share`` of
        its tokens); the first ``width_stages`` run at half width and the first
        full-width stage widens function-preservingly."""
        n_heads = int(self.space.n_heads(d_model))
        depths = sorted({max(1, round(layers * (first_fraction + (1 - first_fraction) * i / (n_stages - 1))))
                         for i in range(n_stages - 1)} | {layers})
        n = len(depths)
        can_halve = self.space.width_growth and n_heads % 2 == 0 and d_model % 2 == 0
        half = [can_halve and i < min(width_stages, n - 1) for i in range(n)]
        weight = [1.0] if n == 1 else [grow_share / (n - 1)] * (n - 1) + [1 - grow_share]
        entries = []
        for i, depth in enumerate(depths):
            base: dict = {"layers": depth, "name": f"stage {i + 1}"}
            if half[i]:
                base.update(d_model=d_model // 2, n_heads=n_heads // 2, d_ff=2 * d_model)
            deepens = i > 0 and depth > depths[i - 1]
            widens = i > 0 and half[i - 1] and not half[i]
            if deepens:
                base["growth"] = operator
            if widens:
                base["width_growth" if deepens else "growth"] = "widen_preserving"
            if deepens and freeze_share > 0:
                rest = {k: v for k, v in base.items() if k not in ("growth", "width_growth")}
                entries.append({**base, "train": "new", "name": f"stage {i + 1} new only",
                                "_weight": weight[i] * freeze_share})
                entries.append({**rest, "name": f"stage {i + 1} all", "_weight": weight[i] * (1 - freeze_share)})
            else:
                entries.append({**base, "_weight": weight[i]})
        return entries

    def build(self, **params) -> ScheduleSpec | None:
        """A schedule that spends the budget, or None (``attempt`` says why)."""
        return self.attempt(**params).spec

    def attempt(self, *, layers: int, d_model: int, n_stages: int = 1, first_fraction: float = 0.25,
                grow_share: float = 0.5, freeze_share: float = 0.0, operator: str = "identity",
                width_stages: int = 0, batch_tokens: int = 2**19) -> Candidate:
        """The schedule these parameters describe, spending the budget, or the constraint
        it breaks: a shape outside the space's aspect ratio or refused by the spec, no
        micro-batch that fits in memory, or a budget too small for the steps it needs."""
        s = self.space
        lo, hi = s.aspect_ratio
        if not lo <= d_model / layers <= hi:
            return Candidate(None, {"spec": 1.0}, f"d_model/layers = {d_model / layers:.3g} is outside the search "
                                                  f"space's aspect ratio {lo:g} to {hi:g}")
        stages = self.stages_layout(layers=layers, d_model=d_model, n_stages=n_stages, first_fraction=first_fraction,
                                    grow_share=grow_share, freeze_share=freeze_share, operator=operator,
                                    width_stages=width_stages)
        for stage in stages if s.stage_min_layers else ():
            if stage["layers"] < s.stage_min_layers:
                return Candidate(None, {"spec": 1.0}, f"a stage of {stage['layers']} layer"
                                 f"{'s' if stage['layers'] > 1 else ''} is shallower than the loss profile was "
                                 f"fitted on ({s.stage_min_layers} layers or more)")
        for stage in stages if s.stage_aspect_ratio else ():
            aspect = stage.get("d_model", d_model) / stage["layers"]
            if not s.stage_aspect_ratio[0] <= aspect <= s.stage_aspect_ratio[1]:
                return Candidate(None, {"spec": 1.0}, f"a stage of {stage['layers']} layers at d_model "
                                 f"{stage.get('d_model', d_model)} (d_model/layers = {aspect:.3g}) is outside the "
                                 f"shapes the loss profile was fitted on, {s.stage_aspect_ratio[0]:g} to "
                                 f"{s.stage_aspect_ratio[1]:g}")
        n_gpus = self.hardware.n_gpus
        batch = max(n_gpus, batch_tokens // s.seq_len // n_gpus * n_gpus)
        model = {"d_model": d_model, "n_heads": int(s.n_heads(d_model)), "vocab_size": s.vocab_size,
                 "seq_len": s.seq_len}
        try:
            return self._fit_and_spend(model, stages, batch)
        except SpecError as exc:  # a shape the spec refuses (heads that do not divide, ...)
            return Candidate(None, {"spec": 1.0}, f"the spec refuses this shape: {str(exc).splitlines()[0]}")

    def layouts(self, widths: list[tuple[int, int, int]], min_layers: int) -> tuple[np.ndarray, np.ndarray]:
        """The (tensor, pipeline) parallel sizes a schedule may run in: tensor parallelism
        inside a node, dividing every stage's heads and d_ff; pipeline parallelism over
        what is left, no deeper than the shallowest stage. Data parallelism takes the rest
        of the GPUs (after context parallelism's). Without layout search, data parallelism alone."""
        n_gpus = self.hardware.n_gpus // self.context_parallel
        pairs = [(1, 1)]
        if self.layout_search and n_gpus > 1:
            sizes = [size for width in widths for size in width]
            pairs = [(tp, pp) for tp in divisors(n_gpus) if tp <= self.hardware.gpus_per_node
                     for pp in divisors(n_gpus // tp) if suits(tp, pp, sizes, min_layers)]
        tp, pp = np.array(pairs).T
        return tp, pp

    def _layout(self, tp, pp) -> Layout:
        # sequence parallelism wherever tensor parallelism splits the sequence evenly (Megatron's practice)
        return Layout.of(self.hardware.n_gpus, tp, pp, sequence_parallel=(tp > 1) & (self.space.seq_len % tp == 0),
                         context_parallel=self.context_parallel,
                         gpus_per_node=self.hardware.gpus_per_node)

    def _fit_and_spend(self, model: dict, stages: list[dict], batch: int) -> Candidate:
        """Pick the micro-batch and each stage's layout (recompute only if nothing fits
        without): a stage runs in the layout whose step costs least of the budget, then the
        fastest, of those it fits in at that micro-batch; of the micro-batches every stage
        fits at, the one whose schedule costs least, then the fastest, then the largest.
        A growing model may so change its layout as it grows. Then spend the budget."""
        n_gpus = self.hardware.n_gpus
        per_gpu = batch // n_gpus
        weights = np.array([st["_weight"] for st in stages])
        weights = weights / weights.sum()
        hardware = self.hardware.model_dump(exclude_none=True)
        training = {"micro_batch_size": per_gpu, "batch_size": batch, "precision": self.space.precision,
                    "parallelism": self.parallelism, "trainer_profile": self.trainer_profile}
        if self.context_parallel > 1:
            training["context_parallel"] = self.context_parallel
        if self.space.lr:
            training["lr_schedule"] = {"kind": "constant", "lr": self.space.lr}
        probe = _spec(model, training, hardware, stages, [1.0e9] * len(stages))
        micros = np.array(divisors(per_gpu))
        shape = stage_shape(probe)
        tp, pp = self.layouts([], max(st.layers for st in probe.stages))
        # a layout a stage cannot take: heads or d_ff it does not divide, more pipeline ranks than blocks
        sizes = np.array([(*probe.stage_width(st)[1:], probe.stage_kv_heads(st)) for st in probe.stages]).T
        takes = suits(tp[:, None], pp[:, None], sizes, np.array([st.layers for st in probe.stages]))
        layout = self._layout(tp[:, None, None], pp[:, None, None])
        full = (len(tp), len(micros), len(stages))
        for recompute in (False, True):
            # every (layout, micro-batch, stage) triple in one vectorised call
            grid = StageShape.of(**{**{f: getattr(shape, f)[None, None, :] for f in STAGE_FIELDS},
                                    "micro_batch_size": micros[None, :, None], "recompute": recompute})
            costs = self._costs_of(grid, batch, layout)
            fits = np.broadcast_to(costs.fits_in_memory, full) & takes[:, None, :]
            # params do not depend on the micro-batch or layout; the schedule's are its last stage's
            params = {"params_total": int(np.broadcast_to(costs.params_total, full)[0, 0, -1]),
                      "params_non_embedding": int(np.broadcast_to(costs.params_non_embedding, full)[0, 0, -1])}
            if not fits.any(axis=0).all(axis=-1).any():
                continue
            per_step = np.where(fits, np.broadcast_to(self.per_step_cost(costs), full), np.inf)
            step_time = np.where(fits, np.broadcast_to(costs.step_time_s, full), np.inf)
            # each (micro-batch, stage)'s layout: least spend, then fastest
            cheapest = per_step.min(axis=0)
            best = np.argmin(np.where(per_step <= cheapest * (1 + 1e-12), step_time, np.inf), axis=0)
            pick = np.take_along_axis
            spend = (pick(per_step, best[None], axis=0)[0] * weights).sum(axis=-1)
            speed = (pick(step_time, best[None], axis=0)[0] * weights).sum(axis=-1)
            row = min(np.flatnonzero(np.isfinite(spend)), key=lambda m: (spend[m], speed[m], m))
            chosen = {**training, "micro_batch_size": int(micros[row]), "recompute": "full" if recompute else "none"}
            sizes = [(int(tp[b]), int(pp[b])) for b in best[row]]
            if len(set(sizes)) == 1 and sizes[0] != (1, 1):
                chosen.update(tensor_parallel=sizes[0][0], pipeline_parallel=sizes[0][1])
            elif len(set(sizes)) > 1:
                stages = [{**st, "tensor_parallel": t, "pipeline_parallel": p} for st, (t, p) in zip(stages, sizes)]
            split = [t for t, _ in sizes if t > 1]
            if split:
                chosen["sequence_parallel"] = all(self.space.seq_len % t == 0 for t in split)
            peaks = np.broadcast_to(costs.peak_memory_bytes, full)
            peak = float(max(peaks[b, row, i] for i, b in enumerate(best[row])))
            per_stage = pick(per_step, best[None], axis=0)[0][row]
            return self._spend(model, chosen, hardware, stages, weights, per_stage,
                               memory=float(memory_use(peak, self.memory_limit)) - 1, peak_memory_bytes=peak,
                               **params)
        # the last micro-batch tried is the most frugal: one sequence, recomputed; each stage in its leanest layout
        peaks = np.where(takes[:, None, :], np.broadcast_to(costs.peak_memory_bytes, full), np.inf)
        peak = float(peaks[:, -1].min(axis=0).max())
        return Candidate(None, {"spec": 0.0, "memory": float(memory_use(peak, self.memory_limit)) - 1},
                         f"does not fit in memory: even one sequence a micro-batch with recompute peaks at "
                         f"{binary_bytes(peak)} per GPU{' in every parallel layout' if len(tp) > 1 else ''}, above "
                         f"the {binary_bytes(self.memory_limit)} usable", peak_memory_bytes=peak, **params)

    def _costs(self, spec: ScheduleSpec):
        return self._costs_of(stage_shape(spec), spec.training.batch_size, spec_layout(spec))

    def _costs_of(self, shape: StageShape, batch: int, layout: Layout | None = None):
        layout = layout or Layout.of(self.hardware.n_gpus, gpus_per_node=self.hardware.gpus_per_node,
                                     context_parallel=self.context_parallel)
        return estimate_many(shape, batch_size=batch, gpu=self.gpu, profile=self.cost_profile,
                             precision=self.space.precision, n_gpus=self.hardware.n_gpus, parallelism=self.parallelism,
                             memory_limit_bytes=self.memory_limit, trainer=self.trainer, layout=layout)

    def per_step_cost(self, costs) -> np.ndarray:
        """Budget units one optimizer step of each stage spends."""
        if self.budget.kind == "flops":
            return costs.flops_counted_per_step
        if self.budget.kind == "hours":
            return costs.step_time_s / SECONDS_PER_HOUR
        return self.hardware.cost_usd(costs.step_time_s)

    def _spend(self, model, training, hardware, stages, weights, per_step, *, memory: float,
               **found) -> Candidate:
        tokens_per_step = training["batch_size"] * model["seq_len"]
        # steps_s = w_s * S with sum(steps_s * cost_s) = budget; floor so the budget holds
        total_steps = self.budget.amount / float(np.dot(weights, per_step))
        steps = np.floor(weights * total_steps).astype(int)
        # > 0 exactly when a stage gets no step or the schedule takes fewer than min_steps
        missing = 1 - min(steps.sum() / self.space.min_steps, float(steps.min()))
        constraints = {"spec": 0.0, "memory": memory}
        if missing > 0:
            why = "a stage gets no step" if steps.min() < 1 else \
                f"fewer than the {self.space.min_steps} a schedule must take"
            return Candidate(None, {**constraints, "budget": float(missing)},
                             f"the budget buys {int(steps.sum())} optimizer steps: {why}", **found)
        spent = float(np.dot(steps, per_step)) / self.budget.amount
        spec = _spec(model, training, hardware, stages, [float(n * tokens_per_step) for n in steps])
        return Candidate(spec, {**constraints, "budget": spent - 1}, **found)

    # --- evaluating ----------------------------------------------------------------------

    def evaluate(self, spec: ScheduleSpec) -> Evaluation:
        """A schedule's predicted loss and costs, re-estimated from the spec itself (what
        ``costsim.estimate`` of the written spec reports)."""
        costs = self._costs(spec)
        steps = _steps(spec)
        curve = predict(self.loss_profile, stage_plans(spec, steps), points_per_stage=1)
        spent = float(np.dot(steps, self.per_step_cost(costs)))
        time_s = float(np.dot(steps, costs.step_time_s))
        return Evaluation(
            spec=spec, loss=float(curve.loss[-1]), loss_lower=float(curve.lower[-1]),
            loss_upper=float(curve.upper[-1]), flops_counted=float(np.dot(steps, costs.flops_counted_per_step)),
            time_s=time_s, cost_usd=self.hardware.cost_usd(time_s),
            peak_memory_bytes=float(costs.peak_memory_bytes.max()), stages=len(spec.stages),
            fits_in_memory=bool(np.all(costs.fits_in_memory)),
            budget_used=spent / self.budget.amount,
            params_total=int(costs.params_total[-1]), params_non_embedding=int(costs.params_non_embedding[-1]),
        )

    def compare(self, candidate: Evaluation, baseline: Evaluation) -> Comparison:
        """``candidate`` (a growing schedule) against full training ``baseline``."""
        profile = self.loss_profile
        plans_c = stage_plans(candidate.spec, _steps(candidate.spec))
        plans_b = stage_plans(baseline.spec, _steps(baseline.spec))
        gap = baseline.loss - candidate.loss
        if profile.samples:
            stack = fit_stack(profile)  # row 0 is the point fit, the rest its bootstrap samples
            diffs = (trajectory(stack, plans_b, points_per_stage=1)[1][1:, -1]
                     - trajectory(stack, plans_c, points_per_stage=1)[1][1:, -1])
        else:
            diffs = np.array([gap])
        q = (1 - profile.interval) / 2
        lo, hi = np.quantile(diffs, [q, 1 - q])
        # what the model has shown it gets wrong about growth on held-out schedules, in
        # nats, or scaled from its relative size where the growth parameters were carried
        # to another law (and the law's own residual knows nothing of growth)
        growth_error = max(model_error(profile, candidate.params_non_embedding, candidate.spec.stages[-1].layers),
                           profile.growth_rel_std * (candidate.loss - profile.params.E))
        noise = z_score(profile.interval) * np.sqrt(2 * profile.seed_std**2 + growth_error**2)
        lower, upper = (float(v) for v in widened(gap, lo, hi, noise))
        # where the seed decides whether either run starts slow, every pair of outcomes
        ends_b = [trajectory(q, plans_b, points_per_stage=1)[1][-1] for q in seed_decided_branches(profile, plans_b)]
        ends_c = [trajectory(q, plans_c, points_per_stage=1)[1][-1] for q in seed_decided_branches(profile, plans_c)]
        for end_b, end_c in itertools.product([baseline.loss, *ends_b], [candidate.loss, *ends_c]):
            shift = float(end_b - end_c) - gap
            lower, upper = min(lower, lower + shift), max(upper, upper + shift)
        verdict = "growth better" if lower > 0 else "full training better" if upper < 0 else "tie"
        overlap = candidate.loss_lower <= baseline.loss_upper and baseline.loss_lower <= candidate.loss_upper
        without = None
        if profile.params.startup_tokens > 0 or profile.params.lr_limit > 0:
            bare = profile.switched(startup_tokens=0.0, lr_limit=0.0)  # neither slow start
            without = float(trajectory(bare.params, plans_b, points_per_stage=1)[1][-1]
                            - trajectory(bare.params, plans_c, points_per_stage=1)[1][-1])
        return Comparison(gap=float(gap), lower=float(lower), upper=float(upper), intervals_overlap=bool(overlap),
                          verdict=verdict, gap_without_startup=without)

    # --- reference points ----------------------------------------------------------------

    def full_training_grid(self, amount: float | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(d_model, layers, batch tokens, predicted final loss) of every full-training
        shape in the space at a budget (default: this one) with its best batch,
        vectorised. Constant LR, no warmup: the loss is the law at the ideal tokens its
        batch leaves (``full_training_loss``). Shapes that fit nowhere get +inf."""
        s = self.space
        d, layers, per_batch = self._full_training_costs()
        best_loss = np.full(len(d), np.inf)
        best_batch = np.zeros(len(d), dtype=np.int64)
        p = self.loss_profile.params
        for batch_tokens, batch, chosen_cost, n_params in per_batch:
            steps = np.floor((amount or self.budget.amount) / chosen_cost)
            tokens = steps * batch * s.seq_len
            with np.errstate(invalid="ignore"):
                loss = np.where(steps >= max(1, s.min_steps),
                                full_training_loss(p, n_params, np.nan_to_num(tokens), batch * s.seq_len,
                                                   d / layers, layers, self.peak_lr), np.inf)
            better = loss < best_loss
            best_loss = np.where(better, loss, best_loss)
            best_batch = np.where(better, batch_tokens, best_batch)
        return d, layers, best_batch, best_loss

    def _full_training_costs(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, np.ndarray, np.ndarray]]]:
        """Every full-training shape of the space and, per batch, its cost of a step at
        the first micro-batch (then recompute) that fits, and its parameters. Computed
        once: only the budget changes between calls, and the bisections for reference
        points call the grid dozens of times."""
        if self._grid_costs is not None:
            return self._grid_costs
        s = self.space
        d, layers = (a.ravel() for a in np.meshgrid(np.array(s.d_models), np.array(_depths(s))))
        keep = (d / layers >= s.aspect_ratio[0]) & (d / layers <= s.aspect_ratio[1])
        d, layers = d[keep], layers[keep]
        n_gpus = self.hardware.n_gpus
        heads = s.n_heads(d)
        # every layout the GPUs allow (rows) against every shape (columns); a layout a shape
        # cannot take (heads or d_ff it does not divide, more pipeline ranks than blocks) is out
        tp, pp = (x[:, None] for x in self.layouts([], max(layers)))
        layout = self._layout(tp, pp)
        allowed = suits(tp, pp, (heads, 4 * d), layers)
        per_batch = []
        for batch_tokens in s.batch_tokens:
            batch = max(n_gpus, batch_tokens // s.seq_len // n_gpus * n_gpus)
            chosen_cost = np.where(allowed, np.inf, np.nan)  # nan: not a candidate
            n_params = np.zeros(len(d))
            for recompute in (False, True):
                for micro in divisors(batch // n_gpus):
                    if not np.isinf(chosen_cost).any():
                        break
                    shape = StageShape.of(layers=layers, d_model=d, n_heads=heads, n_kv_heads=heads, d_ff=4 * d,
                                          vocab_size=s.vocab_size, seq_len=s.seq_len, micro_batch_size=micro,
                                          n_trainable=layers, train_embeddings=True, tied=True, swiglu=False,
                                          recompute=recompute, compute_bytes=COMPUTE_BYTES[s.precision],
                                          **shape_fields(self.trainer, COMPUTE_BYTES[s.precision]))
                    costs = self._costs_of(shape, batch, layout)
                    fits = costs.fits_in_memory & np.isinf(chosen_cost)
                    chosen_cost = np.where(fits, self.per_step_cost(costs), chosen_cost)
                    n_params = np.broadcast_to(costs.params_non_embedding, chosen_cost.shape)[0]
            # the cheapest layout of each shape (+inf where none fits)
            cheapest = np.min(np.where(np.isnan(chosen_cost), np.inf, chosen_cost), axis=0)
            per_batch.append((batch_tokens, batch, cheapest, n_params))
        self._grid_costs = (d, layers, per_batch)
        return self._grid_costs

    def best_full_training(self) -> Evaluation:
        """The compute-optimal full-size model at this budget."""
        d, layers, batch, loss = self.full_training_grid()
        if not np.isfinite(loss).any():
            raise SpecError(self.why_nothing_fits())
        return self._full_training_at(int(np.argmin(loss)), d, layers, batch, "compute-optimal")

    def runner_up_full_training(self, best: Evaluation) -> Evaluation | None:
        """The best full-training model of another shape (d_model, layers) than ``best``'s:
        where the law ranks shapes by less than it can resolve, training this one too says
        whether its pick was the best (None: no other shape fits)."""
        d, layers, batch, loss = self.full_training_grid()
        same = (d == best.spec.model.d_model) & (layers == best.spec.stages[-1].layers)
        loss = np.where(same, np.inf, loss)
        if not np.isfinite(loss).any():
            return None
        return self._full_training_at(int(np.argmin(loss)), d, layers, batch, "runner-up")

    def _full_training_at(self, i: int, d, layers, batch, which: str) -> Evaluation:
        candidate = self.attempt(layers=int(layers[i]), d_model=int(d[i]), n_stages=1, batch_tokens=int(batch[i]))
        if candidate.spec is None:  # the grid and the builder disagree: say so rather than crash
            raise SpecError(f"the {which} full-training shape cannot be built: {candidate.reason}")
        return self.evaluate(candidate.spec)

    def why_nothing_fits(self) -> str:
        """The real reason no full-training schedule can be built: memory, or the budget."""
        s = self.space
        d, layers, batch_tokens = min(s.d_models), s.min_layers, min(s.batch_tokens)
        n_gpus = self.hardware.n_gpus
        batch = max(n_gpus, batch_tokens // s.seq_len // n_gpus * n_gpus)
        heads = int(s.n_heads(d))
        # the smallest candidate at its most frugal: one sequence a micro-batch, recomputed
        shape = StageShape.of(layers=layers, d_model=d, n_heads=heads, n_kv_heads=heads, d_ff=4 * d,
                              vocab_size=s.vocab_size, seq_len=s.seq_len, micro_batch_size=1, n_trainable=layers,
                              train_embeddings=True, tied=True, swiglu=False, recompute=True,
                              compute_bytes=COMPUTE_BYTES[s.precision],
                              **shape_fields(self.trainer, COMPUTE_BYTES[s.precision]))
        costs = self._costs_of(shape, batch)
        if not bool(np.ravel(costs.fits_in_memory)[0]):
            return (f"the smallest model in the search space does not fit the {binary_bytes(self.memory_limit)} "
                    "usable per GPU; add GPUs, allow more memory (--max-memory-gb, --memory-headroom) or search "
                    "smaller models (--d-model-range)")
        need = float(np.ravel(self.per_step_cost(costs))[0]) * s.min_steps
        if need > self.budget.amount:
            return (f"the budget is too small: {s.min_steps} optimizer steps (--min-steps) of the smallest model "
                    f"(d_model {d}, {layers} layers, {batch * s.seq_len} tokens a step) cost {need:.3g} "
                    f"{self.budget.kind}, {need / self.budget.amount:.3g}x the budget; raise the budget or search "
                    "smaller models and batches (--d-model-range, --batch-range, --min-steps)")
        return ("no full-training schedule in the search space fits the budget and memory; widen the space "
                "(--d-model-range, --layers-range, --batch-range)")

    def paper_schedule(self, layers: int, d_model: int, batch_tokens: int, n_stages: int = 4) -> Evaluation | None:
        """The study's schedule (freeze + all per stage, then continual) at this budget."""
        layers = max(n_stages, layers - layers % n_stages)
        ref = paper_incremental(layers, n_stages, tokens=1.0e9, model=parse_spec(
            {"model": {"d_model": d_model, "n_heads": int(self.space.n_heads(d_model)),
                       "vocab_size": self.space.vocab_size, "seq_len": self.space.seq_len},
             "training": {"micro_batch_size": 1, "batch_size": 1}, "stages": [{"layers": 1, "tokens": 1}]}).model)
        stages = [{**st.model_dump(exclude_none=True, exclude={"tokens"}), "_weight": st.tokens} for st in ref.stages]
        n_gpus = self.hardware.n_gpus
        batch = max(n_gpus, batch_tokens // self.space.seq_len // n_gpus * n_gpus)
        spec = self._fit_and_spend(ref.model.model_dump(exclude_none=True), stages, batch).spec
        return None if spec is None else self.evaluate(spec)

    def full_training_loss_at(self, amount: float) -> float:
        """Best full-training loss at another budget of the same kind."""
        return float(np.min(self.full_training_grid(amount)[3]))

    def budget_for_full_training_loss(self, target: float) -> float | None:
        """Smallest budget at which full training reaches ``target`` (bisection in log)."""
        lo, hi = self.budget.amount / 100, self.budget.amount * 100
        if self.full_training_loss_at(hi) > target:
            return None
        for _ in range(30):
            mid = math.sqrt(lo * hi)
            if self.full_training_loss_at(mid) > target:
                lo = mid
            else:
                hi = mid
            if hi / lo < 1.01:
                break
        return hi


STAGE_FIELDS = [f.name for f in fields(StageShape)]


def _steps(spec: ScheduleSpec) -> list[int]:
    return [round(st.tokens / (spec.training.batch_size * spec.model.seq_len)) for st in spec.stages]


def _depths(space: SearchSpace) -> list[int]:
    return sorted({int(round(x)) for x in np.geomspace(space.min_layers, space.max_layers, 12)})


def _spec(model: dict, training: dict, hardware: dict, stages: list[dict], tokens: list[float]) -> ScheduleSpec:
    body = [{**{k: v for k, v in st.items() if not k.startswith("_")}, "tokens": t} for st, t in zip(stages, tokens)]
    return parse_spec({"model": model, "training": training, "hardware": hardware, "stages": body})
