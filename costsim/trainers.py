"""Trainer memory profiles: what a training framework keeps on each GPU, as data.

costsim's exact memory model is of its own trainer (``validate/``): fp32 weights under torch
autocast, torch ``cross_entropy`` on an fp32 copy of the logits, a flash attention kernel,
non-reentrant checkpointing per block. Widely used trainers differ from it in a few
switches. A profile (``costsim/data/trainers/NAME.json``, or a file of the same keys) sets
them and a spec picks one with ``training.trainer_profile`` (default ``reference``, which
leaves every number as it was).

Each switch's formula, per GPU: P parameters (P_t trainable), c bytes of the compute dtype
(2 under bf16-mixed, 4 in fp32), n data-parallel GPUs, and ZeRO's sharding (``memory.SHARDED``: a state
"/n" is divided by n only where the parallelism shards it).

``weights`` (fp32 | compute)
    The model's own weights: fp32, 4 B a parameter (the reference; FSDP's sharded fp32
    parameters), or the compute dtype (Megatron's bf16 model). weights = P * w / n.
``master_weights`` (only with compute-dtype weights)
    An fp32 copy the optimizer updates (Megatron's main parameters), held with the
    optimizer state: optimizer = P_t * (8 + 4) / n instead of P_t * 8 / n.
``gradients`` (fp32 | compute)
    gradients = P_t * g / n, g = 4 or c.
``offload_optimizer``
    AdamW's moments (and the master copy) live in host memory: optimizer = 0 on the GPU.
    Only memory: the time model still runs the update on the GPU.
``cast_weights`` (only with fp32 weights)
    The trainer casts the weights to the compute dtype before the model runs (FSDP's
    ``MixedPrecision(param_dtype=bf16)``) instead of autocast casting each matmul's weight
    as it runs. The copy is alive through forward and backward: c * P for the whole model
    when the weights are not sharded (nothing when c is 4); under ZeRO-3 see
    ``gathered_blocks``.
the residual dtype (follows from the two above, no switch)
    When the model runs on compute-dtype weights (``cast_weights``, or compute-dtype
    ``weights``), its embedding output, hence the residual stream, every norm's saved
    input and a checkpointed block's input are in the compute dtype: r = c bytes an element
    instead of 4 (``ops.layer_norm``, ``memory.saved_activation_bytes``).
``gathered_blocks`` (ZeRO-3 only; 0 in the reference: not counted)
    Blocks whose unsharded weights are alive at once, the one running and the one
    prefetched (FSDP's ``limit_all_gathers``, FSDP2's prefetch): k = 2. With them the
    parameters outside the blocks (embeddings, final norm, head: the root unit) and their
    gradient:  gathered = x * (k * P_block + P_out) + c * P_out_t, x the dtype the model
    runs on; and while a block's backward runs, its unsharded gradient and its copy in the
    gradient dtype for the reduce-scatter: (c + g) * P_block, alive with one recomputed
    block but not with the logits' gradient (``memory.peak_memory``).
``loss`` (fp32 | fp32-inplace | fused), per token with vocabulary V
    fp32: keeps the fp32 log-softmax, 4V; at the start of backward the calibration
    profile's measured bytes a logit are alive (the reference: torch ``cross_entropy`` on
    an fp32 copy). fp32-inplace: keeps 4V (Megatron writes the softmax over its fp32 copy
    and the gradient over the softmax); transient c * V, the gradient cast for the head.
    fused: keeps the logits and a log-sum-exp, c * V + 4 (flash-attn's cross-entropy,
    Megatron's fused loss); transient c * V, the logits' gradient.
``recompute_attention`` (Megatron's selective recompute: core attention only)
    Every profile assumes a flash kernel, which never keeps a T x T matrix; recomputing
    the core attention then drops only its log-sum-exp, 4 B a head a token a block, and
    runs attention's forward once more in backward (4 * T * d counted FLOPs a token a
    block). Applies when ``training.recompute`` is none.

Per-block activation checkpointing is ``training.recompute: full`` under every profile: a
block keeps its input (r * d a token) and one block's activations are rebuilt at a time.

``optimizer_state`` (fp32 | bf16)
    The dtype of AdamW's moments, and of the master copy with them (Apex's
    DistributedFusedAdam ``dtype``, which NeMo's ``optim.dtype`` sets): s = 4 or 2 bytes,
    optimizer = P_t * s * (2 + master) / n. fp32 everywhere else.

What a trainer overlaps (time only; costsim/parallel.py has each formula). Every profile
before these switches counted the tensor-parallel collectives and the pipeline sends as
exposed and hid the data-parallel reduction behind the last micro-batch's backward; the
defaults below keep exactly that.

``tp_comm_overlap`` (only under sequence parallelism; NeMo switches it off without)
    Transformer Engine's userbuffers (NeMo's ``ub_tp_comm_overlap``) split each of a
    block's all-gathers and reduce-scatters into chunks and run them on the copy engines
    (or a few SMs) while the GEMM beside it (forward: the QKV, output, FC1 and FC2 GEMMs;
    backward: the matching input- or weight-gradient GEMM) computes the chunks already
    there. A collective then costs only what its GEMM cannot cover: max(0, comm - GEMM)
    each, not zero: a small GEMM (narrow model, few tokens, wide TP) leaves most of its
    collective exposed. The embedding's output and the head's input gradient stay exposed.
``overlap_grad_sync`` (default on: what every profile has done)
    Gradients are reduced bucket by bucket as the backward produces them, so the last
    micro-batch's backward hides the reduction; off, all of it follows the backward.
``overlap_param_sync`` (a sharded optimizer with whole weights: zero1, zero2)
    The distributed optimizer updates its shard, then all-gathers the updated parameters in
    the dtype the model runs on (NeMo: ``param_sync_dtype`` = the model's bf16); with the
    switch, bucket by bucket as the next step's first forward reaches them, so that forward
    hides the gather. The step's data-parallel traffic is then a reduce-scatter of the
    gradients (hidden by the last backward) and an all-gather of the weights (hidden by the
    first forward), each exposed only past its window. Off, it is the all-reduce of the
    gradients it always was.
``grad_sync_dtype`` (gradients | fp32 | compute)
    The dtype gradients cross the network in (Apex's ``grad_sync_dtype``; Megatron-core's
    ``grad_reduce_in_fp32``); default that of the stored gradients. bf16 halves the bytes
    of an fp32 reduction.
``overlap_p2p_comm`` (the interleaved schedule only, as Megatron's)
    The schedule posts each pipeline send and receive asynchronously and waits only when
    the data is needed: in 1F1B's steady state a chunk's forward output travels while the
    rank runs the next chunk's backward, and a backward's input gradient while it runs the
    next forward. Each send is exposed only past that chunk's time: with v chunks, a
    micro-batch's v activation sends cost max(0, send - backward / v) each and its v
    gradient sends max(0, send - forward / v).

What a trainer's kernels run faster (time only).

``attention_kernel_speedup`` (default 1)
    The attention kernel's throughput over the one the cost profile's attention rate
    describes: PyTorch's scaled_dot_product_attention, whose flash backend is
    FlashAttention-2 (the H200 calibration timed SDPA as torch 2.11 chose its backend;
    the generic priors assume FlashAttention-2).
    Trainers on Transformer Engine (Megatron-LM, NeMo) run cuDNN's fused attention on
    Hopper instead. The FlashAttention-3 paper (Shah et al. 2024, arXiv 2407.08608, its
    attention speed figures: H100 SXM5, bf16, head dim 128, sequences 2k-16k) measured
    cuDNN at 1.59-1.70x FlashAttention-2 forward, causal or not, and 1.60-1.63x backward;
    the profiles take 1.6. The ratio is an H100 figure: on other GPUs the kernels compare
    differently, and a spec can set it with ``training.trainer_overrides``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from costsim.constants import (
    ADAMW_STATE_BYTES,
    BYTES_PER_ELEMENT,
    GRAD_BYTES,
    MASTER_WEIGHT_BYTES,
    PARAM_BYTES,
)
from costsim.errors import SpecError, validation_message
from costsim.flops import RankParameters, rank_parameter_counts
from costsim.ops import LOSS_KINDS, StageShape
from costsim.profile import CostProfile
from costsim.shipped import shipped_names, shipped_text

Array = np.ndarray

REFERENCE = "reference"


class TrainerProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    description: str = ""
    source: str = Field("", description="where each switch's setting comes from")
    weights: Literal["fp32", "compute"] = Field("fp32", description="dtype of the model's own weights")
    master_weights: bool = Field(False, description="an fp32 copy with the optimizer (compute-dtype weights only)")
    gradients: Literal["fp32", "compute"] = "fp32"
    offload_optimizer: bool = Field(False, description="AdamW state (and master copy) in host memory")
    cast_weights: bool = Field(False, description="weights cast to the compute dtype before the model runs "
                               "(FSDP mixed precision) instead of per matmul by autocast")
    gathered_blocks: int = Field(0, ge=0, le=64, description="ZeRO-3: blocks unsharded at once (0: not counted)")
    loss: Literal[*LOSS_KINDS] = "fp32"
    recompute_attention: bool = Field(False, description="selective recompute of the core attention")
    optimizer_state: Literal["fp32", "bf16"] = Field("fp32", description="dtype of AdamW's moments and of the "
                                                     "master copy kept with them")
    # what the trainer overlaps with compute (time only; costsim/parallel.py)
    tp_comm_overlap: bool = Field(False, description="under sequence parallelism, each tensor-parallel all-gather / "
                                  "reduce-scatter pipelined with the GEMM beside it (Transformer Engine userbuffers): "
                                  "exposed only past that GEMM's time")
    overlap_grad_sync: bool = Field(True, description="gradient reduction overlapped with the last micro-batch's "
                                    "backward")
    overlap_param_sync: bool = Field(False, description="zero1/zero2: the updated parameters all-gathered (in the "
                                     "dtype the model runs on) during the next step's first forward")
    grad_sync_dtype: Literal["gradients", "fp32", "compute"] = Field(
        "gradients", description="dtype of the data-parallel gradient reduction (default: the stored gradients')")
    overlap_p2p_comm: bool = Field(False, description="interleaved pipeline: each send overlapped with the next "
                                   "model chunk's compute")
    # what its kernels run faster (time only)
    attention_kernel_speedup: float = Field(1.0, gt=0, le=10, description="attention kernel throughput over "
                                            "PyTorch SDPA's FlashAttention-2, which the cost profile's attention "
                                            "rate describes (cuDNN fused attention on H100: 1.6)")

    @model_validator(mode="after")
    def _consistent(self) -> TrainerProfile:
        if self.master_weights and self.weights == "fp32":
            raise ValueError("master_weights needs weights: compute (fp32 weights are their own master copy)")
        if self.cast_weights and self.weights == "compute":
            raise ValueError("cast_weights needs weights: fp32 (compute-dtype weights need no cast)")
        return self

    def kernel_rates(self, profile: CostProfile) -> CostProfile:
        """The cost profile with this trainer's kernels: its attention rate scaled by
        ``attention_kernel_speedup`` (the same profile when the trainer runs the profile's)."""
        if self.attention_kernel_speedup == 1:
            return profile
        return profile.model_copy(update={"attention_efficiency":
                                          profile.attention_efficiency * self.attention_kernel_speedup})

    def runs_in_compute_dtype(self) -> bool:
        """Whether the model's forward runs on compute-dtype weights (so its residual stream is
        in the compute dtype), rather than on fp32 weights cast per matmul by autocast."""
        return self.cast_weights or self.weights == "compute"


# --- loading -------------------------------------------------------------------------


@cache
def trainer_names() -> tuple[str, ...]:
    return shipped_names("trainers")


def unknown_trainer_message(name: object) -> str:
    return f"unknown trainer_profile {name!r}; use one of {', '.join(trainer_names())} or a trainer profile .json path"


def is_trainer(name: str) -> bool:
    """A shipped profile's name, or a path to a profile file."""
    return name in trainer_names() or (name.endswith(".json") and Path(name).is_file())


@cache
def load_trainer(name_or_path: str = REFERENCE) -> TrainerProfile:
    """A shipped trainer profile by name, or one in a .json file of the same keys."""
    if name_or_path in trainer_names():
        text, where = shipped_text("trainers", name_or_path), name_or_path
    elif is_trainer(name_or_path):
        text, where = Path(name_or_path).read_text(), name_or_path
    else:
        raise SpecError(unknown_trainer_message(name_or_path))
    try:
        return TrainerProfile.model_validate_json(text)
    except ValidationError as exc:
        raise SpecError(f"trainer profile {where}: {validation_message(exc, TrainerProfile)}") from None


# What a spec's ``training.trainer_overrides`` may set: every switch, not the profile's name
# or its provenance.
SWITCHES = tuple(f for f in TrainerProfile.model_fields if f not in ("name", "description", "source"))


def with_overrides(name_or_path: str, overrides: dict[str, object]) -> TrainerProfile:
    """A trainer profile with some switches set otherwise (a recipe that differs from the
    profile in one or two settings: NeMo's Nemotron-4 340B keeps its Adam state in bf16)."""
    return _overridden(name_or_path, tuple(sorted(overrides.items())))


@cache
def _overridden(name_or_path: str, overrides: tuple[tuple[str, object], ...]) -> TrainerProfile:
    base = load_trainer(name_or_path)
    if not overrides:
        return base
    unknown = [key for key, _ in overrides if key not in SWITCHES]
    if unknown:
        raise SpecError(f"trainer_overrides: unknown switch {unknown[0]!r}; use one of {', '.join(SWITCHES)}")
    fields = base.model_dump() | dict(overrides) | {"name": f"{base.name} (overridden: {dict(overrides)})"}
    try:
        return TrainerProfile.model_validate(fields)
    except ValidationError as exc:
        raise SpecError(f"trainer_overrides on {base.name}: {validation_message(exc, TrainerProfile)}") from None


# --- what each switch changes ------------------------------------------------------------


def shape_fields(trainer: TrainerProfile, compute_bytes: int) -> dict[str, object]:
    """The per-op switches, as ``StageShape`` fields (the ops read them)."""
    return {
        "residual_bytes": compute_bytes if trainer.runs_in_compute_dtype() else PARAM_BYTES,
        "loss_kind": LOSS_KINDS.index(trainer.loss),
        "recompute_attention": trainer.recompute_attention,
    }


def weight_bytes(trainer: TrainerProfile, s: StageShape) -> Array:
    """Bytes a parameter of the model's own weights."""
    return s.compute_bytes if trainer.weights == "compute" else np.full_like(s.compute_bytes, PARAM_BYTES)


def gradient_bytes(trainer: TrainerProfile, s: StageShape) -> Array:
    return s.compute_bytes if trainer.gradients == "compute" else np.full_like(s.compute_bytes, GRAD_BYTES)


def grad_sync_bytes(trainer: TrainerProfile, s: StageShape) -> Array:
    """Bytes a gradient as the data-parallel reduction sends it (``grad_sync_dtype``)."""
    if trainer.grad_sync_dtype == "gradients":
        return gradient_bytes(trainer, s)
    return s.compute_bytes if trainer.grad_sync_dtype == "compute" else np.full_like(s.compute_bytes, GRAD_BYTES)


def optimizer_bytes(trainer: TrainerProfile) -> int:
    """Bytes a trainable parameter the optimizer keeps on the GPU."""
    if trainer.offload_optimizer:
        return 0
    if trainer.optimizer_state == "bf16":  # the moments and the master copy in bf16
        return BYTES_PER_ELEMENT["bf16"] * (2 + trainer.master_weights)
    return ADAMW_STATE_BYTES + (MASTER_WEIGHT_BYTES if trainer.master_weights else 0)


def run_weight_bytes(trainer: TrainerProfile, s: StageShape) -> Array:
    """Bytes a parameter of the weights the model runs on (and ZeRO-3 all-gathers)."""
    return s.compute_bytes if trainer.runs_in_compute_dtype() else np.full_like(s.compute_bytes, PARAM_BYTES)


def working_weight_bytes(trainer: TrainerProfile, s: StageShape, weights_sharded: bool,
                         params: RankParameters | None = None) -> Array:
    """Weights (and, under ZeRO-3, the root's gradient) alive beside the persistent state
    through forward and backward: ``cast_weights``' copy, or ZeRO-3's gathered set. ``params``:
    what one GPU holds (``flops.rank_parameter_counts``; default the whole model)."""
    params = rank_parameter_counts(s) if params is None else params
    if not weights_sharded:
        copy = trainer.cast_weights & (s.compute_bytes < PARAM_BYTES)
        return np.where(copy, s.compute_bytes * params.total, 0).astype(float)
    if not trainer.gathered_blocks:
        return np.zeros(np.shape(s.layers))
    block = params.block
    outside = params.total - params.blocks * block
    outside_trainable = params.trainable - params.trainable_blocks * block
    gathered = np.minimum(trainer.gathered_blocks, params.blocks) * block + outside
    return (run_weight_bytes(trainer, s) * gathered + s.compute_bytes * outside_trainable).astype(float)


def block_gradient_bytes(trainer: TrainerProfile, s: StageShape, weights_sharded: bool,
                         params: RankParameters | None = None) -> Array:
    """ZeRO-3: one block's unsharded gradient and its reduce-scatter copy, while its backward runs."""
    if not (weights_sharded and trainer.gathered_blocks):
        return np.zeros(np.shape(s.layers))
    params = rank_parameter_counts(s) if params is None else params
    return ((s.compute_bytes + gradient_bytes(trainer, s)) * params.block * (params.trainable_blocks > 0)).astype(float)


def logits_transient_bytes(trainer: TrainerProfile, s: StageShape, profile: CostProfile) -> Array:
    """What the loss has alive at the start of backward beyond what it saved."""
    per_logit = profile.logits_transient_bytes if trainer.loss == "fp32" else s.compute_bytes
    return per_logit * s.tokens * s.vocab_size
