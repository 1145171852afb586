"""The cost engine against real counters: FlopCounterMode and saved_tensors_hooks.

Exact equality, over random small shapes and every combination of train policy,
frozen embeddings, tying, recompute, MLP kind, GQA and bias.
"""

import itertools
import random

import pytest
import torch

from costsim.constants import COMPUTE_BYTES
from costsim.flops import micro_batch_flops, parameter_counts
from costsim.memory import saved_activation_bytes
from costsim.ops import StageShape
from validate.counting import count_micro_batch
from validate.model import GPT, GPTShape

POLICIES = list(itertools.product(
    ["all", "top1", "none"],  # which blocks train
    [True, False],  # train embeddings
    [True, False],  # tied
    [False, True],  # recompute
))


def random_shape(rng: random.Random, mlp: str, gqa: bool, bias: bool) -> GPTShape:
    head_dim = rng.choice([4, 8])
    n_heads = rng.choice([2, 4])
    return GPTShape(
        vocab_size=rng.randint(50, 130), seq_len=rng.choice([8, 16, 24]), n_layers=rng.randint(1, 4),
        d_model=n_heads * head_dim, n_heads=n_heads, n_kv_heads=n_heads // 2 if gqa else n_heads,
        d_ff=rng.choice([16, 24, 48]), mlp=mlp, tied_embeddings=True, bias=bias,
    )


def trainable_blocks(policy: str, n_layers: int) -> int:
    return {"all": n_layers, "top1": 1, "none": 0}[policy]


def measure_and_predict(shape: GPTShape, n_train: int, train_emb: bool, recompute: bool, batch: int, seed: int):
    torch.manual_seed(seed)
    model = GPT(shape)
    model.set_trainable(n_train, train_emb)
    model.checkpoint_blocks(recompute)
    idx = torch.randint(0, shape.vocab_size, (batch, shape.seq_len))
    targets = torch.randint(0, shape.vocab_size, (batch, shape.seq_len))
    measured = count_micro_batch(model, idx, targets)
    stage = StageShape.of(
        layers=shape.n_layers, d_model=shape.d_model, n_heads=shape.n_heads, n_kv_heads=shape.n_kv_heads,
        d_ff=shape.d_ff, vocab_size=shape.vocab_size, seq_len=shape.seq_len, micro_batch_size=batch,
        n_trainable=n_train, train_embeddings=train_emb, tied=shape.tied_embeddings, swiglu=shape.mlp == "swiglu",
        recompute=recompute, compute_bytes=COMPUTE_BYTES["fp32"], bias=shape.bias,
    )
    return model, measured, stage


@pytest.mark.parametrize("policy,train_emb,tied,recompute", POLICIES)
@pytest.mark.parametrize("variant", ["gelu", "swiglu", "gelu-gqa-bias"])
def test_counted_flops_and_saved_activations_are_exact(policy, train_emb, tied, recompute, variant):
    rng = random.Random(hash((policy, train_emb, tied, recompute, variant)) & 0xFFFF)
    for trial in range(3):
        shape = random_shape(rng, mlp=variant.split("-")[0], gqa="gqa" in variant, bias="bias" in variant)
        shape = GPTShape(**{**shape.__dict__, "tied_embeddings": tied})
        n_train = trainable_blocks(policy, shape.n_layers)
        batch = rng.randint(1, 3)
        model, measured, stage = measure_and_predict(shape, n_train, train_emb, recompute, batch, seed=trial)
        flops = micro_batch_flops(stage)
        assert int(flops.counted[()]) == measured.counted_flops, (shape, n_train, train_emb, recompute)
        case = (shape, n_train, train_emb, recompute)
        assert int(saved_activation_bytes(stage)[()]) == measured.saved_activation_bytes, case
        counts = parameter_counts(stage)
        real = model.parameter_counts()
        assert (int(counts.total[()]), int(counts.trainable[()]), int(counts.non_embedding[()])) == (
            real["total"], real["trainable"], real["non_embedding"])
