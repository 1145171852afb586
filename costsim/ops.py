"""The reference GPT as a short list of cost ops (Calculon style).

Each op knows, per token of a micro-batch, its counted forward FLOPs, its backward
FLOPs split into the input-gradient and weight-gradient parts, its parameters, the
activation bytes autograd saves for it, and the bytes it moves. A stage's cost is a
sum over these lists (``costsim/flops.py``, ``memory.py``, ``timing.py``).

Everything is a numpy array, one element per stage, so the scalar path
(``estimate``) and the vectorised path (``estimate_many``) run the same formulas.
The ops mirror ``validate/model.py``; the parity tests hold the two together.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from costsim.constants import INDEX_BYTES, RESIDUAL_BYTES, STAT_BYTES

Array = np.ndarray


@dataclass(frozen=True)
class StageShape:
    """Shapes and training policy of stages, as broadcast numpy arrays."""

    layers: Array
    d_model: Array
    n_heads: Array
    n_kv_heads: Array
    d_ff: Array
    vocab_size: Array
    seq_len: Array
    micro_batch_size: Array
    n_trainable: Array  # blocks that train, counted from the top
    train_embeddings: Array  # bool
    tied: Array  # bool
    swiglu: Array  # bool
    recompute: Array  # bool: every block checkpointed (non-reentrant)
    compute_bytes: Array  # 2 under bf16 autocast, 4 in fp32
    # Architecture variants of external models (costsim/models.py); the defaults are
    # the reference GPT's, so a caller that does not name them costs the reference GPT.
    bias: Array = field(default_factory=lambda: np.zeros(1, dtype=bool))
    qkv_bias: Array = field(default_factory=lambda: np.zeros(1, dtype=bool))  # q/k/v projection only (Qwen2)
    rms_norm: Array = field(default_factory=lambda: np.zeros(1, dtype=bool))  # RMSNorm: a scale, no shift
    learned_positions: Array = field(default_factory=lambda: np.ones(1, dtype=bool))  # False: rotary
    # What the trainer does (costsim/trainers.py); the defaults are the reference trainer's.
    residual_bytes: Array = field(default_factory=lambda: np.full(1, RESIDUAL_BYTES))  # residual stream and norm inputs
    loss_kind: Array = field(default_factory=lambda: np.zeros(1, dtype=np.int64))  # index into LOSS_KINDS
    recompute_attention: Array = field(default_factory=lambda: np.zeros(1, dtype=bool))  # selective: core attention

    @classmethod
    def of(cls, **values) -> StageShape:
        """Build from scalars or arrays; everything is broadcast to one shape."""
        names = [f.name for f in fields(cls)]
        for name, default in (_VARIANT_DEFAULTS | _TRAINER_DEFAULTS).items():
            values.setdefault(name, default)
        arrays = np.broadcast_arrays(*(np.asarray(values[n]) for n in names))
        as_type = {n: (bool if n in _BOOL_FIELDS else np.int64) for n in names}
        return cls(**{n: a.astype(as_type[n]) for n, a in zip(names, arrays)})

    @property
    def tokens(self) -> Array:
        """Tokens in one micro-batch."""
        return self.micro_batch_size * self.seq_len

    @property
    def kv_width(self) -> Array:
        return self.n_kv_heads * (self.d_model // self.n_heads)

    @property
    def head_trainable(self) -> Array:
        """A tied LM head is the token embedding and follows it."""
        return ~self.tied | self.train_embeddings

    @property
    def n_backward_blocks(self) -> Array:
        """Blocks the backward pass runs through: those that train, and the frozen
        ones below them when gradients must still reach trainable embeddings."""
        return self.n_trainable + (self.layers - self.n_trainable) * self.train_embeddings


_VARIANT_DEFAULTS = {"bias": False, "qkv_bias": False, "rms_norm": False, "learned_positions": True}
_TRAINER_DEFAULTS = {"residual_bytes": RESIDUAL_BYTES, "loss_kind": 0, "recompute_attention": False}
_BOOL_FIELDS = {"train_embeddings", "tied", "swiglu", "recompute", "recompute_attention", *_VARIANT_DEFAULTS}

# How the loss keeps the logits for backward (costsim/trainers.py documents each):
# fp32: an fp32 log-softmax (torch cross_entropy on an fp32 copy; the reference);
# fp32-inplace: an fp32 softmax written over the fp32 copy (Megatron's vocab-parallel loss);
# fused: the logits in the compute dtype and a log-sum-exp per token (a fused kernel).
LOSS_KINDS = ("fp32", "fp32-inplace", "fused")
FUSED_LOSS = LOSS_KINDS.index("fused")


@dataclass(frozen=True)
class Op:
    """Cost of one op per token of a micro-batch (arrays over stages)."""

    name: str
    kind: str  # matmul | attention | memory
    fwd_flops: Array | int = 0
    bwd_input_flops: Array | int = 0
    bwd_weight_flops: Array | int = 0
    params: Array | int = 0
    saved_bytes: Array | int = 0  # held whenever the op is in the backward graph
    saved_bytes_if_trains: Array | int = 0  # held only when its weights train
    traffic_bytes: Array | int = 0  # forward bytes moved (memory-bound ops)
    recomputed: bool = True  # re-run by non-reentrant checkpointing in backward
    model_fwd_flops: Array | int | None = None  # model-FLOPs convention, if it differs
    model_bwd_flops: Array | int | None = None
    # Tensor parallelism (Megatron; costsim/memory.py and timing.py apply it, the FLOP
    # counters do not): every matmul's FLOPs split over the TP group. An op inside a
    # tensor-parallel region (attention, the MLP activation, a row-parallel matmul's input,
    # the vocabulary-parallel loss) has its saved activations and traffic split too; one
    # outside (the norms, residual adds, a column-parallel matmul's input) keeps them whole
    # on every TP rank, unless sequence parallelism splits them by tokens.
    inside_tp: bool = False
    replicated_params: Array | int = 0  # kept whole on every TP rank: norms, a row-parallel matmul's bias


def linear(name: str, d_in, d_out, s: StageShape, *, bias: Array | bool, input_saved_elsewhere: bool = False,
           recomputed: bool = True, row_parallel: bool = False) -> Op:
    """y = x W^T (+ b where ``bias``). Autograd saves x only when W needs a gradient;
    when x is already held by another op (attention's output), it costs nothing extra.
    A bias adds parameters but no counted FLOPs (FlopCounterMode counts the matmul).
    Under tensor parallelism a column-parallel matmul (the default) splits W's outputs and
    takes the whole x; a ``row_parallel`` one splits W's inputs, so x is split too, and its
    bias, added after the all-reduce, is whole on every rank."""
    flops = 2 * d_in * d_out
    bias_params = np.asarray(bias) * d_out
    return Op(
        name, "matmul", fwd_flops=flops, bwd_input_flops=flops, bwd_weight_flops=flops,
        params=d_in * d_out + bias_params,
        saved_bytes_if_trains=0 if input_saved_elsewhere else s.compute_bytes * d_in,
        traffic_bytes=s.compute_bytes * (d_in + d_out), recomputed=recomputed,
        inside_tp=row_parallel, replicated_params=bias_params if row_parallel else 0,
    )


def layer_norm(name: str, s: StageShape) -> Op:
    """Saves its input (the residual stream: fp32 in the reference) and the per-token mean
    and rstd. An RMSNorm has a scale and no shift (d parameters, not 2d); its saved bytes
    are taken as LayerNorm's, which the reference GPT measures (a fused RMSNorm keeps one
    statistic, 4 bytes a token less)."""
    d, r = s.d_model, s.residual_bytes
    params = np.where(s.rms_norm, d, 2 * d)
    return Op(name, "memory", params=params, saved_bytes=r * d + 2 * STAT_BYTES, traffic_bytes=r * 2 * d,
              replicated_params=params)


def attention(s: StageShape) -> Op:
    """Causal SDPA. Counted FLOPs (FlopCounterMode): two full T x T matmuls forward,
    five backward (flash recomputes the scores); causal masking is not halved.
    Saves q, k, v (one qkv buffer), the output and the log-sum-exp per head; no T x T
    matrix (every trainer profile assumes a flash kernel). Selective recompute of the core
    attention (``recompute_attention``) drops the log-sum-exp: the output is still held as
    the input of the output projection, and q, k, v as the checkpoint's inputs."""
    d, t = s.d_model, s.seq_len
    return Op(
        "attention", "attention",
        fwd_flops=4 * t * d, bwd_input_flops=10 * t * d,
        saved_bytes=s.compute_bytes * (2 * d + 2 * s.kv_width) + ~s.recompute_attention * STAT_BYTES * s.n_heads,
        traffic_bytes=s.compute_bytes * (2 * d + 2 * s.kv_width),
        model_fwd_flops=4 * t * d, model_bwd_flops=8 * t * d, inside_tp=True,
    )


