"""Estimate a schedule: FLOPs, memory, time and money per stage and in total.

``estimate_many`` is the vectorised core (numpy arrays, one element per candidate
stage): the search's inner loop. ``estimate`` turns a spec into those arrays, calls
the same core, and wraps the result in typed models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from pydantic import BaseModel

from costsim.constants import COMPUTE_BYTES
from costsim.flops import (
    RankParameters,
    micro_batch_flops,
    parameter_counts,
    rank_parameter_counts,
    study_units_per_token,
)
from costsim.hardware import GPUSpec
from costsim.memory import SHARDED, fits_within, peak_memory, usable_memory_bytes
from costsim.ops import StageShape
from costsim.parallel import (
    Layout,
    Link,
    PipelineRank,
    data_parallel_s,
    group_link,
    pipeline_ranks,
    pipeline_send_s,
    tensor_parallel_all_reduces,
    tensor_parallel_overlapped_s,
    tensor_parallel_s,
)
from costsim.profile import CostProfile, profile_for
from costsim.spec import ScheduleSpec
from costsim.timing import block_gemm_s, micro_batch_time_s, optimizer_time_s, ring_attention_s
from costsim.trainers import TrainerProfile, grad_sync_bytes, load_trainer, run_weight_bytes, shape_fields

Array = np.ndarray


@dataclass(frozen=True)
class StageCosts:
    """Per-optimizer-step costs of stages (arrays), for one GPU type and DP layout."""

    flops_counted_per_step: Array
    flops_model_per_step: Array
    flops_model_causal_per_step: Array
    step_time_s: Array
    peak_memory_bytes: Array  # reserved: what has to fit on the GPU
    peak_allocated_bytes: Array
    activation_bytes: Array
    fits_in_memory: Array
    params_total: Array
    params_trainable: Array
    params_non_embedding: Array
    pipeline_bubble_fraction: Array  # (p - 1) / (m v): the pipeline's idle time over its ideal
    # where the step goes (seconds; they add up to step_time_s), on the pipeline rank whose
    # micro-batch is slowest: its micro-batches' compute, their exposed tensor-parallel
    # collectives, pipeline sends and context-parallel passes, the bubble, the slowest
    # optimizer update, the exposed data-parallel traffic
    step_compute_s: Array
    step_tensor_s: Array
    step_pipeline_s: Array
    step_context_s: Array  # ring attention's key/value passes that its attention does not hide
    step_bubble_s: Array
    step_optimizer_s: Array
    step_data_s: Array


def estimate_many(shape: StageShape, *, batch_size, gpu: GPUSpec, profile: CostProfile, precision: str = "bf16-mixed",
                  n_gpus=1, parallelism: str = "ddp", memory_limit_bytes: float | None = None,
                  trainer: TrainerProfile | None = None, layout: Layout | None = None) -> StageCosts:
    """Costs per optimizer step for many stages at once (all inputs broadcast). A stage
    fits when its peak stays within ``memory_limit_bytes`` (default: the GPU's memory less
    the standard headroom, ``usable_memory_bytes``). ``trainer`` (default: the reference)
    must be the profile whose per-op switches ``shape`` carries (``trainers.shape_fields``).
    ``layout`` (default: data parallelism over ``n_gpus``, in nodes of 8) splits the model
    over tensor, pipeline and data parallel GPUs (costsim/parallel.py).

    A step: each pipeline rank runs m micro-batches (m = batch / micro-batch / dp), each its
    compute plus the exposed tensor-parallel all-reduces and pipeline sends; the pipeline
    takes (m + (p-1)/v) times its slowest rank's micro-batch; then the slowest rank's
    optimizer update and the data-parallel traffic that the last backward does not hide.
    What counts as exposed follows ``trainer``'s overlap switches (``communication_terms``)."""
    trainer = trainer or load_trainer()
    profile = trainer.kernel_rates(profile)
    layout = Layout.of(n_gpus) if layout is None else layout
    batch_size = np.asarray(batch_size)
    micro_per_step = batch_size // shape.micro_batch_size  # over all GPUs
    accumulation = micro_per_step // layout.dp  # per data-parallel replica
    flops = micro_batch_flops(shape)
    params = parameter_counts(shape)
    peak = gpu.peak_flops_per_s(precision)
    backward_share = 1 - flops.forward / np.maximum(flops.counted, 1)
    shard_optimizer = layout.shard if SHARDED[parallelism][2] else 1
    dp_link = group_link(gpu, layout, "data")
    if parallelism != "ddp" and layout.hybrid:  # ZeRO inside a shard group, its shards all-reduced across groups
        dp_link = (group_link(gpu, layout, "shard"), group_link(gpu, layout, "replica"))
    slowest = None  # (micro-batch time, its compute, tensor, pipeline parts) of the slowest rank
    optimizer = exposed = 0.0
    for rank in pipeline_ranks(shape, layout, accumulation):
        s = rank.shape
        own = rank_parameter_counts(s, layout.tp, rank.embedding, rank.head)
        micro_time = micro_batch_time_s(s, peak, gpu.hbm_bandwidth_bytes_per_s, profile, layout, rank.head)
        tensor, pipeline, data = communication_terms(s, rank, own, micro_time, backward_share, trainer, profile,
                                                     gpu, peak, layout, parallelism, dp_link)
        context = ring_attention_s(s, peak, profile, layout, gpu)
        parts = (micro_time + tensor + pipeline + context, micro_time, tensor, pipeline, context)
        if slowest is None:
            slowest = parts
        else:
            slower = parts[0] > slowest[0]
            slowest = tuple(np.where(slower, new, old) for new, old in zip(parts, slowest))
        optimizer = np.maximum(optimizer, optimizer_time_s(s, gpu.hbm_bandwidth_bytes_per_s, profile,
                                                           shard_optimizer, own.trainable))
        exposed = np.maximum(exposed, data)
    stage_time, micro_compute, micro_tensor, micro_pipeline, micro_context = slowest
    fill = (layout.pp - 1) / layout.v
    data_time = np.where(layout.weight_replicas > 1, exposed, 0.0)
    memory = peak_memory(shape, profile, parallelism=parallelism, trainer=trainer, layout=layout,
                         micro_batches=accumulation)
    limit = usable_memory_bytes(gpu.memory_bytes) if memory_limit_bytes is None else memory_limit_bytes
    return StageCosts(
        # float: a large run's step passes int64 (9.2e18); float64 is exact below 2**53
        flops_counted_per_step=micro_per_step * flops.counted.astype(float),
        flops_model_per_step=micro_per_step * flops.model,
        flops_model_causal_per_step=micro_per_step * flops.model_causal,
        step_time_s=(accumulation + fill) * stage_time + optimizer + data_time,
        peak_memory_bytes=memory.peak_reserved,
        peak_allocated_bytes=memory.peak_allocated,
        activation_bytes=memory.activations,
        fits_in_memory=fits_within(memory.peak_reserved, limit),
        params_total=params.total,
        params_trainable=params.trainable,
        params_non_embedding=params.non_embedding,
        pipeline_bubble_fraction=layout.bubble_fraction(accumulation) * np.ones(np.shape(stage_time)),
        step_compute_s=accumulation * micro_compute,
        step_tensor_s=accumulation * micro_tensor,
        step_pipeline_s=accumulation * micro_pipeline,
        step_context_s=accumulation * micro_context,
        step_bubble_s=fill * stage_time,
        step_optimizer_s=optimizer * np.ones(np.shape(stage_time)),
        step_data_s=data_time * np.ones(np.shape(stage_time)),
    )


