"""Tensor, pipeline and data parallel layouts and the network model (issue #13, parts 1-2).

The hand-worked model is tests/test_trainers.py's: 2 blocks, d=8, 2 heads, d_ff=32,
vocabulary 16, one sequence of 4 tokens, everything trains, tied embeddings, learned
positions, bf16-mixed (c=2), the reference trainer (fp32 weights, residual stream r=4).
A block: matmul weights qkv 8x24=192, proj 64, fc 256, fc_out 256 = 768 (split by tp), two
LayerNorms of 16 = 32 (whole on every TP rank). Outside the blocks: token embedding 16x8,
positions 4x8 = 32, final norm 16.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from costsim import SpecError, estimate, load_spec, parse_spec
from costsim.engine import estimate_many, spec_costs
from costsim.estimate import render_table
from costsim.flops import parameter_counts, rank_parameter_counts
from costsim.hardware import GPUSpec, load_gpu
from costsim.memory import peak_memory, saved_activation_bytes
from costsim.ops import LOSS_SAVED_BYTES_PER_MICROBATCH, StageShape, block_ops
from costsim.parallel import (
    Layout,
    Link,
    all_gather_bytes,
    all_gather_s,
    all_reduce_bytes,
    all_reduce_s,
    data_parallel_s,
    group_link,
    pipeline_ranks,
    pipeline_send_s,
    send_s,
    tensor_parallel_all_reduces,
    tensor_parallel_overlapped_s,
    tensor_parallel_s,
)
from costsim.profile import CostProfile, load_profile
from costsim.timing import block_gemm_s, micro_batch_work, ring_attention_s
from costsim.trainers import TrainerProfile, grad_sync_bytes, load_trainer, shape_fields

BASE = dict(layers=2, d_model=8, n_heads=2, n_kv_heads=2, d_ff=32, vocab_size=16, seq_len=4, micro_batch_size=1,
            n_trainable=2, train_embeddings=True, tied=True, swiglu=False, recompute=False, compute_bytes=2)
MATMUL, NORMS = 768, 32  # a block's weights split by tp, and kept whole
# no overhead, no reserve; the fp32 loss's calibrated transient: 7 bytes a logit
PROFILE = CostProfile(name="test", device="", matmul_efficiency=1, matmul_half_flops=0, attention_efficiency=1,
                      bandwidth_efficiency=1, launch_overhead_s=0, logits_transient_bytes=7.0, memory_overhead_bytes=0,
                      reserve_fraction=0)
EXAMPLES = Path(__file__).parent.parent / "examples"
BEFORE = json.loads((Path(__file__).parent / "data" / "estimates_before_layouts.json").read_text())["estimates"]

SPEC = {
    "model": {"d_model": 256, "n_heads": 8, "n_kv_heads": 4, "d_ff": 1024, "vocab_size": 1000, "seq_len": 128},
    "training": {"micro_batch_size": 2, "batch_size": 64},
    "hardware": {"gpu": "h100-sxm", "n_gpus": 16},
    "stages": [{"layers": 4, "tokens": 1e8}, {"layers": 8, "tokens": 1e8}],
}


def shape(**changes) -> StageShape:
    return StageShape.of(**{**BASE, **changes})


def spec_with(hardware: dict | None = None, **training):
    data = copy.deepcopy(SPEC)
    data["training"].update(training)
    data["hardware"].update(hardware or {})
    return data


def refused(data) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return str(caught.value)


# --- layouts --------------------------------------------------------------------------


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 1), (4, 2), (1, 4), (4, 4), (2, 2)])
def test_layouts_multiply_to_the_gpu_count(tp, pp):
    result = estimate(parse_spec(spec_with(tensor_parallel=tp, pipeline_parallel=pp)))
    for stage in result.stages:
        assert (stage.tensor_parallel, stage.pipeline_parallel) == (tp, pp)
        assert stage.tensor_parallel * stage.pipeline_parallel * stage.data_parallel == result.n_gpus == 16


@pytest.mark.parametrize("changes,hardware,needles", [
    ({"tensor_parallel": 3}, None, ["tensor_parallel x pipeline_parallel = 3 x 1 = 3 does not divide hardware.n_gpus",
                                    "stages[0]: tensor_parallel 3 does not divide the stage's n_heads 8",
                                    "stages[1]: tensor_parallel 3 does not divide the stage's n_heads 8"]),
    ({"tensor_parallel": 4, "pipeline_parallel": 8}, None, ["= 32 does not divide hardware.n_gpus 16",
                                                            "stages[0]: 4 layers cannot fill pipeline_parallel 8"]),
    ({"tensor_parallel": 16}, None, ["stages[0]: tensor_parallel 16 does not divide the stage's n_heads 8",
                                     "stages[1]: tensor_parallel 16"]),
    ({"tensor_parallel": 8}, None, ["stages[0]: tensor_parallel 8 does not divide the stage's key/value heads 4",
                                    "stages[1]: tensor_parallel 8 does not divide the stage's key/value heads 4"]),
    ({"pipeline_parallel": 8}, None, ["stages[0]: 4 layers cannot fill pipeline_parallel 8 pipeline chunks"]),
    ({"virtual_stages": 2}, None, ["training.virtual_stages 2 applies to the interleaved schedule only"]),
    ({"pipeline_schedule": "interleaved", "pipeline_parallel": 2}, None, ["needs 2 or more model chunks"]),
    ({"pipeline_schedule": "interleaved"}, None, ["interleaved needs pipeline_parallel of 2 or more",
                                                  "needs 2 or more model chunks"]),
    ({"pipeline_schedule": "interleaved", "pipeline_parallel": 2, "virtual_stages": 4}, None,
     ["stages[0]: 4 layers cannot fill pipeline_parallel x virtual_stages = 8 pipeline chunks"]),
    ({"pipeline_schedule": "interleaved", "pipeline_parallel": 4, "virtual_stages": 1}, None,
     ["needs 2 or more model chunks"]),
    ({"tensor_parallel": 2, "batch_size": 12}, None,
     ["training.batch_size 12 is not a multiple of micro_batch_size x data-parallel replicas"]),
    ({"tensor_parallel": 2, "sequence_parallel": True}, {"n_gpus": 2}, []),  # 128 tokens split in 2: fine
    ({"tensor_parallel": 0}, None, ["training.tensor_parallel"]),
])
def test_invalid_layouts_are_one_line_each(changes, hardware, needles):
    data = spec_with(hardware, **changes)
    if not needles:
        parse_spec(data)
        return
    message = refused(data)
    lines = message.splitlines()
    problems = lines[1:] if len(lines) > 1 else lines  # several: "N mistakes:" and one line each
    assert len(problems) == len(needles), message
    for needle in needles:
        assert any(needle in line for line in problems), (needle, message)


def test_interleaved_needs_whole_rounds_of_micro_batches():
    data = spec_with({"n_gpus": 8}, pipeline_parallel=8, pipeline_schedule="interleaved", virtual_stages=2,
                     batch_size=16)
    data["stages"] = [{"layers": 16, "tokens": 1e8}]
    parse_spec(data)  # 16 / (2 a micro-batch x 1 replica) = 8 micro-batches: one round of the pipeline
    data["training"]["batch_size"] = 8
    assert "micro-batches a step on each replica (4) to be a multiple of pipeline_parallel 8" in refused(data)


def test_sequence_parallel_needs_the_sequence_to_split():
    data = spec_with({"n_gpus": 8}, tensor_parallel=4, sequence_parallel=True)
    data["model"]["seq_len"] = 130
    assert "tensor_parallel 4, which does not divide model.seq_len 130" in refused(data)


# --- memory -----------------------------------------------------------------------------


def test_tensor_and_pipeline_split_the_blocks_weights_exactly():
    """The blocks' matmul weights on one GPU are exactly 1/(tp x pp) of the model's; norms stay whole."""
    s = shape(layers=4, n_trainable=4)
    whole = rank_parameter_counts(s, 1, embedding=False, head=False)
    assert int(whole.total) == 4 * (MATMUL + NORMS)
    for tp, pp in [(2, 1), (1, 2), (2, 2), (4, 4)]:
        layout = Layout.of(tp * pp, tp, pp)
        first = pipeline_ranks(s, layout)[0].shape
        mine = rank_parameter_counts(first, tp, embedding=False, head=False)
        blocks = int(first.layers)
        assert blocks == 4 // pp
        assert int(mine.total) - blocks * NORMS == 4 * MATMUL // (tp * pp)


def test_hand_worked_memory_under_tp2_pp2():
    """tp=2, pp=2 on 4 GPUs, 4 micro-batches a step: one block on each rank.

    Parameters a GPU: a block 768/2 + 32 = 416; the first rank adds its half of the token
    embedding (8 x 8 = 64) and the positions (32): 512; the last the final norm (16) and its
    copy of the tied embedding's half (64): 496. Fp32 weights and gradients, 8-byte AdamW.

    Activations a token (bytes), Korthikanti-style: inside the TP regions attention's
    qkv/output/lse 2(16+16)+8 = 72, the GELU input 64 and the MLP output projection's input
    64 = 200, split by 2: 100; outside, two LayerNorm inputs 4x8+8 = 40 each and the qkv and
    fc inputs 2x8 = 16 each = 112, whole. A block on 4 tokens: 4 x 212 = 848. The first rank
    adds the embedding's indices 8 x (4 + 4) = 64, and holds min(pp, m) = 2 micro-batches:
    2 x 912 = 1824. The last rank: 848 + final norm 4x40 + head input 4x16 + fp32
    log-softmax 4x(4x16)/2 + targets 4x8 + nll's 4 = 1236, one micro-batch, and the logits'
    transient 7 x 4 x 16 / 2 = 224."""
    layout = Layout.of(4, tensor_parallel=2, pipeline_parallel=2)
    first, last = pipeline_ranks(shape(), layout, micro_batches=4)
    assert int(rank_parameter_counts(first.shape, 2, first.embedding, first.head).total) == 512
    assert int(rank_parameter_counts(last.shape, 2, last.embedding, last.head).total) == 496
    assert int(saved_activation_bytes(first.shape, layout, embedding=True, head=False)) == 912
    assert int(saved_activation_bytes(last.shape, layout, embedding=False, head=True)) == 1236
    assert (float(first.in_flight), float(last.in_flight)) == (2, 1)
    memory = peak_memory(shape(), PROFILE, layout=layout, micro_batches=4)
    first_peak = 512 * (4 + 4 + 8) + 1824
    last_peak = 496 * (4 + 4 + 8) + 1236 + 224
    assert first_peak > last_peak
    assert float(memory.peak_allocated) == first_peak
    assert (float(memory.weights), float(memory.optimizer), float(memory.activations)) == (4 * 512, 8 * 512, 1824)


def test_sequence_parallel_splits_the_rest_of_the_activations():
    """Per block a token: 312 bytes on one GPU, 100 + 112 under tp=2, (200 + 112)/2 under tp=2 with
    sequence parallelism (Korthikanti et al. 2022: 34 -> 10 + 24/t -> 34/t)."""
    s = shape(layers=1, n_trainable=1, train_embeddings=False)
    blocks_only = dict(embedding=False, head=False)
    assert int(saved_activation_bytes(s, None, **blocks_only)) == 4 * 312
    assert int(saved_activation_bytes(s, Layout.of(2, 2), **blocks_only)) == 4 * (100 + 112)
    assert int(saved_activation_bytes(s, Layout.of(2, 2, sequence_parallel=True), **blocks_only)) == 4 * 312 // 2


def test_one_f_one_b_keeps_pp_micro_batches_on_the_first_rank():
    s = shape(layers=8, n_trainable=8)
    for pp, m, first in [(2, 8, 2), (4, 8, 4), (8, 8, 8), (8, 3, 3)]:
        ranks = pipeline_ranks(s, Layout.of(pp, pipeline_parallel=pp), micro_batches=m)
        assert float(ranks[0].in_flight) == first and float(ranks[1].in_flight) == 1
    interleaved = pipeline_ranks(s, Layout.of(4, pipeline_parallel=4, virtual_stages=2), micro_batches=8)
    assert float(interleaved[0].in_flight) == 4 + 3 / 2  # p(1 + (p-1)/(p v))
    assert float(interleaved[1].in_flight) == (4 + 1) / 2


def test_pipeline_ranks_hold_their_blocks_and_the_top_ones_train():
    s = shape(layers=10, n_trainable=3, train_embeddings=False)
    first, last = pipeline_ranks(s, Layout.of(4, pipeline_parallel=4))
    assert (int(first.shape.layers), int(last.shape.layers)) == (3, 2)  # ceil and floor of 10/4
    assert (int(first.shape.n_trainable), int(last.shape.n_trainable)) == (0, 2)
    assert int(first.shape.n_backward_blocks) == 0  # nothing below the trainable blocks needs a gradient


def test_zero_shards_over_the_data_parallel_group_only():
    s = shape(layers=4, n_trainable=4)
    plain = peak_memory(s, PROFILE, 8, "zero1")
    layout = Layout.of(8, tensor_parallel=2)  # dp 4
    split = peak_memory(s, PROFILE, parallelism="zero1", layout=layout)
    params = rank_parameter_counts(s, 2)
    assert float(split.optimizer) == int(params.trainable) * 8 / 4
    assert float(plain.optimizer) == int(parameter_counts(s).trainable) * 8 / 8


# --- the network --------------------------------------------------------------------------


def test_ring_collectives_by_hand():
    assert all_reduce_bytes(1000, 4) == 1500  # 2(n-1)/n B
    assert all_gather_bytes(1000, 4) == 750  # (n-1)/n B
    assert all_reduce_bytes(1000, 1) == all_gather_bytes(1000, 1) == 0
    via = Link(np.asarray(100.0), np.asarray(1.0))
    assert all_reduce_s(1000, 4, via) == 15 + 6  # 1500/100 + 2(n-1) steps of latency
    assert all_gather_s(1000, 4, via) == 7.5 + 3
    assert send_s(1000, via) == 10 + 1


def test_tensor_parallel_all_reduces_a_micro_batch():
    # 2 forward and 2 backward a block, 2 more when recomputed; the embedding's output and the head's input gradient
    assert tensor_parallel_all_reduces(2, 2, False, True, True) == 10
    assert tensor_parallel_all_reduces(2, 1, True, False, True) == 4 + 2 + 2 + 1
    assert tensor_parallel_all_reduces(3, 0, False, True, False) == 7


def test_a_data_parallel_group_crossing_nodes_uses_the_inter_node_link():
    gpu = load_gpu("h100-sxm")
    intra, inter = gpu.interconnect_bandwidth_bytes_per_s, gpu.inter_node_bandwidth_bytes_per_s
    inside = Layout.of(8)
    assert not inside.crosses_nodes("data")
    assert float(group_link(gpu, inside, "data").bandwidth_bytes_per_s) == intra
    assert float(group_link(gpu, inside, "data").latency_s) == gpu.interconnect_latency_s == 0
    # tp 8 fills each node: the two replicas are one GPU a node, one network port each
    across = Layout.of(16, tensor_parallel=8)
    assert across.crosses_nodes("data") and not across.crosses_nodes("tensor")
    assert float(group_link(gpu, across, "data").bandwidth_bytes_per_s) == inter
    assert float(group_link(gpu, across, "data").latency_s) == gpu.inter_node_latency_s > 0
    # tp 1: 8 GPUs of the group in a node share the node's 8 ports (NCCL's channels), up to NVLink
    wide = Layout.of(16)
    assert float(group_link(gpu, wide, "data").bandwidth_bytes_per_s) == min(intra, 8 * inter)
    # gpus_per_node decides where a node ends
    assert not Layout.of(16, tensor_parallel=8, gpus_per_node=16).crosses_nodes("data")
    # Megatron's rank order: tensor innermost, then data, then pipeline; pipeline 2 x data 8 on 16 GPUs
    # keeps each data-parallel group inside a node and sends between the pipeline's ranks across nodes
    piped = Layout.of(16, pipeline_parallel=2)
    assert not piped.crosses_nodes("data") and piped.crosses_nodes("pipeline")


INLINE = dict(name="test", peak_bf16_flops_per_s=1e15, peak_tf32_flops_per_s=5e14, hbm_bandwidth_bytes_per_s=3e12,
              memory_bytes=8e10, interconnect_bandwidth_bytes_per_s=1e11)


def test_tensor_parallel_time_is_its_all_reduces():
    """Only the interconnect differs: the step time differs by m micro-batches x 10 all-reduces of
    one activation (tokens x d x c bytes) over 2 GPUs, 2(2-1)/2 of it each."""
    s = shape(micro_batch_size=2)
    layout = Layout.of(2, tensor_parallel=2)
    profile = load_profile("h200")
    times = [estimate_many(s, batch_size=8, gpu=GPUSpec(**{**INLINE, "interconnect_bandwidth_bytes_per_s": bw}),
                           profile=profile, layout=layout).step_time_s for bw in (1e9, 2e9)]
    m, activation = 8 // 2, 2 * 4 * 8 * 2
    expected = m * 10 * activation * (1 / 1e9 - 1 / 2e9)
    assert float(times[0] - times[1]) == pytest.approx(expected, rel=1e-9)


def test_data_parallel_across_nodes_is_slower_when_exposed():
    """A model whose gradient reduction sticks out of the backward: crossing nodes costs more."""
    s = shape(layers=2, d_model=1024, n_heads=8, n_kv_heads=8, d_ff=4096, vocab_size=50000, seq_len=16)
    gpu = load_gpu("h100-sxm")
    profile = load_profile("h200")
    one_node = estimate_many(s, batch_size=16, gpu=gpu, profile=profile, layout=Layout.of(16, gpus_per_node=16))
    two_nodes = estimate_many(s, batch_size=16, gpu=gpu, profile=profile, layout=Layout.of(16, gpus_per_node=8))
    two_ports = estimate_many(s, batch_size=16, gpu=gpu, profile=profile, layout=Layout.of(16, gpus_per_node=2))
    assert float(one_node.step_time_s) < float(two_nodes.step_time_s) < float(two_ports.step_time_s)


def test_an_inline_gpu_without_a_network_keeps_its_interconnect():
    gpu = GPUSpec(**INLINE)
    assert gpu.inter_node_bandwidth_bytes_per_s is None and gpu.inter_node_latency_s == 0
    assert float(group_link(gpu, Layout.of(64), "data").bandwidth_bytes_per_s) == 1e11


def test_every_preset_names_its_network():
    from costsim.hardware import gpu_preset_names

    for name in gpu_preset_names():
        gpu = load_gpu(name)
        assert gpu.inter_node_bandwidth_bytes_per_s and gpu.inter_node_latency_s > 0, name
        assert "inter_node_bandwidth_bytes_per_s" in gpu.source, name
    assert load_gpu("h100-sxm").inter_node_bandwidth_bytes_per_s == load_gpu("h200").inter_node_bandwidth_bytes_per_s \
        == 50e9  # 400 Gb/s InfiniBand a GPU


def test_the_pipeline_bubble():
    result = estimate(parse_spec(spec_with(pipeline_parallel=4)))  # 64 / (2 x 4) = 8 micro-batches a replica
    assert [s.pipeline_bubble_fraction for s in result.stages] == [3 / 8, 3 / 8]
    interleaved = estimate(parse_spec(spec_with(pipeline_parallel=2, pipeline_schedule="interleaved",
                                                virtual_stages=2, batch_size=128)))  # 128 / (2 x 8) = 8
    assert interleaved.stages[1].pipeline_bubble_fraction == 1 / (8 * 2)
    assert estimate(parse_spec(SPEC)).stages[0].pipeline_bubble_fraction == 0


def test_layouts_change_memory_and_time_as_they_should():
    plain = estimate(parse_spec(SPEC))
    tp = estimate(parse_spec(spec_with(tensor_parallel=4)))
    tp_sp = estimate(parse_spec(spec_with(tensor_parallel=4, sequence_parallel=True)))
    pp = estimate(parse_spec(spec_with(pipeline_parallel=4)))
    for i in range(2):
        assert tp.stages[i].peak_memory_bytes < plain.stages[i].peak_memory_bytes
        assert tp_sp.stages[i].activation_bytes < tp.stages[i].activation_bytes
        assert pp.stages[i].peak_memory_bytes < plain.stages[i].peak_memory_bytes
        for other in (tp, pp):  # the same work, the same counted FLOPs a step
            assert other.stages[i].flops_counted_per_step == plain.stages[i].flops_counted_per_step


def test_the_vectorised_core_takes_layouts_as_arrays():
    s = shape(layers=[4, 4, 4, 8], n_trainable=[4, 2, 4, 8], micro_batch_size=2)
    layouts = dict(n_gpus=16, tensor_parallel=[1, 2, 2, 4], pipeline_parallel=[1, 2, 4, 2], sequence_parallel=True)
    gpu, profile = load_gpu("h100-sxm"), load_profile("h200")
    many = estimate_many(s, batch_size=64, gpu=gpu, profile=profile, layout=Layout.of(**layouts),
                         parallelism="zero1")
    for i in range(4):
        one_shape = StageShape.of(**{**BASE, "layers": [4, 4, 4, 8][i], "n_trainable": [4, 2, 4, 8][i],
                                     "micro_batch_size": 2})
        one = estimate_many(one_shape, batch_size=64, gpu=gpu, profile=profile, parallelism="zero1",
                            layout=Layout.of(16, layouts["tensor_parallel"][i], layouts["pipeline_parallel"][i],
                                             sequence_parallel=True))
        for field in ("step_time_s", "peak_memory_bytes", "activation_bytes", "pipeline_bubble_fraction",
                      "step_compute_s", "step_tensor_s", "step_bubble_s", "step_data_s"):
            assert float(getattr(many, field)[i]) == pytest.approx(float(getattr(one, field)), rel=1e-12), field


@pytest.mark.parametrize("trainer", ["reference", "megatron", "nemo"])
@pytest.mark.parametrize("tp,pp,parallelism", [(1, 1, "ddp"), (2, 2, "zero1"), (4, 2, "zero3"), (1, 4, "zero2")])
def test_the_step_terms_add_up_to_the_step(tp, pp, parallelism, trainer):
    """StageCosts says where a step goes: compute, exposed tensor and pipeline transfers,
    bubble, optimizer, exposed data-parallel traffic, which sum to the step time."""
    spec = parse_spec(spec_with(tensor_parallel=tp, pipeline_parallel=pp, parallelism=parallelism,
                                trainer_profile=trainer))
    costs = spec_costs(spec)
    parts = sum(getattr(costs, f"step_{name}_s") for name in ("compute", "tensor", "pipeline", "context", "bubble",
                                                               "optimizer", "data"))
    np.testing.assert_allclose(parts, costs.step_time_s, rtol=1e-12)
    assert np.all(costs.step_compute_s > 0)
    assert np.all((costs.step_tensor_s > 0) == (tp > 1)) and np.all((costs.step_bubble_s > 0) == (pp > 1))


# --- per-stage layouts: a growing model may change its split as it grows ---------------------


def staged(first: dict, second: dict, **training) -> dict:
    data = spec_with(**training)
    data["stages"][0].update(first)
    data["stages"][1].update(second)
    return data


def test_each_stage_costs_what_it_costs_alone_in_its_layout():
    """Stage 0 data parallel, stage 1 split 2 x 2: each stage's step, memory and layout are
    those of the whole schedule run in that stage's layout."""
    mixed = estimate(parse_spec(staged({}, {"tensor_parallel": 2, "pipeline_parallel": 2}, sequence_parallel=True)))
    alone = [estimate(parse_spec(spec_with(sequence_parallel=True))),
             estimate(parse_spec(spec_with(tensor_parallel=2, pipeline_parallel=2, sequence_parallel=True)))]
    for i in range(2):
        got, want = mixed.stages[i], alone[i].stages[i]
        assert (got.tensor_parallel, got.pipeline_parallel, got.data_parallel) == (
            want.tensor_parallel, want.pipeline_parallel, want.data_parallel)
        for field in ("step_time_s", "peak_memory_bytes", "activation_bytes", "pipeline_bubble_fraction",
                      "flops_counted_per_step"):
            assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-12), field
    assert [(s.tensor_parallel, s.pipeline_parallel, s.data_parallel) for s in mixed.stages] == [(1, 1, 16), (2, 2, 4)]


