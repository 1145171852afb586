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

import math
from dataclasses import dataclass, fields

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from costsim.constants import COMPUTE_BYTES, SECONDS_PER_HOUR
from costsim.engine import estimate_many, stage_shape
from costsim.errors import SpecError
from costsim.growth import DEPTH_OPERATORS
from costsim.hardware import GPUSpec
from costsim.loss import LossProfile, predict, reducible, stage_plans
from costsim.ops import StageShape
from costsim.paper import paper_incremental
from costsim.profile import CostProfile
from costsim.spec import HardwareSpec, ScheduleSpec, parse_spec


class Budget(BaseModel):
    """Exactly one of counted FLOPs, wall-clock hours or US dollars."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    flops: float | None = Field(None, gt=0)
    hours: float | None = Field(None, gt=0)
    usd: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if sum(v is not None for v in (self.flops, self.hours, self.usd)) != 1:
            raise ValueError("give exactly one budget: --budget (FLOPs), --budget-hours or --budget-usd")
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


class SearchSpace(BaseModel):
    """What the search may choose, and the fixed parts of every schedule."""

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
    width_growth: bool = True
    precision: str = "bf16-mixed"

    @property
    def reference_batch_tokens(self) -> int:
        """Batch of the reference schedules (full training, the study's): half a
        million tokens as in the study, when the space allows it."""
        return 2**19 if 2**19 in self.batch_tokens else self.batch_tokens[0]


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


class Planner:
    """Builds and evaluates candidates for one budget, hardware and pair of profiles."""

    def __init__(self, budget: Budget, hardware: HardwareSpec, space: SearchSpace, cost_profile: CostProfile,
                 loss_profile: LossProfile, max_memory_bytes: float | None = None, parallelism: str = "ddp"):
        self.budget, self.hardware, self.space = budget, hardware, space
        self.cost_profile, self.loss_profile = cost_profile, loss_profile
        self.gpu: GPUSpec = hardware.resolved_gpu()
        self.memory_limit = min(self.gpu.memory_bytes, max_memory_bytes or math.inf)
        self.parallelism = parallelism

    # --- building ------------------------------------------------------------------------

    def stages_layout(self, *, layers: int, d_model: int, n_stages: int, first_fraction: float, grow_share: float,
                      freeze_share: float, operator: str, width_stages: int) -> list[dict]:
        """Stage entries with relative token weights (``_weight``): depths rise linearly
        from ``first_fraction`` of the final depth; the growing stages share
        ``grow_share`` of the tokens, the final one the rest; each stage that adds
        blocks optionally starts with a phase training only them (``freeze_share`` of
        its tokens); the first ``width_stages`` run at half width and the first
        full-width stage widens function-preservingly."""
        n_heads = max(1, d_model // self.space.head_dim)
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

    def build(self, *, layers: int, d_model: int, n_stages: int = 1, first_fraction: float = 0.25,
              grow_share: float = 0.5, freeze_share: float = 0.0, operator: str = "identity",
              width_stages: int = 0, batch_tokens: int = 2**19) -> ScheduleSpec | None:
        """A schedule that spends the budget, or None if no micro-batch fits in memory."""
        s = self.space
        stages = self.stages_layout(layers=layers, d_model=d_model, n_stages=n_stages, first_fraction=first_fraction,
                                    grow_share=grow_share, freeze_share=freeze_share, operator=operator,
                                    width_stages=width_stages)
        n_gpus = self.hardware.n_gpus
        batch = max(n_gpus, batch_tokens // s.seq_len // n_gpus * n_gpus)
        model = {"d_model": d_model, "n_heads": max(1, d_model // s.head_dim), "vocab_size": s.vocab_size,
                 "seq_len": s.seq_len}
        return self._fit_and_spend(model, stages, batch)

    def _fit_and_spend(self, model: dict, stages: list[dict], batch: int) -> ScheduleSpec | None:
        """Pick the largest micro-batch that fits every stage (recompute only if none
        does without), then spend the budget."""
        n_gpus = self.hardware.n_gpus
        per_gpu = batch // n_gpus
        weights = np.array([st["_weight"] for st in stages])
        weights = weights / weights.sum()
        hardware = self.hardware.model_dump(exclude_none=True)
        training = {"micro_batch_size": per_gpu, "batch_size": batch, "precision": self.space.precision,
                    "parallelism": self.parallelism}
        probe = _spec(model, training, hardware, stages, [1.0e9] * len(stages))
        micros = np.array([m for m in range(per_gpu, 0, -1) if per_gpu % m == 0])
        shape = stage_shape(probe)
        for recompute in (False, True):
            # every (micro-batch, stage) pair in one vectorised call
            grid = StageShape.of(**{**{f: getattr(shape, f)[None, :] for f in STAGE_FIELDS},
                                    "micro_batch_size": micros[:, None], "recompute": recompute})
            costs = self._costs_of(grid, batch)
            fits = np.all(costs.peak_memory_bytes <= self.memory_limit, axis=1)
            if fits.any():
                row = int(np.argmax(fits))
                chosen = {**training, "micro_batch_size": int(micros[row]),
                          "recompute": "full" if recompute else "none"}
                per_step = self.per_step_cost(costs)[row]
                return self._spend(model, chosen, hardware, stages, weights, per_step)
        return None

    def _costs(self, spec: ScheduleSpec):
        return self._costs_of(stage_shape(spec), spec.training.batch_size)

    def _costs_of(self, shape: StageShape, batch: int):
        return estimate_many(shape, batch_size=batch, gpu=self.gpu, profile=self.cost_profile,
                             precision=self.space.precision, n_gpus=self.hardware.n_gpus, parallelism=self.parallelism)

    def per_step_cost(self, costs) -> np.ndarray:
        """Budget units one optimizer step of each stage spends."""
        if self.budget.kind == "flops":
            return costs.flops_counted_per_step
        if self.budget.kind == "hours":
            return costs.step_time_s / SECONDS_PER_HOUR
        return self.hardware.cost_usd(costs.step_time_s)

    def _spend(self, model, training, hardware, stages, weights, per_step) -> ScheduleSpec | None:
        tokens_per_step = training["batch_size"] * model["seq_len"]
        # steps_s = w_s * S with sum(steps_s * cost_s) = budget; floor so the budget holds
        total_steps = self.budget.amount / float(np.dot(weights, per_step))
        steps = np.floor(weights * total_steps).astype(int)
        if np.any(steps < 1):
            return None
        return _spec(model, training, hardware, stages, [float(n * tokens_per_step) for n in steps])

    # --- evaluating ----------------------------------------------------------------------

    def evaluate(self, spec: ScheduleSpec) -> Evaluation:
        costs = self._costs(spec)
        steps = [round(st.tokens / (spec.training.batch_size * spec.model.seq_len)) for st in spec.stages]
        curve = predict(self.loss_profile, stage_plans(spec, steps), points_per_stage=1)
        spent = float(np.dot(steps, self.per_step_cost(costs)))
        time_s = float(np.dot(steps, costs.step_time_s))
        return Evaluation(
            spec=spec, loss=float(curve.loss[-1]), loss_lower=float(curve.lower[-1]),
            loss_upper=float(curve.upper[-1]), flops_counted=float(np.dot(steps, costs.flops_counted_per_step)),
            time_s=time_s, cost_usd=self.hardware.cost_usd(time_s),
            peak_memory_bytes=float(costs.peak_memory_bytes.max()), stages=len(spec.stages),
            fits_in_memory=bool(np.all(costs.peak_memory_bytes <= self.memory_limit)),
            budget_used=spent / self.budget.amount,
        )

    # --- reference points ----------------------------------------------------------------

    def full_training_grid(self, amount: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(d_model, layers, predicted final loss) of every full-training shape in the
        space at a budget (default: this one), vectorised. Constant LR, no warmup: the
        loss is the law in closed form. Shapes that fit nowhere get +inf."""
        s = self.space
        d, layers = (a.ravel() for a in np.meshgrid(np.array(s.d_models), np.array(_depths(s))))
        keep = (d / layers >= s.aspect_ratio[0]) & (d / layers <= s.aspect_ratio[1])
        d, layers = d[keep], layers[keep]
        n_gpus = self.hardware.n_gpus
        batch = max(n_gpus, s.reference_batch_tokens // s.seq_len // n_gpus * n_gpus)
        per_gpu = batch // n_gpus
        micros = [m for m in range(per_gpu, 0, -1) if per_gpu % m == 0]
        chosen_cost = np.full(len(d), np.inf)
        for recompute in (False, True):
            for micro in micros:
                shape = StageShape.of(layers=layers, d_model=d, n_heads=np.maximum(1, d // s.head_dim),
                                      n_kv_heads=np.maximum(1, d // s.head_dim), d_ff=4 * d,
                                      vocab_size=s.vocab_size, seq_len=s.seq_len, micro_batch_size=micro,
                                      n_trainable=layers, train_embeddings=True, tied=True, swiglu=False,
                                      recompute=recompute, compute_bytes=COMPUTE_BYTES[s.precision])
                costs = estimate_many(shape, batch_size=batch, gpu=self.gpu, profile=self.cost_profile,
                                      precision=s.precision, n_gpus=n_gpus, parallelism=self.parallelism)
                fits = (costs.peak_memory_bytes <= self.memory_limit) & np.isinf(chosen_cost)
                chosen_cost = np.where(fits, self.per_step_cost(costs), chosen_cost)
                n_params = costs.params_non_embedding
        steps = np.floor((amount or self.budget.amount) / chosen_cost)
        tokens = steps * batch * s.seq_len
        p = self.loss_profile.params
        loss = np.where(steps >= 1, p.E + reducible(p, n_params, tokens), np.inf)
        return d, layers, loss

    def best_full_training(self) -> Evaluation:
        """The compute-optimal full-size model at this budget."""
        d, layers, loss = self.full_training_grid()
        if not np.isfinite(loss).any():
            raise SpecError("no full-training schedule fits this GPU's memory within the budget; "
                            "raise the budget, add GPUs or allow more memory")
        best = int(np.argmin(loss))
        spec = self.build(layers=int(layers[best]), d_model=int(d[best]), n_stages=1,
                          batch_tokens=self.space.reference_batch_tokens)
        return self.evaluate(spec)

    def paper_schedule(self, layers: int, d_model: int, n_stages: int = 4) -> Evaluation | None:
        """The study's schedule (freeze + all per stage, then continual) at this budget."""
        layers = max(n_stages, layers - layers % n_stages)
        ref = paper_incremental(layers, n_stages, tokens=1.0e9, model=parse_spec(
            {"model": {"d_model": d_model, "n_heads": max(1, d_model // self.space.head_dim),
                       "vocab_size": self.space.vocab_size, "seq_len": self.space.seq_len},
             "training": {"micro_batch_size": 1, "batch_size": 1}, "stages": [{"layers": 1, "tokens": 1}]}).model)
        stages = [{**st.model_dump(exclude_none=True, exclude={"tokens"}), "_weight": st.tokens} for st in ref.stages]
        n_gpus = self.hardware.n_gpus
        batch = max(n_gpus, self.space.reference_batch_tokens // self.space.seq_len // n_gpus * n_gpus)
        spec = self._fit_and_spend(ref.model.model_dump(exclude_none=True), stages, batch)
        return None if spec is None else self.evaluate(spec)

    def full_training_loss_at(self, amount: float) -> float:
        """Best full-training loss at another budget of the same kind."""
        return float(np.min(self.full_training_grid(amount)[2]))

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


def _depths(space: SearchSpace) -> list[int]:
    return sorted({int(round(x)) for x in np.geomspace(space.min_layers, space.max_layers, 12)})


def _spec(model: dict, training: dict, hardware: dict, stages: list[dict], tokens: list[float]) -> ScheduleSpec:
    body = [{**{k: v for k, v in st.items() if not k.startswith("_")}, "tokens": t} for st, t in zip(stages, tokens)]
    return parse_spec({"model": model, "training": training, "hardware": hardware, "stages": body})