def communication_terms(s: StageShape, rank: PipelineRank, own: RankParameters, micro_time: Array,
                        backward_share: Array, trainer: TrainerProfile, profile: CostProfile, gpu: GPUSpec,
                        peak_flops_per_s, layout: Layout, parallelism: str,
                        dp_link: Link | tuple[Link, Link]) -> tuple[Array, Array, Array]:
    """A pipeline rank's exposed communication: per micro-batch its tensor-parallel collectives
    and pipeline sends, per step its data-parallel traffic, each hidden as far as ``trainer``
    overlaps it (costsim/parallel.py). ``micro_time``: the rank's compute for a micro-batch,
    ``backward_share`` of it the backward; ``peak_flops_per_s``: the matmul peak. The
    switches are Python-level, so a profile that overlaps nothing runs exactly the formulas
    (and the cost) of before."""
    activation = layout.tokens(s.tokens) * s.d_model  # elements of one micro-batch's activation on a GPU
    backward = backward_share * micro_time
    forward = micro_time - backward if trainer.overlap_p2p_comm or trainer.overlap_param_sync else None
    all_reduces = tensor_parallel_all_reduces(s.layers, s.n_backward_blocks, s.recompute, rank.embedding, rank.head)
    if trainer.tp_comm_overlap:
        passes = s.layers + s.n_backward_blocks * (1 + s.recompute)
        gemms = block_gemm_s(s, peak_flops_per_s, profile, layout)
        tensor = tensor_parallel_overlapped_s(passes, gemms, all_reduces, activation * s.compute_bytes, layout, gpu)
    else:
        tensor = tensor_parallel_s(all_reduces, activation * s.compute_bytes, layout, gpu)
    if trainer.overlap_p2p_comm:
        pipeline = pipeline_send_s(activation * s.residual_bytes, layout, gpu, forward, backward)
    else:
        pipeline = pipeline_send_s(activation * s.residual_bytes, layout, gpu)
    data = data_parallel_s(own.trainable, own.total, layout, parallelism, dp_link, backward, forward,
                           gather_bytes=run_weight_bytes(trainer, s), reduce_bytes=grad_sync_bytes(trainer, s),
                           param_bytes=run_weight_bytes(trainer, s) if trainer.overlap_param_sync else None,
                           overlap_grad_sync=trainer.overlap_grad_sync)
    return tensor, pipeline, data