def test_a_stage_layout_overrides_trainings_and_the_same_everywhere_is_one_layout():
    uniform = parse_spec(staged({"tensor_parallel": 2}, {"tensor_parallel": 2}))
    assert not uniform.per_stage_layouts and uniform.stage_parallel(1) == (2, 1)
    assert estimate(uniform).model_dump()["stages"] == estimate(parse_spec(spec_with(tensor_parallel=2))).model_dump()[
        "stages"]
    partly = parse_spec(staged({}, {"pipeline_parallel": 4}, tensor_parallel=2))
    assert partly.per_stage_layouts and [partly.stage_parallel(i) for i in range(2)] == [(2, 1), (2, 4)]


@pytest.mark.parametrize("first,second,needles", [
    ({}, {"tensor_parallel": 3}, ["stages[1].tensor_parallel x pipeline_parallel = 3 x 1 = 3 does not divide "
                                  "hardware.n_gpus 16"]),
    ({}, {"tensor_parallel": 16}, ["stages[1]: tensor_parallel 16 does not divide the stage's n_heads 8",
                                   "stages[i].tensor_parallel that divides this stage's"]),
    ({"pipeline_parallel": 8}, {}, ["stages[0]: 4 layers cannot fill pipeline_parallel 8", "in this stage"]),
])
def test_a_stages_bad_layout_is_one_line_naming_the_stage(first, second, needles):
    message = refused(staged(first, second))
    for needle in needles:
        assert needle in message
    mistakes = [line for line in message.splitlines() if not line.endswith("mistakes:")]
    assert mistakes and all("stages[" in line for line in mistakes)  # each names the stage


