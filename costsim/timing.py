"""Step time: a per-op roofline with calibrated efficiencies.

Each op is bound by one resource, and a step's time is the sum over its ops (eager
kernels run one after another):
- matmuls: FLOPs over the achievable matmul rate, where a matmul of f FLOPs runs at
  ``peak * eff * f / (f + f_half)`` (small matmuls do not fill the GPU);
- attention: counted FLOPs over its own achieved rate (the flash kernels skip the
  masked half, so this efficiency is not comparable with the matmul one);
- everything else (norms, activations, residual adds, the fp32 loss over the logits,
  the optimizer update): bytes moved over the achieved HBM bandwidth;
- plus a fixed cost per kernel launch, which dominates small eager models.
The efficiencies come from a ``CostProfile`` fitted to measured steps.

Under a parallel layout this is one GPU's share (costsim/parallel.py): the matmul and
attention FLOPs and the traffic inside the tensor-parallel regions split over tp, the
rest split by tokens under sequence parallelism; a pipeline rank runs its own blocks and
the head only where it holds it. The kernels are as many as without tensor parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from costsim.constants import ADAMW_STATE_BYTES, GRAD_BYTES, PARAM_BYTES
from costsim.flops import parameter_counts, selective_recompute
from costsim.ops import StageShape, block_ops, head_ops
from costsim.parallel import Layout, link, send_s, tokens_on_gpu
from costsim.profile import CostProfile

Array = np.ndarray

# AdamW reads weight, gradient and both moments and writes weight and moments.
ADAMW_TRAFFIC_BYTES = 2 * PARAM_BYTES + GRAD_BYTES + 2 * ADAMW_STATE_BYTES
# Kernels of one fused (multi-tensor) AdamW step, independent of model size in practice.
ADAMW_KERNELS = 4


@dataclass(frozen=True)
class KernelWork:
    """What one micro-batch's forward+backward asks of the GPU."""

    matmul_flops: Array
    matmul_kernels: Array
    attention_flops: Array
    memory_bytes: Array
    kernels: Array