# --- typed results -----------------------------------------------------------------


class StageEstimate(BaseModel):
    index: int
    name: str | None
    layers: int
    d_model: int
    n_heads: int
    d_ff: int
    train: str
    n_trainable_blocks: int
    freeze_embeddings: bool
    growth: str
    tokens: float
    steps: int
    params_total: int
    params_trainable: int
    params_non_embedding: int
    flops_counted_per_step: int
    flops_model_per_step: float
    flops_model_causal_per_step: float
    flops_counted: float
    flops_model: float
    study_units: float  # c x tokens: the paper's cost framework
    step_time_s: float
    time_s: float
    cost_usd: float
    mfu: float
    peak_memory_bytes: float
    peak_allocated_bytes: float
    activation_bytes: float
    fits_in_memory: bool
    fit_suggestion: str | None
    # the parallel layout the stage runs in: tensor x pipeline x data = n_gpus
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    context_parallel: int
    shard_group: int  # the GPUs ZeRO shards over: data x context parallel, or a hybrid shard group
    pipeline_bubble_fraction: float


class TotalEstimate(BaseModel):
    tokens: float
    flops_counted: float
    flops_model: float
    study_units: float
    time_s: float
    cost_usd: float
    peak_memory_bytes: float
    fits_in_memory: bool


class ScheduleEstimate(BaseModel):
    name: str | None
    gpu: str
    n_gpus: int
    parallelism: str
    precision: str
    calibration: str
    trainer_profile: str
    stages: list[StageEstimate]
    total: TotalEstimate


def stage_shape(spec: ScheduleSpec, micro_batch_size=None, recompute=None) -> StageShape:
    """The spec's stages as arrays (optionally with another micro-batch or recompute)."""
    widths = [spec.stage_width(s) for s in spec.stages]
    m, t = spec.model, spec.training
    return StageShape.of(
        layers=[s.layers for s in spec.stages],
        d_model=[w[0] for w in widths],
        n_heads=[w[1] for w in widths],
        n_kv_heads=[spec.stage_kv_heads(s) for s in spec.stages],
        d_ff=[w[2] for w in widths],
        vocab_size=m.vocab_size,
        seq_len=m.seq_len,
        micro_batch_size=t.micro_batch_size if micro_batch_size is None else micro_batch_size,
        n_trainable=[spec.n_trainable_blocks(i) for i in range(len(spec.stages))],
        train_embeddings=[not s.freeze_embeddings for s in spec.stages],
        tied=m.tied_embeddings,
        swiglu=m.mlp == "swiglu",
        recompute=(t.recompute == "full") if recompute is None else recompute,
        compute_bytes=COMPUTE_BYTES[t.precision],
        bias=m.bias,
        qkv_bias=m.qkv_bias,
        rms_norm=m.norm == "rmsnorm",
        learned_positions=m.positions == "learned",
        **shape_fields(t.trainer(), COMPUTE_BYTES[t.precision]),
    )