def test_the_estimate_says_each_stages_layout():
    spec = parse_spec(staged({}, {"tensor_parallel": 2, "pipeline_parallel": 2}))
    text = render_table(estimate(spec), spec.training.batch_size * spec.model.seq_len)
    assert "(a layout a stage)" in text.splitlines()[0]
    assert "stage 0: tensor 1 x pipeline 1 x data 16" in text and "stage 1: tensor 2 x pipeline 2 x data 4" in text


# --- hybrid sharding: ZeRO inside a group, the shards replicated across groups ---------------


def test_hybrid_sharding_divides_the_states_by_the_group():
    """zero3 on 16 GPUs sharded in groups of 4 keeps what full sharding over 4 keeps: weights,
    gradients and optimizer state / 4 (here 1776 parameters: 4, 4 and 8 bytes each)."""
    hybrid = peak_memory(shape(), PROFILE, parallelism="zero3", layout=Layout.of(16, shard_group=4))
    over4 = peak_memory(shape(), PROFILE, parallelism="zero3", layout=Layout.of(4))
    over16 = peak_memory(shape(), PROFILE, parallelism="zero3", layout=Layout.of(16))
    for state, per_param in (("weights", 4), ("gradients", 4), ("optimizer", 8)):
        assert float(getattr(hybrid, state)) == float(getattr(over4, state)) == 1776 * per_param / 4
        assert float(getattr(over16, state)) == 1776 * per_param / 16
    assert float(hybrid.peak_allocated) == float(over4.peak_allocated)