def activation(s: StageShape) -> Op:
    """GELU saves its input; SwiGLU saves the gate/up buffer and silu(gate)."""
    f, c = s.d_ff, s.compute_bytes
    saved = np.where(s.swiglu, c * 3 * f, c * f)
    return Op("mlp_activation", "memory", saved_bytes=saved, traffic_bytes=np.where(s.swiglu, 3 * c * f, 2 * c * f),
              inside_tp=True)


def residual_add(name: str, s: StageShape) -> Op:
    return Op(name, "memory", traffic_bytes=3 * s.residual_bytes * s.d_model)


def block_ops(s: StageShape) -> list[Op]:
    d, f = s.d_model, s.d_ff
    fc_out = np.where(s.swiglu, 2 * f, f)
    return [
        layer_norm("ln_1", s),
        linear("attn.c_attn", d, d + 2 * s.kv_width, s, bias=s.bias | s.qkv_bias),
        attention(s),
        linear("attn.c_proj", d, d, s, bias=s.bias, input_saved_elsewhere=True, row_parallel=True),
        residual_add("residual_attn", s),
        layer_norm("ln_2", s),
        linear("mlp.c_fc", d, fc_out, s, bias=s.bias),
        activation(s),
        # Non-reentrant checkpointing stops recomputing once every saved tensor is
        # back; nothing after the MLP's output projection is saved, so it is not re-run.
        linear("mlp.c_proj", f, d, s, bias=s.bias, recomputed=False, row_parallel=True),
        residual_add("residual_mlp", s),
    ]