def steps_per_stage(spec: ScheduleSpec) -> list[int]:
    tokens_per_step = spec.training.batch_size * spec.model.seq_len
    return [int(np.ceil(s.tokens / tokens_per_step)) for s in spec.stages]


def along_schedule(spec: ScheduleSpec, steps: list[int], tokens: np.ndarray, per_step: Array) -> np.ndarray:
    """Cumulative sum of a per-step quantity (FLOPs, seconds) at token counts ``tokens``,
    with ``steps`` optimizer steps per stage."""
    tokens_per_step = spec.training.batch_size * spec.model.seq_len
    edges = np.cumsum([0] + [n * tokens_per_step for n in steps])
    total = np.zeros(np.shape(tokens), dtype=float)
    for i in range(len(steps)):
        inside = np.clip(np.asarray(tokens, dtype=float) - edges[i], 0, edges[i + 1] - edges[i])
        total += inside / tokens_per_step * float(per_step[i])
    return total


def study_units(spec: ScheduleSpec) -> Fraction:
    """The schedule's cost in the paper's units of c, exactly."""
    units = study_units_per_token(stage_shape(spec))
    return sum((Fraction(s.tokens) * int(u) for s, u in zip(spec.stages, units)), Fraction(0))


def spec_layout(spec: ScheduleSpec) -> Layout:
    """The spec's parallel layout (costsim/parallel.py)."""
    t, hw = spec.training, spec.hardware
    tp, pp = spec.stage_parallel(0)
    if spec.per_stage_layouts:  # one entry a stage, broadcasting with the stage shape's
        tp, pp = (list(sizes) for sizes in zip(*(spec.stage_parallel(i) for i in range(len(spec.stages)))))
    return Layout.of(n_gpus=hw.n_gpus, tensor_parallel=tp, pipeline_parallel=pp,
                     sequence_parallel=t.sequence_parallel, virtual_stages=t.virtual_stages,
                     gpus_per_node=hw.gpus_per_node, shard_group=t.shard_group, context_parallel=t.context_parallel)


def spec_costs(spec: ScheduleSpec) -> StageCosts:
    """Every stage's per-step costs, term by term, under the spec's GPU calibration."""
    hw = spec.hardware
    return _costs(spec, profile_for(hw.gpu if isinstance(hw.gpu, str) else None, hw.calibration))


def _costs(spec: ScheduleSpec, profile: CostProfile, micro_batch_size=None, recompute=None) -> StageCosts:
    hw = spec.hardware
    return estimate_many(
        stage_shape(spec, micro_batch_size, recompute), batch_size=spec.training.batch_size, gpu=hw.resolved_gpu(),
        profile=profile, precision=spec.training.precision, n_gpus=hw.n_gpus, parallelism=spec.training.parallelism,
        trainer=spec.training.trainer(), layout=spec_layout(spec),
    )