def test_hybrid_groups_and_their_links():
    """Two nodes of 8, data parallel 16 sharded in groups of 8: a shard group is one node's
    GPUs (its collectives on NVLink), a replica group pairs the same GPU of the two nodes
    (across the network, one port each)."""
    layout = Layout.of(16, shard_group=8, gpus_per_node=8)
    assert (int(layout.shard), int(layout.replicas)) == (8, 2) and layout.hybrid
    assert not layout.crosses_nodes("shard") and layout.crosses_nodes("replica")
    assert int(layout.members_per_node("replica")) == 1
    full = Layout.of(16, gpus_per_node=8)
    assert (int(full.shard), int(full.replicas)) == (16, 1) and not full.hybrid and full.crosses_nodes("data")


def test_hybrid_collectives_by_hand():
    """1000 parameters, gathered in bf16 (2 bytes), reduced in fp32 (4), dp 16 in groups of 4:
    inside a group 100 GB/s and 1 us a ring step, across groups 10 GB/s and 5 us.
    zero3: two all-gathers of 2000 bytes (3/4 x 2000 / 1e11 + 3 x 1e-6 = 3.015e-6 s each), a
    reduce-scatter of 4000 (3/4 x 4000 / 1e11 + 3e-6 = 3.03e-6), then an all-reduce of the
    1000-byte shard over the 4 replicas (2 x 3/4 x 1000 / 1e10 + 6 x 5e-6 = 3.015e-5):
    3.921e-5 s, none of it hidden without a window. zero1 (no parameter sync overlap): the
    reduce-scatter, the all-reduce across, and an all-gather of the updated 4000 bytes:
    3.03e-6 + 3.015e-5 + 3.03e-6 = 3.621e-5."""
    layout = Layout.of(16, shard_group=4)
    inside, across = Link(np.asarray(1e11), np.asarray(1e-6)), Link(np.asarray(1e10), np.asarray(5e-6))
    zero3 = data_parallel_s(1000, 1000, layout, "zero3", (inside, across), 0.0, gather_bytes=2, reduce_bytes=4)
    assert float(zero3) == pytest.approx(3.921e-5, rel=1e-12)
    zero1 = data_parallel_s(1000, 1000, layout, "zero1", (inside, across), 0.0, gather_bytes=2, reduce_bytes=4)
    assert float(zero1) == pytest.approx(3.621e-5, rel=1e-12)
    hidden = data_parallel_s(1000, 1000, layout, "zero3", (inside, across), 1e-5, gather_bytes=2, reduce_bytes=4)
    assert float(hidden) == pytest.approx(3.921e-5 - 1e-5, rel=1e-12)