def head_ops(s: StageShape) -> list[Op]:
    """Final norm, LM head and cross-entropy. The final norm always trains, so
    the head's input gradient is always computed."""
    v, c = s.vocab_size, s.compute_bytes
    fused = s.loss_kind == FUSED_LOSS
    loss = Op(
        "cross_entropy", "memory",
        # fp32: log_softmax (or the in-place softmax) keeps its fp32 output; fused: the
        # logits and a log-sum-exp. Either way the int64 targets.
        saved_bytes=np.where(fused, c * v + STAT_BYTES, STAT_BYTES * v) + INDEX_BYTES,
        # fp32: logits (compute dtype) -> fp32 copy -> log_softmax -> nll, read and written;
        # fused: one read of the logits.
        traffic_bytes=np.where(fused, c * v, v * (2 * c + 3 * STAT_BYTES)),
        inside_tp=True,  # vocabulary-parallel (the int64 targets are whole on every rank: costsim/memory.py)
    )
    return [layer_norm("ln_f", s), linear("lm_head", d_in=s.d_model, d_out=v, s=s, bias=False), loss]


def embedding_params(s: StageShape) -> Array:
    """Token embeddings, plus a table of seq_len learned positions (rotary positions
    have no parameters: the reference GPT sizes its table to the trained seq_len)."""
    return s.vocab_size * s.d_model + s.learned_positions * s.seq_len * s.d_model


def embedding_saved_bytes_per_microbatch(s: StageShape) -> Array:
    """The embeddings keep their int64 indices: one per token, plus the positions if learned."""
    return s.train_embeddings * INDEX_BYTES * (s.tokens + s.learned_positions * s.seq_len)


# nll_loss keeps a 4-byte total_weight scalar per micro-batch.
LOSS_SAVED_BYTES_PER_MICROBATCH = STAT_BYTES


def total(ops: list[Op], attr: str) -> Array:
    return sum(np.asarray(getattr(op, attr)) for op in ops)
