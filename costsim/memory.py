"""Peak memory of one GPU during a training step.

What a measured peak is made of: fp32 weights; gradients and AdamW state for what
trains (sharded by ZeRO); the activations saved for backward (exactly what
``saved_tensors_hooks`` sees on the CPU); what is alive only at the start of backward
(the gradients of the logits, which dominate small models with a 50k vocabulary, and
with recompute one block's re-run activations); allocator reserve on top.

That is the reference trainer's peak. A trainer profile (costsim/trainers.py, which
writes each switch's formula) changes the bytes a parameter of each state, adds the
weights a trainer keeps in the compute dtype (ZeRO-3's gathered blocks), and changes what
the loss keeps; the activations follow the profile through the op list.

A parallel layout (costsim/parallel.py) changes what one GPU holds: tensor parallelism
splits the blocks' weights and the activations inside its regions (``ops.Op.inside_tp``)
over tp GPUs, sequence parallelism the rest of the activations by tokens (Korthikanti et
al. 2022: a layer's s·b·h·34 bytes become s·b·h·(10 + 24/t), then s·b·h·34/t); pipeline parallelism
gives each rank its blocks and the first rank p micro-batches in flight; ZeRO shards over
the data-parallel group only. The peak is the worst pipeline rank's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from costsim.constants import INDEX_BYTES, MEMORY_HEADROOM
from costsim.flops import RankParameters, rank_parameter_counts
from costsim.ops import (
    LOSS_SAVED_BYTES_PER_MICROBATCH,
    StageShape,
    block_ops,
    embedding_saved_bytes_per_microbatch,
    head_ops,
)
from costsim.parallel import Layout, pipeline_ranks, tokens_on_gpu
from costsim.profile import CostProfile
from costsim.trainers import (
    TrainerProfile,
    block_gradient_bytes,
    gradient_bytes,
    load_trainer,
    logits_transient_bytes,
    optimizer_bytes,
    weight_bytes,
    working_weight_bytes,
)

Array = np.ndarray

# Fraction of each state that one GPU holds, per data-parallel strategy:
# (weights, gradients, optimizer state) -> sharded over the data-parallel GPUs or not.
SHARDED = {
    "ddp": (False, False, False),
    "zero1": (False, False, True),
    "zero2": (False, True, True),
    "zero3": (True, True, True),
}


def _block_saved(s: StageShape, attr: str) -> tuple[Array, Array]:
    """A block's ``attr`` bytes a token, (inside, outside) the tensor-parallel regions."""
    block = block_ops(s)
    inside = sum((np.asarray(getattr(op, attr)) for op in block if op.inside_tp), np.zeros((), dtype=np.int64))
    outside = sum((np.asarray(getattr(op, attr)) for op in block if not op.inside_tp), np.zeros((), dtype=np.int64))
    return inside, outside


def _split(s: StageShape, layout: Layout | None, inside_per_token, outside_per_token) -> Array:
    """Bytes of a micro-batch on one GPU: inside the TP regions split over tp, outside them
    split by tokens under sequence parallelism (tp divides what it splits: the spec checks)."""
    tp, shards = (1, 1) if layout is None else (layout.tp, layout.sequence_shards)
    tokens = tokens_on_gpu(s.tokens, layout)
    return tokens * inside_per_token // tp + tokens // shards * outside_per_token


def saved_activation_bytes(s: StageShape, layout: Layout | None = None, embedding: Array | bool = True,
                           head: Array | bool = True) -> Array:
    """Activation bytes autograd holds at the end of one micro-batch's forward (on one GPU of
    ``layout`` holding ``s``'s blocks, and the embeddings and head where they say so)."""
    inside_bwd, outside_bwd = _block_saved(s, "saved_bytes")
    inside_trains, outside_trains = _block_saved(s, "saved_bytes_if_trains")
    inside = np.where(s.recompute, 0, s.n_backward_blocks * inside_bwd + s.n_trainable * inside_trains)
    outside = np.where(
        s.recompute,
        # a checkpointed block keeps only its input (fp32 in the reference: the residual stream)
        s.n_backward_blocks * s.residual_bytes * s.d_model,
        s.n_backward_blocks * outside_bwd + s.n_trainable * outside_trains,
    )
    ln_f, lm_head, loss = head_ops(s)
    head_outside = np.asarray(ln_f.saved_bytes) + s.head_trainable * lm_head.saved_bytes_if_trains
    # the vocabulary-parallel loss splits what it keeps over tp; the int64 targets are whole
    cp = 1 if layout is None else layout.cp  # context parallelism: each GPU its share of the tokens
    head_bytes = (_split(s, layout, np.asarray(loss.saved_bytes) - INDEX_BYTES, head_outside)
                  + tokens_on_gpu(s.tokens, layout) * INDEX_BYTES)
    per_microbatch = (embedding * embedding_saved_bytes_per_microbatch(s) // cp
                      + head * LOSS_SAVED_BYTES_PER_MICROBATCH)
    return _split(s, layout, inside, outside) + head * head_bytes + per_microbatch


def recompute_working_bytes(s: StageShape, layout: Layout | None = None) -> Array:
    """With checkpointing, one block's activations are rebuilt during backward."""
    inside_bwd, outside_bwd = _block_saved(s, "saved_bytes")
    inside_trains, outside_trains = _block_saved(s, "saved_bytes_if_trains")
    one_block = _split(s, layout, inside_bwd + inside_trains, outside_bwd + outside_trains)
    return s.recompute * (s.n_backward_blocks > 0) * one_block