def test_hybrid_sharding_trades_memory_for_network_time():
    """zero3 over two nodes: sharding inside each node keeps more per GPU and moves the weight
    gathers onto NVLink, at the price of an all-reduce of the gradient shards across nodes
    on one network port a GPU. On a 100 Gb/s-a-GPU network that is the better trade (less
    data-parallel time exposed); on the preset's 400 Gb/s, whose eight ports a node the
    full-shard ring uses together, it is not. A group of all the data-parallel GPUs is full
    sharding, bit for bit."""
    def wide(inter_node_gbit=400, **training):  # weight gathers the backward cannot hide
        data = spec_with(parallelism="zero3", micro_batch_size=1, batch_size=16, **training)
        data["model"] = {"d_model": 4096, "n_heads": 32, "d_ff": 16384, "vocab_size": 32000, "seq_len": 512}
        data["hardware"]["gpu"] = {**load_gpu("h100-sxm").model_dump(),
                                   "inter_node_bandwidth_bytes_per_s": inter_node_gbit * 1e9 / 8}
        return parse_spec(data)

    for gbit, hybrid_wins in ((100, True), (400, False)):
        full, hybrid = spec_costs(wide(gbit)), spec_costs(wide(gbit, shard_group=8))
        assert np.all(hybrid.peak_allocated_bytes > full.peak_allocated_bytes)
        assert np.all(full.step_data_s > 0)
        assert np.all((hybrid.step_data_s < full.step_data_s) == hybrid_wins), gbit
    full, same = spec_costs(wide()), spec_costs(wide(shard_group=16))
    for field in ("step_time_s", "peak_memory_bytes", "step_data_s"):
        np.testing.assert_array_equal(getattr(same, field), getattr(full, field))
    result = estimate(wide(shard_group=8))
    assert [s.shard_group for s in result.stages] == [8, 8] and [s.data_parallel for s in result.stages] == [16, 16]
    assert "(hybrid: sharded over 8, 2 replicas)" in render_table(result, 16 * 512).splitlines()[0]


