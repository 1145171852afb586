"""FLOPs and parameter counts of one micro-batch, in the three named conventions.

- counted: what FlopCounterMode reports for forward+backward of the reference model
  (matmuls and attention; causal attention counted in full, its backward 2.5x the
  forward; recompute counted as it executes). Exact, in integers.
- model: the nanoGPT/PaLM convention, 2 FLOPs per matmul parameter per token for each
  pass that runs, attention 12*T*d per token (6*T*d with causal halving).
- study: the paper's units, c per active layer per token forward and c per trainable
  layer backward; embeddings and head ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from costsim.ops import StageShape, block_ops, embedding_params, head_ops, total

Array = np.ndarray


@dataclass(frozen=True)
class MicroBatchFlops:
    counted: Array  # int64
    model: Array
    model_causal: Array
    forward: Array  # counted, forward pass only
    recompute: Array  # counted, forward re-run by checkpointing


def selective_recompute(s: StageShape) -> Array:
    """Whether only the core attention is recomputed (full recompute re-runs it anyway)."""
    return s.recompute_attention & ~s.recompute


def _passes(s: StageShape) -> tuple[Array, Array, Array]:
    """How many blocks run forward, input-gradient and weight-gradient passes."""
    return s.layers, s.n_backward_blocks, s.n_trainable


def micro_batch_flops(s: StageShape) -> MicroBatchFlops:
    block, head = block_ops(s), head_ops(s)
    n_fwd, n_bwd, n_wgrad = _passes(s)
    passes = ("fwd_flops", "bwd_input_flops", "bwd_weight_flops")
    fwd_block, bwd_in_block, bwd_w_block = (total(block, a) for a in passes)
    recompute_block = sum(np.asarray(op.fwd_flops) for op in block if op.recomputed)
    head_fwd, head_in, head_w = (total(head, a) for a in passes)

    forward = n_fwd * fwd_block + head_fwd
    backward = n_bwd * bwd_in_block + n_wgrad * bwd_w_block + head_in + s.head_trainable * head_w
    # Selective recompute (trainers.py) re-runs only the core attention's forward.
    attention_block = sum(np.asarray(op.fwd_flops) for op in block if op.kind == "attention")
    recompute = s.recompute * n_bwd * recompute_block + selective_recompute(s) * n_bwd * attention_block
    tokens = s.tokens

    def model_flops(attention_scale: float) -> Array:
        fwd = bwd_in = 0
        for op in block:
            f = op.fwd_flops if op.model_fwd_flops is None else op.model_fwd_flops
            b = op.bwd_input_flops if op.model_bwd_flops is None else op.model_bwd_flops
            scale = attention_scale if op.kind == "attention" else 1.0
            fwd, bwd_in = fwd + scale * np.asarray(f), bwd_in + scale * np.asarray(b)
        per_token = (n_fwd * fwd + n_bwd * bwd_in + n_wgrad * bwd_w_block
                     + head_fwd + head_in + s.head_trainable * head_w)
        return tokens * per_token.astype(float)

    return MicroBatchFlops(
        counted=tokens * (forward + backward + recompute),
        model=model_flops(1.0),
        model_causal=model_flops(0.5),
        forward=tokens * forward,
        recompute=tokens * recompute,
    )


def study_units_per_token(s: StageShape) -> Array:
    """The paper's cost in units of c: forward through every active layer, backward
    through the trainable ones only (frozen blocks cost nothing backward)."""
    return s.layers + s.n_trainable


@dataclass(frozen=True)
class ParameterCounts:
    total: Array
    trainable: Array
    non_embedding: Array


def parameter_counts(s: StageShape) -> ParameterCounts:
    block = total(block_ops(s), "params")
    ln_f, lm_head, _ = (np.asarray(op.params) for op in head_ops(s))
    embedding = embedding_params(s)
    head = np.where(s.tied, 0, lm_head)
    non_embedding = s.layers * block + ln_f + head
    trainable = s.n_trainable * block + ln_f + s.train_embeddings * embedding + np.where(s.tied, 0, lm_head)
    return ParameterCounts(total=non_embedding + embedding, trainable=trainable, non_embedding=non_embedding)


@dataclass(frozen=True)
class RankParameters:
    """The parameters one GPU holds: a pipeline rank's blocks and what else it holds,
    split over the tensor-parallel group (``rank_parameter_counts``)."""

    total: Array
    trainable: Array
    block: Array  # one block's, on one GPU
    blocks: Array  # blocks on the rank
    trainable_blocks: Array


def rank_parameter_counts(s: StageShape, tp: Array | int = 1, embedding: Array | bool = True,
                          head: Array | bool = True) -> RankParameters:
    """Parameters on one GPU of a pipeline rank whose blocks ``s`` gives (its own layers and
    n_trainable), holding the embeddings (``embedding``) and the final norm and LM head
    (``head``), over ``tp`` tensor-parallel GPUs (Megatron): a block's matmul weights and
    column-parallel biases split by tp (exactly: tp divides d_model, the heads and d_ff),
    the vocabulary split by tp rounded up (Megatron pads it), norms, row-parallel biases and
    learned positions whole on every rank. A pipeline's last rank keeps its own copy of a
    tied embedding for the head (Megatron). With tp = 1 and everything held, these are
    ``parameter_counts`` to the parameter."""
    ops = block_ops(s)
    replicated = total(ops, "replicated_params")
    block = (total(ops, "params") - replicated) // tp + replicated
    ln_f, _, _ = head_ops(s)
    vocab_share = -(-s.vocab_size // tp) * s.d_model
    embeddings = embedding * (vocab_share + s.learned_positions * s.seq_len * s.d_model)
    head_matrix = head * np.where(s.tied & embedding, 0, vocab_share)  # untied head, or a tied one's copy
    head_params = head * np.asarray(ln_f.params)
    total_ = s.layers * block + head_params + head_matrix + embeddings
    trainable = s.n_trainable * block + head_params + s.head_trainable * head_matrix + s.train_embeddings * embeddings
    return RankParameters(total=total_, trainable=trainable, block=block, blocks=s.layers,
                          trainable_blocks=s.n_trainable)
