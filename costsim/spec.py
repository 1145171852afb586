"""The schedule spec: what a user writes to describe a training run that may grow.

Strict on purpose: every model forbids unknown keys and NaN/inf, so a misspelled key
or a bad number is an error with the field's path, never silently dropped.
A spec loads from YAML, JSON or TOML (``load_spec``).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from costsim.constants import LIMITS, MAX_INT64_QUANTITY, MAX_STAGE_TOKENS, SECONDS_PER_HOUR
from costsim.errors import Mistakes, SpecError, validation_message
from costsim.growth import DEFAULT_DEPTH_OPERATOR, DEFAULT_WIDTH_OPERATOR, DEPTH_OPERATORS, WIDTH_OPERATORS, describe
from costsim.hardware import GPUSpec, gpu_preset_names, load_gpu
from costsim.lr import ConstantLR, LRSchedule
from costsim.parallel import PIPELINE_SCHEDULES
from costsim.trainers import REFERENCE, TrainerProfile, load_trainer, with_overrides

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


def _limited(name: str):
    """A positive int no larger than ``LIMITS[name]``, refused with the limit named."""
    limit = LIMITS[name]

    def check(value: int) -> int:
        if value > limit:
            raise ValueError(f"{value} is beyond any real run (costsim takes at most {limit:,})")
        return value

    return Annotated[int, Field(gt=0), AfterValidator(check)]


def _tokens(value: float) -> float:
    if value > MAX_STAGE_TOKENS:
        raise ValueError(f"{value:g} tokens is beyond any real run (costsim takes at most {MAX_STAGE_TOKENS:g} "
                         "a stage)")
    return value

GrowthName = Literal[*DEPTH_OPERATORS, *WIDTH_OPERATORS]
WidthGrowthName = Literal[*WIDTH_OPERATORS]

_TRAIN_POLICY = re.compile(r"^(all|new|top:[1-9][0-9]*)$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(StrictModel):
    """The architecture of the final model (the last stage's width and depth).

    Instead of the fields, a spec may name a shipped model, ``{preset: NAME}``, or a
    Hugging Face ``{hf_config: PATH}`` (a config.json, or a folder holding one; relative
    to the spec file, else to the working directory), with any field beside it as an
    override, e.g. ``{preset: llama-3-8b, seq_len: 4096}`` (costsim/models.py).
    """

    d_model: _limited("d_model")
    n_heads: _limited("n_heads")
    vocab_size: _limited("vocab_size")
    seq_len: _limited("seq_len")
    tied_embeddings: bool = True
    d_ff: _limited("d_ff") | None = Field(None, description="MLP hidden width; default 4*d_model")
    n_kv_heads: _limited("n_heads") | None = Field(None, description="key/value heads (GQA); default n_heads")
    mlp: Literal["gelu", "swiglu"] = "gelu"
    bias: bool = Field(False, description="biases in Linear layers (GPT-2 had them; they add no counted FLOPs)")
    # Variants that external models (presets, Hugging Face configs) need for exact
    # parameter counts; the defaults are the reference GPT's, so old specs cost the same.
    qkv_bias: bool = Field(False, description="biases on the query/key/value projection only (Qwen2)")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="rmsnorm: a scale and no shift (Llama)")
    positions: Literal["learned", "rotary"] = Field(
        "learned", description="learned: a seq_len x d_model table; rotary: no parameters (its elementwise FLOPs "
        "are not counted, like every non-matmul op)")

    @model_validator(mode="before")
    @classmethod
    def _external(cls, data: object, info: ValidationInfo) -> object:
        """Expand ``preset`` or ``hf_config`` into the fields, which are then checked as written."""
        if isinstance(data, dict) and ({"preset", "hf_config"} & data.keys()):
            # costsim.models builds ModelSpecs, so it imports this module, not the other way round
            from costsim.models import model_fields

            return model_fields(data, (info.context or {}).get("base_dir"))
        return data

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSpec:
        if problems := _heads_problems("", self.d_model, self.n_heads, self.n_kv_heads):
            raise Mistakes(problems)
        return self


class TrainingSpec(StrictModel):
    micro_batch_size: _limited("micro_batch_size") = Field(description="sequences per forward pass on one GPU")
    batch_size: _limited("batch_size") = Field(description="sequences per optimizer step over all GPUs")
    precision: Literal["fp32", "bf16-mixed"] = "bf16-mixed"
    optimizer: Literal["adamw"] = "adamw"
    recompute: Literal["none", "full"] = "none"
    parallelism: Literal["ddp", "zero1", "zero2", "zero3"] = Field(
        "ddp", description="how the data-parallel GPUs share the training state (ZeRO shards over them only)")
    tensor_parallel: _limited("tensor_parallel") = Field(
        1, description="GPUs splitting each block (Megatron); must divide n_gpus, every stage's heads, key/value "
        "heads and d_ff")
    pipeline_parallel: _limited("pipeline_parallel") = Field(
        1, description="pipeline ranks, each holding a run of blocks; at most every stage's layers")
    sequence_parallel: bool = Field(False, description="Megatron sequence parallelism: activations outside the "
                                    "tensor-parallel regions split by tokens over tensor_parallel")
    pipeline_schedule: Literal[*PIPELINE_SCHEDULES] = Field(
        "1f1b", description="1f1b, or interleaved (virtual_stages model chunks a pipeline rank)")
    virtual_stages: _limited("virtual_stages") = Field(1, description="model chunks a pipeline rank holds under the "
                                                       "interleaved schedule (2 or more); 1 under 1f1b")
    context_parallel: _limited("tensor_parallel") = Field(
        1, description="GPUs splitting each sequence (Megatron's ring attention, two load-balanced chunks a rank); "
        "they hold the same weights, so gradients and ZeRO run over data x context parallel GPUs")
    shard_group: _limited("n_gpus") | None = Field(
        None, description="hybrid sharding (FSDP HYBRID_SHARD, HSDP): ZeRO shards its states over groups of this "
        "many of the GPUs holding the same weights (data x context parallel) and replicates the shards over the "
        "groups; default all of them (full shard)")
    trainer_profile: str = Field(REFERENCE, description="what the training framework keeps on each GPU: a profile in "
                                 "costsim/data/trainers (reference, fsdp, megatron, ...) or a .json of its keys")
    trainer_overrides: dict[str, StrictBool | StrictInt | StrictFloat | str] = Field(
        default_factory=dict, description="switches of trainer_profile set otherwise, e.g. {optimizer_state: bf16, "
        "master_weights: false} or {attention_kernel_speedup: 1.0} (costsim/trainers.py lists them)")
    lr_schedule: LRSchedule = Field(default_factory=ConstantLR, description="constant | cosine | wsd (by kind)")
    lr_reset_per_stage: bool = Field(False, description="restart the schedule (and warmup) at every stage")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay on >=2-D weights")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    grad_clip: PositiveFloat | None = Field(None, description="max global grad norm; the study used none")
    seed: int = Field(1337, ge=0, lt=2**63, description="random seed (0 to 2^63-1)")

    @field_validator("trainer_profile")
    @classmethod
    def _known_trainer(cls, name: str) -> str:
        try:
            load_trainer(name)
        except SpecError as exc:  # unknown, or a file that is not a profile: one line naming the choices
            raise ValueError(str(exc)) from None
        return name

    @model_validator(mode="after")
    def _valid_overrides(self) -> TrainingSpec:
        try:
            self.trainer()
        except SpecError as exc:
            raise ValueError(str(exc)) from None
        return self

    def trainer(self) -> TrainerProfile:
        """The trainer profile this training runs under, overrides applied."""
        return with_overrides(self.trainer_profile, self.trainer_overrides)


class HardwareSpec(StrictModel):
    gpu: str | GPUSpec = Field("h200", description="a preset name or an inline GPU")
    n_gpus: _limited("n_gpus") = 1
    gpus_per_node: _limited("gpus_per_node") = Field(8, description="GPUs sharing one node's fast interconnect")
    price_per_gpu_hour: PositiveFloat | None = Field(None, le=1e4,
                                                     description="USD; default: the preset's indicative price")
    calibration: str | None = Field(None, description="time/memory profile name; default: the GPU's own or 'generic'")

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, gpu: str | GPUSpec) -> str | GPUSpec:
        if isinstance(gpu, str) and gpu not in gpu_preset_names():
            raise ValueError(
                f"unknown GPU {gpu!r}; use one of {', '.join(gpu_preset_names())} or an inline GPU mapping"
            )
        return gpu

    def resolved_gpu(self) -> GPUSpec:
        return load_gpu(self.gpu) if isinstance(self.gpu, str) else self.gpu

    @property
    def usd_per_gpu_hour(self) -> float:
        if self.price_per_gpu_hour is not None:
            return self.price_per_gpu_hour
        return self.resolved_gpu().price_per_gpu_hour

    def cost_usd(self, seconds):
        """What ``seconds`` (a number or an array) of all the GPUs' time costs."""
        return seconds / SECONDS_PER_HOUR * self.usd_per_gpu_hour * self.n_gpus


class StageSpec(StrictModel):
    layers: _limited("layers") = Field(description="active blocks in this stage")
    tokens: Annotated[PositiveFloat, AfterValidator(_tokens)] = Field(description="tokens trained in this stage")
    train: str = Field("all", description="which blocks get gradients: all | new | top:K")
    freeze_embeddings: bool = False
    growth: GrowthName = Field(DEFAULT_DEPTH_OPERATOR, description="how blocks (or width) added at this stage are "
                               "made: " + describe(DEPTH_OPERATORS + WIDTH_OPERATORS))
    width_growth: WidthGrowthName | None = Field(None, description="width operator when a stage grows depth and "
                                                 f"width (default {DEFAULT_WIDTH_OPERATOR})")
    d_model: _limited("d_model") | None = Field(None, description="this stage's width; default the model's")
    n_heads: _limited("n_heads") | None = None
    d_ff: _limited("d_ff") | None = None
    reset_optimizer: bool = Field(False, description="start a fresh optimizer at this stage")
    tensor_parallel: _limited("tensor_parallel") | None = Field(
        None, description="this stage's tensor-parallel size; default training.tensor_parallel")
    pipeline_parallel: _limited("pipeline_parallel") | None = Field(
        None, description="this stage's pipeline ranks; default training.pipeline_parallel")
    name: str | None = None

    @field_validator("train")
    @classmethod
    def _policy(cls, train: str) -> str:
        if not _TRAIN_POLICY.match(train):
            raise ValueError(f"train {train!r} is not a policy; use all, new or top:K with K a positive integer")
        return train


class ScheduleSpec(StrictModel):
    name: str | None = None
    model: ModelSpec
    training: TrainingSpec
    hardware: HardwareSpec = HardwareSpec()
    stages: Annotated[list[StageSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleSpec:
        if problems := [*self._layout_problems(), *self._batch_problems(), *self._stage_problems(),
                        *self._magnitude_problems()]:
            raise Mistakes(problems)
        return self

    def stage_parallel(self, index: int) -> tuple[int, int]:
        """(tensor, pipeline) parallel sizes of stage ``index``: its own, else training's."""
        stage, t = self.stages[index], self.training
        return stage.tensor_parallel or t.tensor_parallel, stage.pipeline_parallel or t.pipeline_parallel

    def stage_data_parallel(self, index: int) -> int:
        """Data-parallel replicas of stage ``index``: the GPUs over its tensor x context x
        pipeline size."""
        tp, pp = self.stage_parallel(index)
        return max(self.hardware.n_gpus // (tp * pp * self.training.context_parallel), 1)

    @property
    def data_parallel(self) -> int:
        """Data-parallel replicas of the first stage (of every stage when the layout is one)."""
        return self.stage_data_parallel(0)

    @property
    def per_stage_layouts(self) -> bool:
        """Whether stages run in different (tensor, pipeline) layouts."""
        return len({self.stage_parallel(i) for i in range(len(self.stages))}) > 1

    def _layout_field(self, index: int, name: str) -> str:
        """Where stage ``index``'s ``name`` (tensor_parallel or pipeline_parallel) was set."""
        return f"stages[{index}].{name}" if getattr(self.stages[index], name) is not None else f"training.{name}"

    def _layout_problems(self) -> Iterator[str]:
        """The parallel layout of every stage against the GPUs and the stage's shape; one line
        a problem (a layout shared by several stages is checked, and named, once)."""
        t, n_gpus, v = self.training, self.hardware.n_gpus, self.training.virtual_stages
        seen: set[tuple[int, int]] = set()
        for i in range(len(self.stages)):
            tp, pp = self.stage_parallel(i)
            if (tp, pp) in seen:
                continue
            seen.add((tp, pp))
            tp_field, pp_field = self._layout_field(i, "tensor_parallel"), self._layout_field(i, "pipeline_parallel")
            own = not (tp_field.startswith("training") and pp_field.startswith("training"))
            where = f"stages[{i}]" if own else "training"
            cp = t.context_parallel
            if n_gpus % (tp * pp * cp):
                sizes = (f"{where}.tensor_parallel x pipeline_parallel = {tp} x {pp} = {tp * pp}" if cp == 1 else
                         f"{where}.tensor_parallel x pipeline_parallel x training.context_parallel = {tp} x {pp} x "
                         f"{cp} = {tp * pp * cp}")
                yield (f"{sizes} does not divide hardware.n_gpus {n_gpus}; choose sizes whose product divides the "
                       "GPU count")
            if t.pipeline_schedule == "interleaved":
                if pp == 1:
                    yield (f"training.pipeline_schedule: interleaved needs pipeline_parallel of 2 or more"
                           f"{'' if pp_field.startswith('training') else f' ({pp_field} is 1)'}; use 1f1b")
                elif v >= 2 and not n_gpus % (tp * pp):
                    micro = t.batch_size // (t.micro_batch_size * self.stage_data_parallel(i))
                    if micro % pp:
                        yield (f"training.batch_size: the interleaved schedule needs the micro-batches a step on "
                               f"each replica ({micro}) to be a multiple of pipeline_parallel {pp}; change "
                               "batch_size or micro_batch_size")
            if t.sequence_parallel and tp > 1 and self.model.seq_len % tp:
                yield (f"training.sequence_parallel splits the sequence over {tp_field} {tp}, which does not "
                       f"divide model.seq_len {self.model.seq_len}; change one of them")
        if t.context_parallel > 1 and self.model.seq_len % (2 * t.context_parallel):
            yield (f"training.context_parallel {t.context_parallel} splits each sequence into 2 x "
                   f"{t.context_parallel} load-balanced chunks, which model.seq_len {self.model.seq_len} does not "
                   "divide into; change one of them")
        if t.shard_group is not None:
            if t.parallelism == "ddp":
                yield ("training.shard_group: DDP shards nothing; use parallelism zero1, zero2 or zero3 to shard "
                       "over a group, or drop shard_group")
            for i in sorted({self.stage_data_parallel(i): i for i in range(len(self.stages))}.values()):
                tp, pp = self.stage_parallel(i)
                if n_gpus % (tp * pp * t.context_parallel):
                    continue  # no whole number of replicas: said above
                dp = self.stage_data_parallel(i) * t.context_parallel  # the GPUs with the same weights
                if dp % t.shard_group:
                    where = f"stages[{i}]'s " if self.per_stage_layouts else ""
                    what = "data x context parallel GPUs" if t.context_parallel > 1 else "data-parallel GPUs"
                    yield (f"training.shard_group {t.shard_group} does not divide {where}{what} {dp}; "
                           "choose a group size that divides them (often the GPUs of a node)")
        if t.pipeline_schedule == "interleaved" and v < 2:
            yield ("training.virtual_stages: the interleaved schedule needs 2 or more model chunks a pipeline "
                   "rank; set virtual_stages, or use pipeline_schedule 1f1b")
        elif t.pipeline_schedule != "interleaved" and v > 1:
            yield (f"training.virtual_stages {v} applies to the interleaved schedule only; set pipeline_schedule: "
                   "interleaved or virtual_stages: 1")
        for i, stage in enumerate(self.stages):
            tp, pp = self.stage_parallel(i)
            if tp == 1 and pp == 1:
                continue
            d_model, n_heads, d_ff = self.stage_width(stage)
            kv_heads = self.stage_kv_heads(stage)
            own = stage.tensor_parallel is not None
            for what, size in (("n_heads", n_heads), ("key/value heads", kv_heads), ("d_ff", d_ff)):
                if size % tp:
                    yield (f"stages[{i}]: tensor_parallel {tp} does not divide the stage's {what} {size}; choose a "
                           + ("stages[i].tensor_parallel that divides this stage's heads, key/value heads and d_ff"
                              if own else "tensor_parallel that divides the heads, key/value heads and d_ff of "
                              "every stage"))
                    break
            if stage.layers < pp * v:
                chunks = f"pipeline_parallel x virtual_stages = {pp * v}" if v > 1 else f"pipeline_parallel {pp}"
                yield (f"stages[{i}]: {stage.layers} layers cannot fill {chunks} pipeline chunks; use fewer pipeline "
                       "ranks or more layers in " + ("this stage" if stage.pipeline_parallel else "every stage"))

    def _batch_problems(self) -> Iterator[str]:
        t = self.training
        seen: set[int] = set()
        for i in range(len(self.stages)):
            tp, pp = self.stage_parallel(i)
            if self.hardware.n_gpus % (tp * pp * t.context_parallel):
                continue  # no whole number of replicas: _layout_problems said so
            if tp == pp == t.context_parallel == 1:
                per_step, what = t.micro_batch_size * self.hardware.n_gpus, "micro_batch_size x n_gpus"
            else:
                per_step = t.micro_batch_size * self.stage_data_parallel(i)
                what = ("micro_batch_size x data-parallel replicas (n_gpus / (tensor_parallel x pipeline_parallel"
                        + (" x context_parallel))" if t.context_parallel > 1 else "))"))
                if self.per_stage_layouts:
                    what = f"stages[{i}]'s {what}"
            if t.batch_size % per_step and per_step not in seen:
                seen.add(per_step)
                yield (f"training.batch_size {t.batch_size} is not a multiple of {what} = {per_step}; "
                       "choose a batch_size that gradient accumulation can reach")

    def _stage_problems(self) -> Iterator[str]:
        """Each stage against the model and the stage before it; every problem, not the first."""
        previous: StageSpec | None = None
        for i, stage in enumerate(self.stages):
            d_model, n_heads, _ = self.stage_width(stage)
            where = f"stages[{i}]"
            yield from _heads_problems(where, d_model, n_heads)
            if self.model.n_kv_heads is not None:
                kv_exact = self.model.n_kv_heads * n_heads / self.model.n_heads
                if kv_exact != int(kv_exact) or kv_exact < 1 or n_heads % int(kv_exact):
                    yield (f"{where}.n_heads: {n_heads} heads with the model's "
                           f"{self.model.n_kv_heads}:{self.model.n_heads} key/value ratio give no whole number of "
                           "key/value heads dividing the heads; pick n_heads that keeps the ratio")
            if stage.train.startswith("top:") and int(stage.train[4:]) > stage.layers:
                yield f"{where}.train: {stage.train} asks for more blocks than the stage's {stage.layers} layers"
            growth = list(self._growth_problems(i, previous)) if previous is not None else []
            yield from growth
            previous = stage
        # a last stage already refused against the stage before it is not also compared with the model
        last = self.stages[-1]
        if self.stage_width(last) != (self.model.d_model, self.model.n_heads, self.model_d_ff) and not growth:
            yield "stages[-1]: the last stage's width must be the model's (d_model, n_heads, d_ff)"

    def _growth_problems(self, i: int, previous: StageSpec) -> Iterator[str]:
        """Stage ``i`` may only grow from the stage before it, by operators that can do it."""
        stage, where = self.stages[i], f"stages[{i}]"
        width = self.stage_width(stage)
        prev_width = self.stage_width(previous)
        if stage.layers < previous.layers:
            yield (f"{where}.layers: {stage.layers} is fewer than the previous stage's {previous.layers}; "
                   "layers may only grow")
        for field, new, old in zip(("d_model", "n_heads", "d_ff"), width, prev_width):
            if new < old:  # the first field that shrinks (d_ff follows d_model); no operator narrows: none checked
                yield f"{where}.{field}: {new} is smaller than the previous stage's {old}; width may only grow"
                return
        widens = width != prev_width
        deepens = stage.layers > previous.layers
        if widens and deepens and stage.growth in WIDTH_OPERATORS:
            yield (f"{where}.growth: the stage grows depth and width; set growth to a depth operator "
                   f"({', '.join(DEPTH_OPERATORS)}) and width_growth to a width operator")
        if widens and self.growth_operators(i)[1] == "widen_preserving":
            factor = width[0] // prev_width[0]
            if tuple(factor * w for w in prev_width) != width:
                yield (f"{where}: widen_preserving needs d_model, n_heads and d_ff to grow by one integer "
                       f"factor (here {prev_width} -> {width}); use widen_random otherwise")

    def _magnitude_problems(self) -> Iterator[str]:
        """Refuse a spec whose per-micro-batch FLOPs or bytes would not fit the engine's
        int64, computed here in Python's exact integers (a generous upper bound)."""
        m, t = self.model, self.training
        micro_tokens = t.micro_batch_size * m.seq_len
        for i, stage in enumerate(self.stages):
            d, _, f = self.stage_width(stage)
            per_token = stage.layers * (16 * d * d + 9 * d * f + 14 * m.seq_len * d) + 6 * d * m.vocab_size
            flops = 3 * micro_tokens * per_token
            bytes_ = 16 * micro_tokens * (stage.layers * (8 * d + 3 * f + 2 * m.seq_len) + 2 * m.vocab_size)
            if max(flops, bytes_) > MAX_INT64_QUANTITY:
                yield (f"stages[{i}]: one micro-batch of this shape is about {float(max(flops, bytes_)):.2g} FLOPs "
                       "or bytes, beyond any real run and beyond what costsim computes exactly (2^62); shrink the "
                       "model, seq_len or micro_batch_size")

    @property
    def model_d_ff(self) -> int:
        return self.model.d_ff or 4 * self.model.d_model

    def stage_width(self, stage: StageSpec) -> tuple[int, int, int]:
        """(d_model, n_heads, d_ff) of a stage; unset fields follow the final model."""
        d_model = stage.d_model or self.model.d_model
        n_heads = stage.n_heads or (self.model.n_heads if d_model == self.model.d_model
                                    else max(1, d_model * self.model.n_heads // self.model.d_model))
        d_ff = stage.d_ff or (self.model_d_ff if d_model == self.model.d_model else 4 * d_model)
        return d_model, n_heads, d_ff

    def stage_kv_heads(self, stage: StageSpec) -> int:
        """Key/value heads of a stage: the model's GQA ratio applied to the stage's heads."""
        n_heads = self.stage_width(stage)[1]
        if self.model.n_kv_heads is None:
            return n_heads
        return self.model.n_kv_heads * n_heads // self.model.n_heads

    def growth_operators(self, index: int) -> tuple[str, str]:
        """(depth operator, width operator) that stage ``index`` grows with."""
        stage = self.stages[index]
        depth = stage.growth if stage.growth in DEPTH_OPERATORS else DEFAULT_DEPTH_OPERATOR
        width = stage.width_growth or (stage.growth if stage.growth in WIDTH_OPERATORS else DEFAULT_WIDTH_OPERATOR)
        return depth, width

    def n_trainable_blocks(self, index: int) -> int:
        """How many of stage ``index``'s blocks (counted from the top) get gradients.

        ``new`` means the blocks added by the most recent depth growth at or before
        this stage; in the first stage every block is new.
        """
        stage = self.stages[index]
        if stage.train == "all":
            return stage.layers
        if stage.train.startswith("top:"):
            return int(stage.train[4:])
        below = stage.layers
        for earlier in reversed(self.stages[:index]):
            if earlier.layers < stage.layers:
                below = earlier.layers
                break
        else:
            below = 0
        return stage.layers - below

    @property
    def total_tokens(self) -> float:
        return sum(s.tokens for s in self.stages)


def _heads_problems(where: str, d_model: int, n_heads: int, n_kv_heads: int | None = None) -> list[str]:
    """``where`` prefixes each message when pydantic cannot locate the error itself."""
    prefix = f"{where}: " if where else ""
    problems = []
    if d_model % n_heads:
        problems.append(f"{prefix}n_heads {n_heads} does not divide d_model {d_model}; pick n_heads that divides it")
    if n_kv_heads is not None and n_heads % n_kv_heads:
        problems.append(f"{prefix}n_kv_heads {n_kv_heads} does not divide n_heads {n_heads}; pick one that divides it")
    return problems


_PARSERS = {
    ".yaml": yaml.safe_load,
    ".yml": yaml.safe_load,
    ".json": json.loads,
    ".toml": tomllib.loads,
}


def parse_spec(data: object, base_dir: str | Path | None = None) -> ScheduleSpec:
    """Validate already-parsed data; raise SpecError listing every mistake, one line each.

    ``base_dir`` is where a relative ``model.hf_config`` path is looked for first (the
    spec file's folder); the working directory otherwise.
    """
    if not isinstance(data, dict):
        raise SpecError("the spec must be a mapping with model, training, hardware and stages")
    try:
        return ScheduleSpec.model_validate(data, context={"base_dir": None if base_dir is None else Path(base_dir)})
    except ValidationError as exc:
        raise SpecError(validation_message(exc, ScheduleSpec)) from None
    except RecursionError:
        raise SpecError("the spec is nested too deeply; a spec is a few levels deep") from None


def load_spec(path: str | Path) -> ScheduleSpec:
    """Load a spec from a .yaml/.yml, .json or .toml file."""
    path = Path(path)
    parser = _PARSERS.get(path.suffix.lower())
    if parser is None:
        raise SpecError(f"{path}: unknown spec format {path.suffix!r}; use .yaml, .yml, .json or .toml")
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (not UTF-8); give a YAML, JSON or TOML spec") from None
    try:
        data = parser(text)
    except (yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise SpecError(f"{path}: not valid {path.suffix[1:].upper()}: {first}") from None
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be a spec; a spec is a few levels deep") from None
    except ValueError as exc:  # e.g. an integer literal of thousands of digits
        first = (str(exc).strip().splitlines() or ["invalid value"])[0]
        raise SpecError(f"{path}: cannot read a value ({first}); numbers in a spec are ordinary sizes") from None
    return parse_spec(data, base_dir=path.parent)