@pytest.mark.parametrize("training,needle", [
    ({"shard_group": 8}, "training.shard_group: DDP shards nothing"),
    ({"shard_group": 3, "parallelism": "zero3"}, "training.shard_group 3 does not divide data-parallel GPUs 16"),
    ({"shard_group": 8, "parallelism": "zero2", "tensor_parallel": 4}, "does not divide data-parallel GPUs 4"),
])
def test_a_bad_shard_group_is_one_line(training, needle):
    message = refused(spec_with(**training))
    assert needle in message and "\n" not in message


# --- context parallelism: each sequence split over cp GPUs (ring attention) --------------------


def test_context_parallel_ranks_and_groups():
    """tp 2 x cp 2 x dp 2 x pp 2 on 16 GPUs, Megatron's order (tensor, context, data, pipeline):
    a context group is 2 GPUs 2 apart; the GPUs with the same weights (gradients, ZeRO) are the
    4 of context x data, consecutive in steps of tp."""
    layout = Layout.of(16, tensor_parallel=2, pipeline_parallel=2, context_parallel=2)
    assert (int(layout.dp), int(layout.cp), int(layout.weight_replicas), int(layout.n_gpus)) == (2, 2, 4, 16)
    assert layout._size_stride("context") == (2, 2) and layout._size_stride("data") == (4, 2)
    assert layout._size_stride("pipeline") == (2, 8)
    assert int(layout.tokens(np.asarray(4096))) == 2048
    result = estimate(parse_spec(spec_with(tensor_parallel=2, pipeline_parallel=2, context_parallel=2)))
    assert all((s.tensor_parallel, s.context_parallel, s.pipeline_parallel, s.data_parallel) == (2, 2, 2, 2)
               for s in result.stages)


def test_context_parallel_halves_the_activations_and_work_not_the_weights():
    """The hand-worked model (4 tokens) on cp 2: every activation byte, the logits, and every FLOP
    and byte of work is per token, so a GPU has half; its weights and gradients are whole, and
    ZeRO-1 shards the optimizer over the 2 GPUs that hold the same weights."""
    one, two = Layout.of(1), Layout.of(2, context_parallel=2)
    s = shape()
    loss = LOSS_SAVED_BYTES_PER_MICROBATCH  # the loss's own scalar: one on every GPU
    assert (int(saved_activation_bytes(s, two)) - loss) * 2 == int(saved_activation_bytes(s, one)) - loss
    alone = peak_memory(s, PROFILE, parallelism="zero1", layout=one)
    split = peak_memory(s, PROFILE, parallelism="zero1", layout=two)
    assert float(split.weights) == float(alone.weights) and float(split.gradients) == float(alone.gradients)
    assert float(split.optimizer) * 2 == float(alone.optimizer)
    assert float(split.transient) * 2 == float(alone.transient)
    work_one, work_two = micro_batch_work(s, one), micro_batch_work(s, two)
    for field in ("matmul_flops", "attention_flops", "memory_bytes"):
        assert int(getattr(work_two, field)) * 2 == int(getattr(work_one, field)), field
    assert int(work_two.kernels) == int(work_one.kernels)  # as many kernels, each on half the tokens


def test_ring_attention_by_hand():
    """cp 2 on the hand-worked model (2 blocks, 2 key/value heads of 4, bf16): a GPU holds 2 of
    the 4 tokens; its key/value chunk is 2 x 2 x 8 x 2 = 64 bytes. Each block's forward passes
    it once (cp - 1 = 1 step) and its backward passes it and its gradient (128 bytes), each
    exposed past the attention beside it. On a 1 GB/s link of 1 us a step: forward
    64e-9 + 1e-6 = 1.064e-6 s, backward 1.128e-6 s, less the attention (this model's attention
    takes 2 tokens x its FLOPs a token at 1e15 FLOP/s: picoseconds); two blocks each way."""
    s = shape()
    gpu = GPUSpec(**{**INLINE, "interconnect_bandwidth_bytes_per_s": 1e9, "interconnect_latency_s": 1e-6})
    layout = Layout.of(2, context_parallel=2)
    [attention] = [op for op in block_ops(s) if op.kind == "attention"]
    forward_attention = 2 * int(attention.fwd_flops) / 1e15
    backward_attention = 2 * int(attention.bwd_input_flops) / 1e15
    expected = 2 * (1.064e-6 - forward_attention) + 2 * (1.128e-6 - backward_attention)
    assert float(ring_attention_s(s, 1e15, PROFILE, layout, gpu)) == pytest.approx(expected, rel=1e-12)
    assert float(ring_attention_s(s, 1e15, PROFILE, Layout.of(2), gpu)) == 0.0
    # the step carries it as its own term, and the terms still add up
    costs = estimate_many(s, batch_size=2, gpu=gpu, profile=PROFILE, layout=layout)
    assert float(costs.step_context_s) == pytest.approx(2 * expected, rel=1e-12)  # 2 micro-batches a replica
    parts = sum(getattr(costs, f"step_{n}_s") for n in ("compute", "tensor", "pipeline", "context", "bubble",
                                                          "optimizer", "data"))
    np.testing.assert_allclose(parts, costs.step_time_s, rtol=1e-12)


