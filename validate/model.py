"""The reference GPT: the model validation trains and the cost engine mirrors.

nanoGPT conventions, as in the study's code: pre-LayerNorm blocks, learned positions,
a 4x GELU MLP (or SwiGLU), ``F.scaled_dot_product_attention(is_causal=True)``, optionally
tied input/output embeddings, and a loss computed in fp32 over full-vocabulary logits.

Growth lives here too, because it is an operation on this model's weights:
``grow_depth`` and ``grow_width`` apply an operator registered (at the end of this file)
under a name of ``costsim/growth.py``'s table, ``set_trainable`` applies a
stage's train policy, and ``checkpoint_blocks`` wraps every block in non-reentrant
activation checkpointing. Any change to the ops a block runs must be mirrored in
``costsim/ops.py``; the FLOP and saved-activation parity tests hold the two together.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

INIT_STD = 0.02
# relative size of the symmetry-breaking noise of function-preserving widening
WIDEN_NOISE = 0.5


@dataclass(frozen=True)
class GPTShape:
    """Everything that fixes the model's tensors, for one stage."""

    vocab_size: int
    seq_len: int
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    mlp: str = "gelu"  # gelu | swiglu
    tied_embeddings: bool = True
    bias: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = shape.n_heads, shape.n_kv_heads, shape.head_dim
        kv_width = shape.n_kv_heads * shape.head_dim
        self.c_attn = nn.Linear(shape.d_model, shape.d_model + 2 * kv_width, bias=shape.bias)
        self.c_proj = nn.Linear(shape.d_model, shape.d_model, bias=shape.bias)
        self.c_proj.residual_projection = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        kv_width = self.n_kv_heads * self.head_dim
        q, k, v = self.c_attn(x).split([d_model, kv_width, kv_width], dim=2)
        q = q.view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        gqa = self.n_kv_heads != self.n_heads
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        y = y.transpose(1, 2).contiguous().view(batch, seq, d_model)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.swiglu = shape.mlp == "swiglu"
        # SwiGLU's gate and up projections are one matmul: same FLOPs, one kernel.
        fan_out = 2 * shape.d_ff if self.swiglu else shape.d_ff
        self.c_fc = nn.Linear(shape.d_model, fan_out, bias=shape.bias)
        self.c_proj = nn.Linear(shape.d_ff, shape.d_model, bias=shape.bias)
        self.c_proj.residual_projection = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.d_model)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.LayerNorm(shape.d_model)
        self.mlp = MLP(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, shape: GPTShape, final_n_layers: int | None = None):
        """``final_n_layers`` scales residual projections at init as the study does:
        every block is initialised for the full-depth model, even when it starts shallow."""
        super().__init__()
        self.shape = shape
        self.final_n_layers = final_n_layers or shape.n_layers
        self.wte = nn.Embedding(shape.vocab_size, shape.d_model)
        self.wpe = nn.Embedding(shape.seq_len, shape.d_model)
        self.blocks = nn.ModuleList(self.new_block() for _ in range(shape.n_layers))
        self.ln_f = nn.LayerNorm(shape.d_model)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        if shape.tied_embeddings:
            self.lm_head.weight = self.wte.weight
        self._init_module(self.wte)
        self._init_module(self.wpe)
        if not shape.tied_embeddings:
            self._init_module(self.lm_head)
        self.checkpointed = False

    def new_block(self) -> Block:
        block = Block(self.shape)
        if next(self.parameters(), None) is not None:
            p = next(self.parameters())
            block.to(device=p.device, dtype=p.dtype)
        block.apply(self._init_module)
        return block

    def _init_module(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = INIT_STD
            if getattr(module, "residual_projection", False):
                std *= (2 * self.final_n_layers) ** -0.5
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        _, seq = idx.shape
        pos = torch.arange(seq, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            if self.checkpointed and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    # --- growth and training policy -------------------------------------------------

    def grow_depth(self, n_layers: int, operator: str) -> None:
        """Grow to ``n_layers`` blocks by a registered depth operator (DEPTH_GROWERS)."""
        n_old = len(self.blocks)
        n_new = n_layers - n_old
        if n_new < 0:
            raise ValueError(f"cannot shrink from {n_old} to {n_layers} blocks")
        if operator not in DEPTH_GROWERS:
            raise ValueError(f"unknown depth growth operator {operator!r}; known: {', '.join(DEPTH_GROWERS)}")
        if n_new == 0:
            return
        self.blocks = nn.ModuleList(DEPTH_GROWERS[operator](self, list(self.blocks), n_new))
        self.shape = _replace(self.shape, n_layers=n_layers)

    def grow_width(self, d_model: int, n_heads: int, d_ff: int, operator: str) -> None:
        """Widen every layer to (d_model, n_heads, d_ff) by a registered width operator
        (WIDTH_GROWERS); depth is unchanged. A freshly initialised wider model receives
        the old weights tensor by tensor, as the operator maps them."""
        if operator not in WIDTH_GROWERS:
            raise ValueError(f"unknown width growth operator {operator!r}; known: {', '.join(WIDTH_GROWERS)}")
        old = self.shape
        kv_heads = old.n_kv_heads * n_heads // old.n_heads
        wider = GPT(_replace(old, d_model=d_model, n_heads=n_heads, n_kv_heads=kv_heads, d_ff=d_ff),
                    final_n_layers=self.final_n_layers)
        p = next(self.parameters())
        wider.to(device=p.device, dtype=p.dtype)
        grower = WIDTH_GROWERS[operator](old, wider.shape)
        old_segments, new_segments = _segments(old), _segments(wider.shape)
        with torch.no_grad():
            for (name, target), source in zip(wider.named_parameters(), self.parameters()):
                module = name.split(".")[-2] if name.count(".") >= 1 else name
                target.copy_(grower.weight(name, source, target, old_segments.get(module),
                                           new_segments.get(module)))
            grower.finish(wider)
        trainable = [p.requires_grad for p in self.parameters()]
        self.wte, self.wpe, self.blocks, self.ln_f, self.lm_head = (
            wider.wte, wider.wpe, wider.blocks, wider.ln_f, wider.lm_head)
        self.shape = wider.shape
        for flag, param in zip(trainable, self.parameters()):
            param.requires_grad_(flag)

    def set_trainable(self, n_trainable_blocks: int, train_embeddings: bool = True) -> None:
        """The top ``n_trainable_blocks`` blocks train, the rest are frozen.

        The final norm always trains. Embeddings train unless ``train_embeddings`` is
        false; with tied weights the LM head is the token embedding and follows it.
        """
        n_layers = len(self.blocks)
        if not 0 <= n_trainable_blocks <= n_layers:
            raise ValueError(f"n_trainable_blocks={n_trainable_blocks} outside 0..{n_layers}")
        for i, block in enumerate(self.blocks):
            block.requires_grad_(i >= n_layers - n_trainable_blocks)
        self.wte.requires_grad_(train_embeddings)
        self.wpe.requires_grad_(train_embeddings)
        self.ln_f.requires_grad_(True)
        if not self.shape.tied_embeddings:
            self.lm_head.requires_grad_(True)

    def checkpoint_blocks(self, enabled: bool = True) -> None:
        """Non-reentrant activation checkpointing of every block."""
        self.checkpointed = enabled

    def parameter_counts(self) -> dict[str, int]:
        unique = {id(p): p for p in self.parameters()}.values()
        total = sum(p.numel() for p in unique)
        trainable = sum(p.numel() for p in unique if p.requires_grad)
        embedding = self.wte.weight.numel() + self.wpe.weight.numel()
        return {"total": total, "trainable": trainable, "non_embedding": total - embedding}


def _replace(shape: GPTShape, **changes) -> GPTShape:
    return GPTShape(**{**shape.__dict__, **changes})



def _segments(shape: GPTShape) -> dict[str, list[int]]:
    """Output segments of fused weights: each grows on its own when widening."""
    kv = shape.n_kv_heads * shape.head_dim
    fc = [shape.d_ff, shape.d_ff] if shape.mlp == "swiglu" else [shape.d_ff]
    return {"c_attn": [shape.d_model, kv, kv], "c_fc": fc}


def _rows(t: torch.Tensor, segments: list[int] | None) -> list[torch.Tensor]:
    return list(t.split(segments, dim=0)) if segments else [t]


def _tile(name: str, source: torch.Tensor, target_shape: torch.Size, old_segments: list[int] | None,
          factor: int) -> torch.Tensor:
    """k copies along every widened dimension. In a block's Linear the input is k
    copies of the old input, so the k column blocks must sum to the old weight: each
    is W/k plus noise that sums to zero over the copies. The function is unchanged, but
    the copies differ, so gradient descent can pull them apart (exact copies would stay
    copies forever and the wider model would have no more capacity than the narrow one)."""
    out = source
    if source.shape[0] != target_shape[0]:
        out = torch.cat([part.repeat(factor, *([1] * (source.dim() - 1))) for part in _rows(source, old_segments)])
    if source.dim() == 2 and source.shape[1] != target_shape[1]:
        if name.startswith("blocks."):
            noise = torch.randn(factor, *out.shape, device=out.device, dtype=out.dtype)
            noise = (noise - noise.mean(dim=0, keepdim=True)) * WIDEN_NOISE * out.std() / factor
            out = torch.cat([out / factor + noise[i] for i in range(factor)], dim=1)
        else:
            out = out.repeat(1, factor)
    return out


def _embed_leading(source: torch.Tensor, target: torch.Tensor, old_segments: list[int] | None,
                   new_segments: list[int] | None) -> torch.Tensor:
    """The old weights in the leading slice of each (output segment, input) block."""
    out = target.clone()
    old_parts = _rows(source, old_segments)
    new_parts = _rows(out, new_segments)
    for old, new in zip(old_parts, new_parts):
        new[tuple(slice(0, n) for n in old.shape)] = old
    return out


# --- growth operators: the weight operation behind each name in costsim/growth.py -----

DepthGrower = Callable[[GPT, list[Block], int], list[Block]]
DEPTH_GROWERS: dict[str, DepthGrower] = {}


def depth_operator(name: str) -> Callable[[DepthGrower], DepthGrower]:
    """Register ``fn(model, old_blocks, n_new) -> all blocks, bottom first`` as ``name``."""
    def register(fn: DepthGrower) -> DepthGrower:
        DEPTH_GROWERS[name] = fn
        return fn
    return register


@depth_operator("random_top")
def _random_top(model: GPT, old: list[Block], n_new: int) -> list[Block]:
    """Fresh blocks on top, initialised as at the start of training."""
    return old + [model.new_block() for _ in range(n_new)]


@depth_operator("identity")
def _identity(model: GPT, old: list[Block], n_new: int) -> list[Block]:
    """Fresh blocks whose two residual projections start at zero: each new block adds
    nothing to the residual stream, so the model computes exactly the same function."""
    fresh = [model.new_block() for _ in range(n_new)]
    for block in fresh:
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            nn.init.zeros_(proj.weight)
    return old + fresh


@depth_operator("stack_copy")
def _stack_copy(model: GPT, old: list[Block], n_new: int) -> list[Block]:
    """Copies of the trained blocks on top, bottom first, repeated as needed."""
    return old + [copy.deepcopy(old[i % len(old)]) for i in range(n_new)]


@depth_operator("stack_middle")
def _stack_middle(model: GPT, old: list[Block], n_new: int) -> list[Block]:
    """Copies of the middle blocks, inserted in the middle."""
    start = max(0, (len(old) - n_new) // 2)
    middle = [copy.deepcopy(old[(start + i) % len(old)]) for i in range(n_new)]
    cut = start + min(n_new, len(old))
    return old[:cut] + middle + old[cut:]


class WidthGrower:
    """How one width operator maps each old tensor into the wider model's."""

    def __init__(self, old: GPTShape, new: GPTShape):
        self.old, self.new = old, new

    def weight(self, name: str, source: torch.Tensor, target: torch.Tensor, old_segments: list[int] | None,
               new_segments: list[int] | None) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, wider: GPT) -> None:
        """Adjust the wider model once every tensor is in place."""


WIDTH_GROWERS: dict[str, type[WidthGrower]] = {}


def width_operator(name: str) -> Callable[[type[WidthGrower]], type[WidthGrower]]:
    def register(cls: type[WidthGrower]) -> type[WidthGrower]:
        WIDTH_GROWERS[name] = cls
        return cls
    return register


@width_operator("widen_preserving")
class WidenPreserving(WidthGrower):
    """HyperCloning-style: every width grows by one integer factor k and each hidden
    vector becomes k copies of itself. Weights are tiled k x k and divided by k, so
    every layer's output is k copies of the old output; LayerNorm sees the same mean and
    variance, attention the same heads (k copies). The final norm's affine is divided by
    k so the head's k-fold sum gives the old logits, with tied or untied embeddings. The
    model computes the same function."""

    def __init__(self, old: GPTShape, new: GPTShape):
        super().__init__(old, new)
        self.factor = new.d_model // old.d_model
        if (old.d_model * self.factor, old.n_heads * self.factor, old.d_ff * self.factor) != (
                new.d_model, new.n_heads, new.d_ff):
            raise ValueError("widen_preserving needs d_model, n_heads and d_ff to grow by one integer factor")

    def weight(self, name, source, target, old_segments, new_segments):
        return _tile(name, source, target.shape, old_segments, self.factor)

    def finish(self, wider: GPT) -> None:
        wider.ln_f.weight.div_(self.factor)
        wider.ln_f.bias.div_(self.factor)


@width_operator("widen_random")
class WidenRandom(WidthGrower):
    """The old weights fill the leading slices of a freshly initialised wider model;
    not function-preserving."""

    def weight(self, name, source, target, old_segments, new_segments):
        return _embed_leading(source, target, old_segments, new_segments)