def micro_batch_work(s: StageShape, layout: Layout | None = None, head: Array | bool = True) -> KernelWork:
    """One GPU's work for a micro-batch: ``s``'s blocks (and the head where ``head``), split by
    ``layout`` (default: one GPU holds the whole model)."""
    n_fwd, n_bwd, n_wgrad = s.layers, s.n_backward_blocks, s.n_trainable
    n_recompute = s.recompute * n_bwd
    n_selective = selective_recompute(s) * n_bwd  # the core attention alone, re-run in backward
    mm_flops = mm_kernels = attn = mem = mem_outside = kernels = 0
    for op in block_ops(s):
        fwd_runs = n_fwd + (n_recompute if op.recomputed else 0) + (n_selective if op.kind == "attention" else 0)
        if op.kind == "matmul":
            mm_flops = mm_flops + np.asarray(op.fwd_flops) * (fwd_runs + n_bwd + n_wgrad)
            mm_kernels = mm_kernels + fwd_runs + n_bwd + n_wgrad
        elif op.kind == "attention":
            attn = attn + np.asarray(op.fwd_flops) * fwd_runs + np.asarray(op.bwd_input_flops) * n_bwd
        else:
            # backward of an elementwise op reads its saved input and the incoming
            # gradient and writes one: about twice the forward traffic.
            traffic = np.asarray(op.traffic_bytes) * (fwd_runs + 2 * n_bwd)
            if op.inside_tp:
                mem = mem + traffic
            else:
                mem_outside = mem_outside + traffic
        kernels = kernels + fwd_runs + n_bwd + (n_wgrad if op.kind == "matmul" else 0)
    for op in head_ops(s):
        if op.kind == "matmul":
            runs = (2 + s.head_trainable) * head
            mm_flops = mm_flops + np.asarray(op.fwd_flops) * runs
            mm_kernels = mm_kernels + runs
            kernels = kernels + runs
        else:
            traffic = np.asarray(op.traffic_bytes) * 3 * head
            if op.inside_tp:
                mem = mem + traffic
            else:
                mem_outside = mem_outside + traffic
            kernels = kernels + 2 * head
    t = tokens_on_gpu(s.tokens, layout)
    tp, shards = (1, 1) if layout is None else (layout.tp, layout.sequence_shards)
    return KernelWork(matmul_flops=t * mm_flops // tp, matmul_kernels=mm_kernels, attention_flops=t * attn // tp,
                      memory_bytes=t * mem // tp + t // shards * mem_outside, kernels=kernels)


def micro_batch_time_s(s: StageShape, peak_flops_per_s, bandwidth_bytes_per_s, profile: CostProfile,
                       layout: Layout | None = None, head: Array | bool = True) -> Array:
    w = micro_batch_work(s, layout, head)
    matmul_flops = w.matmul_flops + w.matmul_kernels * profile.matmul_half_flops
    matmul = matmul_flops / (peak_flops_per_s * profile.matmul_efficiency)
    attention = w.attention_flops / (peak_flops_per_s * profile.attention_efficiency)
    memory = w.memory_bytes / (bandwidth_bytes_per_s * profile.bandwidth_efficiency)
    return matmul + attention + memory + w.kernels * profile.launch_overhead_s


def block_gemm_s(s: StageShape, peak_flops_per_s, profile: CostProfile, layout: Layout | None = None) -> list[Array]:
    """One GEMM of each of a block's matmuls (its forward; each backward GEMM has the same
    FLOPs) on one GPU for a micro-batch, at the rate ``micro_batch_time_s`` gives matmuls:
    the GEMMs that can hide the tensor-parallel collectives beside them
    (``parallel.tensor_parallel_overlapped_s``)."""
    tp, tokens = 1 if layout is None else layout.tp, tokens_on_gpu(s.tokens, layout)
    rate = peak_flops_per_s * profile.matmul_efficiency
    return [(tokens * np.asarray(op.fwd_flops) // tp + profile.matmul_half_flops) / rate
            for op in block_ops(s) if op.kind == "matmul"]


def ring_attention_s(s: StageShape, peak_flops_per_s, profile: CostProfile, layout: Layout, gpu) -> Array:
    """Exposed context-parallel time of one micro-batch (none without context parallelism).

    Each of the cp ranks holds 1/cp of the sequence. A block's attention runs as cp chunk
    steps; at each but the last a rank passes the key/value chunk it holds to the next rank
    in the ring (Megatron's ring attention: t/cp tokens x 2 x kv width x c bytes, split by
    tp) while it computes attention on the one it has; backward passes the chunk and its
    gradient, twice the bytes. A pass of a block costs only what its attention cannot hide:
    max(0, (cp - 1) x send - attention of the pass). Forward passes: every block's, plus the
    recomputed ones; backward passes: the blocks that backpropagate."""
    [attention] = [op for op in block_ops(s) if op.kind == "attention"]
    tokens = layout.tokens(s.tokens)
    rate = peak_flops_per_s * profile.attention_efficiency
    forward_s = tokens * np.asarray(attention.fwd_flops) // layout.tp / rate
    backward_s = tokens * np.asarray(attention.bwd_input_flops) // layout.tp / rate
    chunk = tokens * 2 * s.kv_width * s.compute_bytes // layout.tp
    via = link(gpu, layout.crosses_nodes("context"))
    steps = layout.cp - 1
    forward = np.maximum(steps * send_s(chunk, via) - forward_s, 0.0)
    backward = np.maximum(steps * send_s(2 * chunk, via) - backward_s, 0.0)
    passes_forward = s.layers + s.recompute * s.n_backward_blocks
    return np.where(layout.cp > 1, passes_forward * forward + s.n_backward_blocks * backward, 0.0)


def optimizer_time_s(s: StageShape, bandwidth_bytes_per_s, profile: CostProfile, shard: Array | int = 1,
                     trainable_params: Array | None = None) -> Array:
    """AdamW over the trainable parameters (``trainable_params`` on one GPU; default the
    model's), ``shard`` GPUs sharing the optimizer state."""
    trainable = (parameter_counts(s).trainable if trainable_params is None else trainable_params) / shard
    return trainable * ADAMW_TRAFFIC_BYTES / (bandwidth_bytes_per_s * profile.bandwidth_efficiency) + (
        ADAMW_KERNELS * profile.launch_overhead_s
    )