@pytest.mark.parametrize("training,needle", [
    ({"context_parallel": 3}, "training.tensor_parallel x pipeline_parallel x training.context_parallel = 1 x 1 x 3"),
    ({"context_parallel": 16, "seq_len": 48}, "model.seq_len 48 does not divide"),
    ({"context_parallel": 4, "micro_batch_size": 32}, "micro_batch_size x data-parallel replicas (n_gpus / "
                                                      "(tensor_parallel x pipeline_parallel x context_parallel))"),
])
def test_a_bad_context_parallel_size_is_one_line(training, needle):
    data = spec_with(**{k: v for k, v in training.items() if k != "seq_len"})
    data["model"]["seq_len"] = training.get("seq_len", data["model"]["seq_len"])
    message = refused(data)
    assert any(needle in line for line in message.splitlines())  # one line a mistake


# --- defaults: bit for bit what costsim computed before layouts -------------------------------


@pytest.mark.parametrize("key", sorted(BEFORE))
def test_defaults_are_bit_identical_to_before(key):
    name, parallelism, trainer = key.split("|")
    spec = load_spec(EXAMPLES / name)
    # Megatron's cuDNN attention (attention_kernel_speedup) came after, on purpose: held at 1 here
    spec = spec.model_copy(update={"training": spec.training.model_copy(
        update={"parallelism": parallelism, "trainer_profile": trainer,
                "trainer_overrides": {"attention_kernel_speedup": 1.0}})})
    result = estimate(spec).model_dump()
    want = BEFORE[key]
    # The reserved peak (peak_memory_bytes) has changed since on purpose: the allocator's reserve
    # is now on the bytes that come and go, not on the persistent state (memory.reserved_bytes).
    # Everything it is computed from, peak_allocated_bytes included, is still as it was.
    changed = {"peak_memory_bytes"}
    for stage, expected in zip(result["stages"], want["stages"], strict=True):
        assert stage["tensor_parallel"] == stage["pipeline_parallel"] == 1
        assert {k: stage[k] for k in expected if k not in changed} == {k: v for k, v in expected.items()
                                                                       if k not in changed}
        assert stage["peak_memory_bytes"] > stage["peak_allocated_bytes"]
    assert ({k: result["total"][k] for k in want["total"] if k not in changed}
            == {k: v for k, v in want["total"].items() if k not in changed})


# --- what a trainer overlaps (costsim/trainers.py: tp_comm_overlap, overlap_param_sync, ...) ---------

# GEMMs at 1 GFLOP/s (the generic test PROFILE: efficiency 1, no half-rate size), NVLink-only nodes
SLOW = dict(INLINE, peak_bf16_flops_per_s=1e9, peak_tf32_flops_per_s=1e9)


def test_block_gemms_by_hand():
    """One sequence of 4 tokens split by tp=2: per GPU qkv 4 x 2x8x24 / 2 = 768 FLOPs, the attention
    output 4 x 2x8x8 / 2 = 256, FC1 and FC2 4 x 2x8x32 / 2 = 1024 each; at 1 GFLOP/s, nanoseconds."""
    gemms = block_gemm_s(shape(), 1e9, PROFILE, Layout.of(2, 2, sequence_parallel=True))
    assert [round(g * 1e9, 9) for g in gemms] == [768, 256, 1024, 1024]


@pytest.mark.parametrize("bandwidth,plain_us,overlapped_us", [
    # 32 us a half all-reduce (32 of the 64-byte activation's bytes at 1 MB/s): far longer than any GEMM.
    # Plain: 10 all-reduces of 64 us. Overlapped: 4 block passes (2 forward, 2 backward) x (4 x 32 us less
    # the GEMMs' 768 + 256 + 1024 + 1024 ns) + the embedding's and the head's all-reduces, 2 x 64 us.
    (1e6, 640, 4 * (128 - 3.072) + 128),
    # 512 ns a half: only the 256 ns attention-output GEMM is shorter, 256 ns exposed a pass
    (6.25e7, 10 * 1.024, 4 * 0.256 + 2 * 1.024),
    # 250 ns a half: every GEMM hides its collective; the embedding's and head's stay, 2 x 500 ns
    (1.28e8, 10 * 0.5, 2 * 0.5),
])
def test_tensor_parallel_overlap_exposes_what_the_gemm_cannot_hide(bandwidth, plain_us, overlapped_us):
    gpu = GPUSpec(**{**SLOW, "interconnect_bandwidth_bytes_per_s": bandwidth})
    layout = Layout.of(2, 2, sequence_parallel=True)
    s = shape()
    all_reduces = tensor_parallel_all_reduces(2, 2, False, True, True)
    activation = 4 * 8 * 2  # tokens x d x c
    gemms = block_gemm_s(s, 1e9, PROFILE, layout)
    plain = tensor_parallel_s(all_reduces, activation, layout, gpu)
    overlapped = tensor_parallel_overlapped_s(4, gemms, all_reduces, activation, layout, gpu)
    assert float(plain) * 1e6 == pytest.approx(plain_us, rel=1e-12)
    assert float(overlapped) * 1e6 == pytest.approx(overlapped_us, rel=1e-12)
    # without sequence parallelism the userbuffer overlap does not apply: all exposed, as before
    no_sp = Layout.of(2, 2)
    assert float(tensor_parallel_overlapped_s(4, gemms, all_reduces, activation, no_sp, gpu)) == pytest.approx(
        float(tensor_parallel_s(all_reduces, activation, no_sp, gpu)), rel=1e-12)

    # end to end: the step differs by m micro-batches x the exposed difference (tp 2 on 2 GPUs: no DP)
    overlap = TrainerProfile(name="overlap", tp_comm_overlap=True)
    steps = [float(estimate_many(s, batch_size=4, gpu=gpu, profile=PROFILE, layout=layout, trainer=t).step_time_s)
             for t in (load_trainer("reference"), overlap)]
    assert (steps[0] - steps[1]) * 1e6 == pytest.approx(4 * (plain_us - overlapped_us), rel=1e-9)