def divisors(n: int) -> list[int]:
    """Every divisor of ``n``, largest first, in O(sqrt n): the micro-batches a batch splits into."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)}, reverse=True)


def _fit_suggestions(spec: ScheduleSpec, profile: CostProfile, fits: Array) -> list[str | None]:
    """For stages that do not fit: the largest micro-batch that does, without
    recompute if possible, else with it."""
    if fits.all():
        return [None] * len(fits)
    # a micro-batch every stage's replicas can split the batch into
    per_replica = math.gcd(*(spec.training.batch_size // spec.stage_data_parallel(i) for i in range(len(fits))))
    candidates = divisors(per_replica)
    suggestions: list[str | None] = [None] * len(fits)
    for recompute in (False, True):
        for mb in candidates:
            ok = _costs(spec, profile, micro_batch_size=mb, recompute=recompute).fits_in_memory
            for i in np.flatnonzero(~fits & ok):
                if suggestions[i] is None:
                    suggestions[i] = f"micro_batch_size: {mb}" + (", recompute: full" if recompute else "")
    fallback = ("does not fit even at micro_batch_size 1 with recompute: use more GPUs, ZeRO-3, or tensor or "
                "pipeline parallelism")
    return [None if fits[i] else (s or fallback) for i, s in enumerate(suggestions)]


def estimate(spec: ScheduleSpec) -> ScheduleEstimate:
    """Estimate every stage of a schedule and the total."""
    hw = spec.hardware
    gpu = hw.resolved_gpu()
    gpu_key = hw.gpu if isinstance(hw.gpu, str) else None
    profile = profile_for(gpu_key, hw.calibration)
    costs = _costs(spec, profile)
    steps = steps_per_stage(spec)
    units = study_units_per_token(stage_shape(spec))
    suggestions = _fit_suggestions(spec, profile, costs.fits_in_memory)
    peak_rate = gpu.peak_flops_per_s(spec.training.precision) * hw.n_gpus
    stages = []
    for i, stage in enumerate(spec.stages):
        d_model, n_heads, d_ff = spec.stage_width(stage)
        time_s = steps[i] * float(costs.step_time_s[i])
        stages.append(StageEstimate(
            index=i, name=stage.name, layers=stage.layers, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
            train=stage.train, n_trainable_blocks=spec.n_trainable_blocks(i), freeze_embeddings=stage.freeze_embeddings,
            growth=stage.growth, tokens=stage.tokens, steps=steps[i],
            params_total=int(costs.params_total[i]), params_trainable=int(costs.params_trainable[i]),
            params_non_embedding=int(costs.params_non_embedding[i]),
            flops_counted_per_step=int(costs.flops_counted_per_step[i]),
            flops_model_per_step=float(costs.flops_model_per_step[i]),
            flops_model_causal_per_step=float(costs.flops_model_causal_per_step[i]),
            flops_counted=steps[i] * float(costs.flops_counted_per_step[i]),
            flops_model=steps[i] * float(costs.flops_model_per_step[i]),
            study_units=stage.tokens * float(units[i]),
            step_time_s=float(costs.step_time_s[i]), time_s=time_s, cost_usd=hw.cost_usd(time_s),
            mfu=float(costs.flops_model_per_step[i]) / (float(costs.step_time_s[i]) * peak_rate),
            peak_memory_bytes=float(costs.peak_memory_bytes[i]),
            peak_allocated_bytes=float(costs.peak_allocated_bytes[i]),
            activation_bytes=float(costs.activation_bytes[i]),
            fits_in_memory=bool(costs.fits_in_memory[i]), fit_suggestion=suggestions[i],
            tensor_parallel=spec.stage_parallel(i)[0], pipeline_parallel=spec.stage_parallel(i)[1],
            data_parallel=spec.stage_data_parallel(i), context_parallel=spec.training.context_parallel,
            shard_group=spec.training.shard_group or spec.stage_data_parallel(i) * spec.training.context_parallel,
            pipeline_bubble_fraction=float(costs.pipeline_bubble_fraction[i]),
        ))
    total = TotalEstimate(
        tokens=sum(s.tokens for s in stages),
        flops_counted=sum(s.flops_counted for s in stages),
        flops_model=sum(s.flops_model for s in stages),
        study_units=float(study_units(spec)),
        time_s=sum(s.time_s for s in stages),
        cost_usd=sum(s.cost_usd for s in stages),
        peak_memory_bytes=max(s.peak_memory_bytes for s in stages),
        fits_in_memory=all(s.fits_in_memory for s in stages),
    )
    return ScheduleEstimate(
        name=spec.name, gpu=gpu.name, n_gpus=hw.n_gpus, parallelism=spec.training.parallelism,
        precision=spec.training.precision, calibration=profile.name, trainer_profile=spec.training.trainer_profile,
        stages=stages, total=total,
    )