@dataclass(frozen=True)
class MemoryBreakdown:
    weights: Array
    gradients: Array
    optimizer: Array
    working_weights: Array  # compute-dtype weights beside the persistent ones (trainers.working_weight_bytes)
    activations: Array
    transient: Array
    peak_allocated: Array
    peak_reserved: Array


def peak_memory(s: StageShape, profile: CostProfile, n_gpus: Array | int = 1,
                parallelism: str = "ddp", trainer: TrainerProfile | None = None, layout: Layout | None = None,
                micro_batches: Array | int | None = None) -> MemoryBreakdown:
    """The worst GPU's peak. ``s`` must carry ``trainer``'s per-op switches
    (``trainers.shape_fields``); default trainer: the reference. ``layout`` (default: data
    parallelism over ``n_gpus``) splits the model; ``micro_batches`` (per replica a step)
    bounds what a pipeline keeps in flight."""
    trainer = trainer or load_trainer()
    layout = Layout.of(n_gpus) if layout is None else layout
    ranks = [_rank_memory(rank.shape, profile, layout, parallelism, trainer, rank.embedding, rank.head,
                          rank.in_flight) for rank in pipeline_ranks(s, layout, micro_batches)]
    worst = ranks[0]
    for other in ranks[1:]:
        first = worst.peak_reserved >= other.peak_reserved
        worst = MemoryBreakdown(**{f: np.where(first, getattr(worst, f), getattr(other, f))
                                   for f in MemoryBreakdown.__dataclass_fields__})
    return worst


def _rank_memory(s: StageShape, profile: CostProfile, layout: Layout, parallelism: str, trainer: TrainerProfile,
                 embedding, head, in_flight) -> MemoryBreakdown:
    """One GPU of a pipeline rank holding ``s``'s blocks (and the embeddings, the head)."""
    params: RankParameters = rank_parameter_counts(s, layout.tp, embedding, head)
    shard_w, shard_g, shard_o = SHARDED[parallelism]
    n = layout.shard  # dp, or a hybrid shard group
    weights = params.total * weight_bytes(trainer, s) / (n if shard_w else 1)
    gradients = params.trainable * gradient_bytes(trainer, s) / (n if shard_g else 1)
    optimizer = params.trainable * optimizer_bytes(trainer) / (n if shard_o else 1)
    working = working_weight_bytes(trainer, s, shard_w, params)
    activations = (in_flight * saved_activation_bytes(s, layout, embedding, head)).astype(float)
    # The logits' gradients live at the start of backward and are gone before the
    # first block's backward (checkpointed blocks re-run, ZeRO-3 gradients reduced):
    # the transients do not overlap.
    # vocabulary-parallel over tp, each context-parallel rank its own tokens'
    logits = head * logits_transient_bytes(trainer, s, profile) / layout.tp / layout.cp
    transient = np.maximum(logits, recompute_working_bytes(s, layout)
                           + block_gradient_bytes(trainer, s, shard_w, params)).astype(float)
    allocated = weights + gradients + optimizer + working + activations + transient + profile.memory_overhead_bytes
    return MemoryBreakdown(
        weights=weights, gradients=gradients, optimizer=optimizer, working_weights=working, activations=activations,
        transient=transient, peak_allocated=allocated,
        peak_reserved=reserved_bytes(allocated, transient, profile),
    )


def reserved_bytes(allocated: Array, transient: Array, profile: CostProfile) -> Array:
    """The caching allocator's reserved peak: allocated bytes, a share of the step's one-off
    transients (the logits' buffers at the start of backward, or a recomputed block), and
    a constant of cached blocks. The steady allocations (weights, gradients, optimizer
    state, and activations whose sizes repeat block after block and step after step) reuse
    their cached blocks; what stays reserved unused is odd-sized: segments rounded up, and
    blocks freed by a transient that later, smaller requests split. On the H200 sweep this
    form predicts held-out reserved peaks better than a share of everything allocated, of
    all that is not persistent state, or a constant (``benchmarks/reserve_forms.py``); a
    share of everything also grew with the model and rejected llm-foundry runs that ran."""
    return allocated + profile.reserve_fraction * transient + profile.reserve_bytes


def usable_memory_bytes(gpu_memory_bytes: float, headroom: float = MEMORY_HEADROOM,
                        cap_bytes: float | None = None) -> float:
    """What a plan may fill on one GPU: ``headroom`` of its memory, or a lower cap the user
    gave (a cap is taken as it is: it already says what may be used)."""
    return min(gpu_memory_bytes * headroom, math.inf if cap_bytes is None else cap_bytes)


def memory_use(peak_bytes: Array | float, usable_bytes: float) -> Array:
    """Share of the usable memory a peak takes. The one test of "fits" is ``memory_use <= 1``
    (``fits_within``), so the search's memory constraint, ``memory_use - 1 <= 0``, agrees with it
    exactly."""
    return np.asarray(peak_bytes, dtype=float) / usable_bytes


def fits_within(peak_bytes: Array | float, usable_bytes: float) -> Array:
    return memory_use(peak_bytes, usable_bytes) <= 1