def test_a_recomputed_block_pass_overlaps_too():
    """Full recompute adds a forward pass a block: 6 passes, and the same 2 outside collectives."""
    gpu = GPUSpec(**{**SLOW, "interconnect_bandwidth_bytes_per_s": 6.25e7})
    layout = Layout.of(2, 2, sequence_parallel=True)
    all_reduces = tensor_parallel_all_reduces(2, 2, True, True, True)
    assert all_reduces == 14
    gemms = block_gemm_s(shape(recompute=True), 1e9, PROFILE, layout)
    assert float(tensor_parallel_overlapped_s(6, gemms, all_reduces, 64, layout, gpu)) * 1e6 == pytest.approx(
        6 * 0.256 + 2 * 1.024, rel=1e-12)


VIA = Link(np.asarray(100.0), np.asarray(0.0))  # 100 bytes/s, no latency


def test_bf16_gradient_sync_halves_the_data_parallel_bytes():
    s = shape()
    fp32, bf16 = TrainerProfile(name="a"), TrainerProfile(name="b", grad_sync_dtype="compute")
    assert int(grad_sync_bytes(fp32, s)) == 4 and int(grad_sync_bytes(bf16, s)) == 2
    # bf16 gradients reduce in bf16 unless told otherwise; an fp32 reduction of them is 4 bytes again
    assert int(grad_sync_bytes(TrainerProfile(name="c", gradients="compute"), s)) == 2
    assert int(grad_sync_bytes(TrainerProfile(name="d", gradients="compute", grad_sync_dtype="fp32"), s)) == 4
    layout = Layout.of(4)  # dp 4: an all-reduce sends 2 x 3/4 of the buffer
    for parallelism in ("ddp", "zero1", "zero3"):
        times = [data_parallel_s(1000, 1000, layout, parallelism, VIA, 0.0, reduce_bytes=b) for b in (4, 2)]
        if parallelism == "zero3":  # two fp32 weight gathers (2 x 3/4 x 4000 B) and the reduce-scatter
            assert (float(times[0]), float(times[1])) == (60 + 30, 60 + 15)
        else:  # 2 x 3/4 x 1000 x 4 bytes = 6000 at 100 B/s, and half of it
            assert (float(times[0]), float(times[1])) == (60, 30)


def test_the_parameter_all_gather_overlaps_the_first_forward():
    """zero1 on 4 replicas, 1000 trainable parameters: fp32 gradients reduce-scattered (3/4 x 4000 B:
    30 s at 100 B/s) behind the last backward, bf16 weights all-gathered (3/4 x 2000 B: 15 s) behind the
    first forward; each window hides its own collective only."""
    layout = Layout.of(4)

    def exposed(backward, forward, **kw):
        return float(data_parallel_s(1000, 1000, layout, "zero1", VIA, backward, forward, reduce_bytes=4, **kw))

    assert exposed(20.0, 10.0, param_bytes=2) == (30 - 20) + (15 - 10)
    assert exposed(20.0, 20.0, param_bytes=2) == 10 + 0
    assert exposed(40.0, 20.0, param_bytes=2) == 0
    assert exposed(20.0, 10.0, param_bytes=2, overlap_grad_sync=False) == 30 + 5
    # without overlap_param_sync: the all-reduce of the gradients (60 s) behind the last backward, as before
    assert exposed(20.0, 10.0) == 60 - 20
    assert exposed(20.0, 10.0, overlap_grad_sync=False) == 60
    # a ring step's latency counts once a step of each collective: 3 steps each over 4 GPUs
    slow = Link(np.asarray(100.0), np.asarray(1.0))
    assert float(data_parallel_s(1000, 1000, layout, "zero1", slow, 20.0, 10.0, reduce_bytes=4,
                                 param_bytes=2)) == (33 - 20) + (18 - 10)
    # data parallelism without a sharded optimizer has no parameter all-gather to overlap
    assert float(data_parallel_s(1000, 1000, layout, "ddp", VIA, 20.0, 10.0, reduce_bytes=4, param_bytes=2)) == 40


def test_pipeline_sends_overlap_the_next_chunk():
    """100-byte activations at 1 MB/s: 100 us a send, 2 v sends a micro-batch. With overlap_p2p_comm an
    activation's send hides behind the next chunk's backward (backward / v) and a gradient's behind the
    next chunk's forward (forward / v); plain 1F1B (v = 1) waits on every send."""
    gpu = GPUSpec(**{**INLINE, "interconnect_bandwidth_bytes_per_s": 1e6})
    interleaved = Layout.of(4, pipeline_parallel=2, virtual_stages=2)
    assert float(pipeline_send_s(100, interleaved, gpu)) * 1e6 == pytest.approx(400)
    assert float(pipeline_send_s(100, interleaved, gpu, 300e-6, 600e-6)) == 0  # 150 and 300 us chunks
    # 50 us forward chunks leave 50 us of each of the 2 gradient sends; 100 us backward chunks hide the rest
    assert float(pipeline_send_s(100, interleaved, gpu, 100e-6, 200e-6)) * 1e6 == pytest.approx(2 * 50)
    plain = Layout.of(4, pipeline_parallel=2)
    assert float(pipeline_send_s(100, plain, gpu, 300e-6, 600e-6)) * 1e6 == pytest.approx(200)


def test_the_nemo_profile_hides_what_the_megatron_profile_exposes():
    """A TP 4 x PP 2 (interleaved) x DP 2 layout across nodes: the same memory switches but for bf16
    gradients; NeMo's overlaps only take time away, never add it."""
    s = StageShape.of(**{**BASE, "layers": 8, "n_trainable": 8, "d_model": 1024, "n_heads": 16, "n_kv_heads": 16,
                         "d_ff": 4096, "vocab_size": 32000, "seq_len": 2048, "micro_batch_size": 1},
                      **shape_fields(load_trainer("megatron"), 2))
    layout = Layout.of(16, tensor_parallel=4, pipeline_parallel=2, sequence_parallel=True, virtual_stages=2,
                       gpus_per_node=8)
    gpu, profile = load_gpu("h100-sxm"), load_profile("generic")
    costs = {name: estimate_many(s, batch_size=16, gpu=gpu, profile=profile, layout=layout, parallelism="zero1",
                                 trainer=load_trainer(name)) for name in ("megatron", "nemo")}
    assert float(costs["nemo"].step_time_s) < float(costs["megatron"].step_time_s)
    assert float(costs["nemo"].peak_memory_bytes) < float(costs["megatron"].peak_memory_bytes)  # bf16 gradients
