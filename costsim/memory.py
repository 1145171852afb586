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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from costsim.constants import MEMORY_HEADROOM
from costsim.flops import parameter_counts
from costsim.ops import (
    LOSS_SAVED_BYTES_PER_MICROBATCH,
    StageShape,
    block_ops,
    embedding_saved_bytes_per_microbatch,
    head_ops,
    total,
)
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
# (weights, gradients, optimizer state) -> sharded over n_gpus or not.
SHARDED = {
    "ddp": (False, False, False),
    "zero1": (False, False, True),
    "zero2": (False, True, True),
    "zero3": (True, True, True),
}


def saved_activation_bytes(s: StageShape) -> Array:
    """Activation bytes autograd holds at the end of one micro-batch's forward."""
    block, head = block_ops(s), head_ops(s)
    per_block_backward = total(block, "saved_bytes")
    per_block_trains = total(block, "saved_bytes_if_trains")
    blocks = np.where(
        s.recompute,
        # a checkpointed block keeps only its input (fp32 in the reference: the residual stream)
        s.n_backward_blocks * s.residual_bytes * s.d_model,
        s.n_backward_blocks * per_block_backward + s.n_trainable * per_block_trains,
    )
    ln_f, lm_head, loss = head
    head_bytes = np.asarray(ln_f.saved_bytes) + s.head_trainable * lm_head.saved_bytes_if_trains + loss.saved_bytes
    per_microbatch = embedding_saved_bytes_per_microbatch(s) + LOSS_SAVED_BYTES_PER_MICROBATCH
    return s.tokens * (blocks + head_bytes) + per_microbatch


def recompute_working_bytes(s: StageShape) -> Array:
    """With checkpointing, one block's activations are rebuilt during backward."""
    block = block_ops(s)
    one_block = total(block, "saved_bytes") + total(block, "saved_bytes_if_trains")
    return s.recompute * (s.n_backward_blocks > 0) * s.tokens * one_block


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
                parallelism: str = "ddp", trainer: TrainerProfile | None = None) -> MemoryBreakdown:
    """``s`` must carry ``trainer``'s per-op switches (``trainers.shape_fields``); default
    trainer: the reference."""
    trainer = trainer or load_trainer()
    params = parameter_counts(s)
    shard_w, shard_g, shard_o = SHARDED[parallelism]
    n = np.asarray(n_gpus)
    weights = params.total * weight_bytes(trainer, s) / (n if shard_w else 1)
    gradients = params.trainable * gradient_bytes(trainer, s) / (n if shard_g else 1)
    optimizer = params.trainable * optimizer_bytes(trainer) / (n if shard_o else 1)
    working = working_weight_bytes(trainer, s, shard_w)
    activations = saved_activation_bytes(s).astype(float)
    # The logits' gradients live at the start of backward and are gone before the
    # first block's backward (checkpointed blocks re-run, ZeRO-3 gradients reduced):
    # the transients do not overlap.
    transient = np.maximum(logits_transient_bytes(trainer, s, profile),
                           recompute_working_bytes(s) + block_gradient_bytes(trainer, s, shard_w)).astype(float)
    allocated = weights + gradients + optimizer + working + activations + transient + profile.memory_overhead_bytes
    return MemoryBreakdown(
        weights=weights, gradients=gradients, optimizer=optimizer, working_weights=working, activations=activations,
        transient=transient, peak_allocated=allocated, peak_reserved=allocated * (1 + profile.reserve_fraction),
    )


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
