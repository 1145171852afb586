"""Trainer memory profiles: each switch changes memory (and FLOPs) by its formula.

The hand-worked example: 2 blocks, d=8, 2 heads, d_ff=32, vocabulary 16, 4 tokens (one
sequence of 4), everything trains, tied embeddings, learned positions, bf16-mixed (c=2).
Its parameters, by hand: a block has qkv 8x24=192, proj 64, fc 256 and fc_out 256 matmul
weights plus two LayerNorms of 16, so 800; the model 2x800 + final norm 16 + embedding
16x8=128 + positions 4x8=32 = 1776, of which 1776 - 1600 = 176 outside the blocks.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from costsim import SpecError, estimate, parse_spec
from costsim.engine import estimate_many, stage_shape
from costsim.flops import micro_batch_flops, parameter_counts
from costsim.hardware import load_gpu
from costsim.memory import peak_memory, saved_activation_bytes
from costsim.ops import StageShape
from costsim.profile import CostProfile
from costsim.published import SOURCES, load_source, predict, published_runs
from costsim.timing import micro_batch_work
from costsim.trainers import TrainerProfile, load_trainer, shape_fields, trainer_names

BASE = dict(layers=2, d_model=8, n_heads=2, n_kv_heads=2, d_ff=32, vocab_size=16, seq_len=4, micro_batch_size=1,
            n_trainable=2, train_embeddings=True, tied=True, swiglu=False, recompute=False, compute_bytes=2)
TOKENS, P, P_BLOCK, P_OUT = 4, 1776, 800, 176
# no overhead, no reserve; the fp32 loss's calibrated transient: 7 bytes a logit
PROFILE = CostProfile(name="test", device="", matmul_efficiency=1, matmul_half_flops=0, attention_efficiency=1,
                      bandwidth_efficiency=1, launch_overhead_s=0, logits_transient_bytes=7.0, memory_overhead_bytes=0,
                      reserve_fraction=0)
REFERENCE = load_trainer("reference")


def shape(trainer: TrainerProfile = REFERENCE, **changes) -> StageShape:
    values = {**BASE, **changes}
    return StageShape.of(**values, **shape_fields(trainer, values["compute_bytes"]))


def memory(trainer: TrainerProfile = REFERENCE, parallelism: str = "ddp", n_gpus: int = 1, **changes):
    return peak_memory(shape(trainer, **changes), PROFILE, n_gpus, parallelism, trainer)


def profile(**switches) -> TrainerProfile:
    return TrainerProfile(name="test", **switches)


def test_the_example_has_the_hand_counted_parameters():
    params = parameter_counts(shape())
    assert int(params.total) == int(params.trainable) == P


def test_reference_profile_is_what_costsim_always_computed():
    """The reference's switches are StageShape's defaults and peak_memory's default trainer,
    so a caller that names no trainer gets exactly the reference (the parity and calibration
    tests then hold it to the real counters)."""
    plain = StageShape.of(**BASE)
    with_fields = shape()
    for name in ("residual_bytes", "loss_kind", "recompute_attention"):
        assert np.array_equal(getattr(plain, name), getattr(with_fields, name)), name
    for parallelism in ("ddp", "zero1", "zero2", "zero3"):
        default = peak_memory(plain, PROFILE, 4, parallelism)
        named = peak_memory(with_fields, PROFILE, 4, parallelism, REFERENCE)
        assert default == named
    assert REFERENCE.model_dump(exclude={"description", "source"}) == TrainerProfile(name="reference").model_dump(
        exclude={"description", "source"})


def test_compute_dtype_weights_with_an_fp32_master_copy():
    ref, mine = memory(), memory(profile(weights="compute", master_weights=True))
    assert ref.weights == 4 * P and mine.weights == 2 * P
    assert ref.optimizer == 8 * P and mine.optimizer == (8 + 4) * P
    sharded = memory(profile(weights="compute", master_weights=True), "zero1", 4)
    assert sharded.weights == 2 * P and sharded.optimizer == 12 * P / 4  # Megatron's 6 + 12/d bytes a parameter


def test_compute_dtype_gradients():
    assert memory().gradients == 4 * P
    assert memory(profile(gradients="compute")).gradients == 2 * P
    assert memory(profile(gradients="compute"), "zero2", 4).gradients == 2 * P / 4


def test_optimizer_offload():
    mine = memory(profile(offload_optimizer=True))
    assert mine.optimizer == 0 and mine.weights == 4 * P and mine.gradients == 4 * P


def test_cast_weights_keeps_a_compute_copy_and_a_compute_dtype_residual_stream():
    ref, mine = memory(), memory(profile(cast_weights=True))
    assert ref.working_weights == 0 and mine.working_weights == 2 * P
    # every LayerNorm keeps a 2-byte input instead of 4: two a block (both blocks run backward) and the
    # final one, (2*2 + 1) * (4 - 2) * d = 80 bytes a token
    assert ref.activations - mine.activations == 80 * TOKENS
    # in fp32 the weights are already in the compute dtype: no copy, nothing changes
    fp32_ref, fp32_mine = memory(compute_bytes=4), memory(profile(cast_weights=True), compute_bytes=4)
    assert fp32_mine.working_weights == 0 and fp32_mine.activations == fp32_ref.activations


def test_a_checkpointed_block_keeps_its_input_in_the_residual_dtype():
    ref, mine = memory(recompute=True), memory(profile(cast_weights=True), recompute=True)
    # two checkpointed inputs and the final norm's input, each (4 - 2) * d = 16 bytes a token less
    assert ref.activations - mine.activations == 3 * 16 * TOKENS


def test_zero3_gathered_blocks_and_their_gradients():
    fsdp = profile(cast_weights=True, gathered_blocks=2)
    ref, mine = memory(parallelism="zero3", n_gpus=4), memory(fsdp, "zero3", 4)
    assert ref.weights == mine.weights == 4 * P / 4
    assert ref.working_weights == 0
    # two blocks and the root unit gathered in bf16, and the root's bf16 gradient
    assert mine.working_weights == 2 * (2 * P_BLOCK + P_OUT) + 2 * P_OUT == 3904
    # one block's bf16 gradient and its fp32 copy for the reduce-scatter outweigh the logits' 7 * 16 * 4 = 448
    assert ref.transient == 7 * 16 * TOKENS
    assert mine.transient == (2 + 4) * P_BLOCK
    one = memory(profile(cast_weights=True, gathered_blocks=1), "zero3", 4)
    assert one.working_weights == 2 * (P_BLOCK + P_OUT) + 2 * P_OUT
    more = memory(profile(cast_weights=True, gathered_blocks=8), "zero3", 4)
    assert more.working_weights == mine.working_weights  # no more blocks than the model has
    # fp32 weights gathered as they are (no cast): 4 bytes a gathered parameter
    plain = memory(profile(gathered_blocks=2), "zero3", 4)
    assert plain.working_weights == 4 * (2 * P_BLOCK + P_OUT) + 2 * P_OUT


def test_losses():
    ref = memory()
    assert ref.transient == 7 * 16 * TOKENS  # fp32: the calibration's bytes a logit
    fused = memory(profile(loss="fused"))
    # fp32 keeps 4V + 8 a token (log-softmax, target); fused 2V + 4 + 8 (bf16 logits, log-sum-exp, target)
    assert ref.activations - fused.activations == ((4 * 16 + 8) - (2 * 16 + 4 + 8)) * TOKENS
    assert fused.transient == 2 * 16 * TOKENS  # the logits' bf16 gradient
    inplace = memory(profile(loss="fp32-inplace"))
    assert inplace.activations == ref.activations and inplace.transient == 2 * 16 * TOKENS


def test_selective_recompute_of_the_core_attention():
    mine = profile(recompute_attention=True)
    # the log-sum-exp, 4 bytes a head, of both blocks
    assert saved_activation_bytes(shape()) - saved_activation_bytes(shape(mine)) == 4 * 2 * 2 * TOKENS
    ref_flops, my_flops = micro_batch_flops(shape()), micro_batch_flops(shape(mine))
    # attention's forward once more in each block's backward: 4 * T * d a token
    assert my_flops.counted - ref_flops.counted == 4 * 4 * 8 * 2 * TOKENS
    assert my_flops.model == ref_flops.model
    assert micro_batch_work(shape(mine)).attention_flops - micro_batch_work(shape()).attention_flops == 1024
    # under full recompute the attention is re-run anyway: nothing changes
    full_ref, full_mine = shape(recompute=True), shape(mine, recompute=True)
    assert micro_batch_flops(full_mine).counted == micro_batch_flops(full_ref).counted
    assert saved_activation_bytes(full_mine) == saved_activation_bytes(full_ref)


def test_shipped_profiles_load_and_describe_themselves():
    assert {"reference", "fsdp", "megatron"} <= set(trainer_names())
    for name in trainer_names():
        trainer = load_trainer(name)
        assert trainer.name == name and trainer.description and trainer.source


@pytest.mark.parametrize("switches,needle", [
    ({"master_weights": True}, "master_weights needs weights: compute"),
    ({"weights": "compute", "cast_weights": True}, "cast_weights needs weights: fp32"),
])
def test_inconsistent_switches_are_refused(switches, needle):
    with pytest.raises(ValueError, match=needle):
        profile(**switches)


SPEC = {
    "model": {"d_model": 64, "n_heads": 4, "vocab_size": 100, "seq_len": 32},
    "training": {"micro_batch_size": 2, "batch_size": 8, "parallelism": "zero3"},
    "hardware": {"gpu": "h100-sxm", "n_gpus": 4},
    "stages": [{"layers": 2, "tokens": 1e6}],
}


def spec_with(**training):
    data = copy.deepcopy(SPEC)
    data["training"].update(training)
    return data


def test_an_unknown_trainer_profile_is_one_line_naming_the_choices():
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(trainer_profile="fdsp"))
    message = str(caught.value)
    assert "\n" not in message
    assert "training.trainer_profile" in message and "'fdsp'" in message
    assert ", ".join(trainer_names()) in message


def test_a_trainer_profile_file(tmp_path):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"name": "mine", "cast_weights": True, "gathered_blocks": 2, "loss": "fused"}))
    result = estimate(parse_spec(spec_with(trainer_profile=str(good))))
    assert result.trainer_profile == str(good)
    assert result.total.peak_memory_bytes != estimate(parse_spec(SPEC)).total.peak_memory_bytes
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "gathered_block": 2}))
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(trainer_profile=str(bad)))
    assert "\n" not in str(caught.value) and "gathered_block" in str(caught.value)


def test_the_spec_passes_its_trainer_to_every_cost():
    ref, fsdp = estimate(parse_spec(SPEC)), estimate(parse_spec(spec_with(trainer_profile="fsdp")))
    assert ref.trainer_profile == "reference" and fsdp.trainer_profile == "fsdp"
    assert fsdp.stages[0].activation_bytes < ref.stages[0].activation_bytes  # bf16 residual stream, fused loss
    assert fsdp.stages[0].flops_counted_per_step == ref.stages[0].flops_counted_per_step
    assert fsdp.stages[0].step_time_s != ref.stages[0].step_time_s  # bf16 all-gathers, less norm traffic


def test_gpus_per_node():
    assert parse_spec(SPEC).hardware.gpus_per_node == 8
    data = copy.deepcopy(SPEC)
    data["hardware"]["gpus_per_node"] = 4
    assert parse_spec(data).hardware.gpus_per_node == 4
    data["hardware"]["gpus_per_node"] = 0
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert "hardware.gpus_per_node" in str(caught.value) and "\n" not in str(caught.value)


# --- the published runs (benchmarks/published_scale.py) -------------------------------


def test_every_published_run_builds_a_valid_spec():
    runs = published_runs()
    for name in SOURCES:
        source = load_source(name)
        mine = [r for r in runs if r.source == name]
        assert len(mine) == len(source["runs"]) and source["source"]["repo"] and source["source"]["path"]
        for run in mine:
            row = run.run
            assert row["micro_batch_size"] * row["grad_accum"] * row["n_gpus"] == row["global_batch_size"]
            for spec in run.specs.values():
                assert spec.training.trainer_profile == source["trainer_profile"]
                assert spec.training.parallelism == source["parallelism"]
                assert spec.hardware.n_gpus == row["n_gpus"] and spec.model.seq_len == row["seq_len"]
                assert spec.hardware.resolved_gpu().memory_bytes == source["gpu"]["memory_gib"] * 2**30
                if "num_params" in row:  # the published count, to the parameter
                    assert int(parameter_counts(stage_shape(spec)).total[0]) == row["num_params"], run.label
                predicted = predict(spec)
                assert math.isfinite(predicted.peak_reserved_gib) and predicted.tokens_per_s_per_gpu > 0


def test_llama_published_run_is_the_presets_model():
    [run, *_] = [r for r in published_runs(("torchtitan_llama3_h100",))]
    assert set(run.specs) == {"none", "full"}
    assert int(parameter_counts(stage_shape(run.specs["full"])).total[0]) == 8_030_261_248  # Llama 3 8B


def test_bf16_weights_on_the_real_counter():
    """A reference GPT cast to bf16 (what FSDP's mixed precision runs) against saved_tensors_hooks on
    the CPU: exact, but for the LayerNorm statistics, which the CPU kernel keeps in bf16 (2 bytes
    each) where the CUDA kernel and costsim keep fp32 (4): 4 bytes a norm a token."""
    torch = pytest.importorskip("torch")
    from validate.counting import count_micro_batch
    from validate.model import GPT, GPTShape

    trainer = load_trainer("torchtitan")  # cast weights, fp32 loss: what the reference GPT's loss does
    for recompute in (False, True):
        for mlp in ("gelu", "swiglu"):
            torch.manual_seed(0)
            gpt = GPTShape(vocab_size=64, seq_len=16, n_layers=2, d_model=16, n_heads=2, n_kv_heads=2, d_ff=48,
                           mlp=mlp, tied_embeddings=True, bias=False)
            model = GPT(gpt).to(torch.bfloat16)
            model.set_trainable(2, True)
            model.checkpoint_blocks(recompute)
            idx, targets = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
            measured = count_micro_batch(model, idx, targets).saved_activation_bytes
            s = StageShape.of(layers=2, d_model=16, n_heads=2, n_kv_heads=2, d_ff=48, vocab_size=64, seq_len=16,
                              micro_batch_size=2, n_trainable=2, train_embeddings=True, tied=True,
                              swiglu=mlp == "swiglu", recompute=recompute, compute_bytes=2, **shape_fields(trainer, 2))
            norms = 1 if recompute else 2 * 2 + 1  # the final norm; with every block's two when not checkpointed
            assert measured == int(saved_activation_bytes(s)) - 4 * norms * 32, (recompute, mlp)


# --- the nemo profile and the switches it adds ------------------------------------------------

OVERLAP_DEFAULTS = dict(optimizer_state="fp32", tp_comm_overlap=False, overlap_grad_sync=True,
                        overlap_param_sync=False, grad_sync_dtype="gradients", overlap_p2p_comm=False)


def test_the_nemo_profile_loads_with_the_recipes_switches():
    nemo = load_trainer("nemo")
    assert "nemo" in trainer_names()
    assert (nemo.tp_comm_overlap, nemo.overlap_grad_sync, nemo.overlap_param_sync, nemo.overlap_p2p_comm) == (
        True, True, True, True)
    assert (nemo.grad_sync_dtype, nemo.gradients, nemo.optimizer_state) == ("compute", "compute", "fp32")
    # megatron's memory model otherwise: bf16 weights, fp32 main weights, the in-place fp32 loss
    megatron = load_trainer("megatron")
    for switch in ("weights", "master_weights", "loss", "cast_weights", "recompute_attention"):
        assert getattr(nemo, switch) == getattr(megatron, switch), switch
    for key in ("ub_tp_comm_overlap", "overlap_grad_sync", "overlap_param_sync", "grad_sync_dtype",
                "overlap_p2p_comm", "dgxc-benchmarking"):
        assert key in nemo.source, key


def test_every_other_shipped_profile_keeps_the_new_switches_at_their_defaults():
    """The defaults are what costsim computed before the switches existed (the bit-identical tests
    hold the old numbers of the reference; these profiles' numbers follow from the same formulas)."""
    for name in trainer_names():
        if name != "nemo":
            trainer = load_trainer(name)
            assert {k: getattr(trainer, k) for k in OVERLAP_DEFAULTS} == OVERLAP_DEFAULTS, name


@pytest.mark.parametrize("switches,needle", [
    ({"grad_sync_dtype": "fp16"}, "grad_sync_dtype"),
    ({"optimizer_state": "fp8"}, "optimizer_state"),
    ({"tp_comm_overlap": "sometimes"}, "tp_comm_overlap"),
    ({"overlap_p2p": True}, "overlap_p2p"),
])
def test_bad_overlap_switches_are_refused(switches, needle, tmp_path):
    with pytest.raises(ValueError, match=needle):
        profile(**switches)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", **switches}))
    with pytest.raises(SpecError) as caught:
        load_trainer(str(bad))
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_a_bf16_optimizer_state():
    """Apex DistributedFusedAdam with dtype bf16 (NeMo's Nemotron-4 340B recipe): two bf16 moments,
    4 bytes a parameter; with a master copy kept in that dtype, 6. The fp32 defaults stay 8 and 12."""
    bf16 = profile(weights="compute", optimizer_state="bf16")
    assert float(memory(bf16).optimizer) == 4 * P
    assert float(memory(profile(weights="compute", master_weights=True, optimizer_state="bf16")).optimizer) == 6 * P
    assert float(memory(profile(weights="compute")).optimizer) == 8 * P
    assert float(memory(profile(weights="compute", master_weights=True)).optimizer) == 12 * P
    assert float(memory(bf16, "zero1", 4).optimizer) == 4 * P / 4  # sharded as any optimizer state


def test_the_overlap_switches_change_time_not_memory():
    base = profile(weights="compute", master_weights=True)
    overlapped = profile(weights="compute", master_weights=True, tp_comm_overlap=True, overlap_param_sync=True,
                         overlap_p2p_comm=True, grad_sync_dtype="compute")
    assert float(memory(base).peak_allocated) == float(memory(overlapped).peak_allocated)
    assert shape_fields(base, 2) == shape_fields(overlapped, 2)


def test_the_attention_kernel_speedup_divides_the_attention_time_and_nothing_else():
    """A trainer whose attention kernel is k times the profile's: the micro-batch time loses
    exactly (1 - 1/k) of its attention term (counted attention FLOPs over the profile's rate;
    one micro-batch a step); matmuls, memory-bound ops, launches and memory stay as they were."""
    gpu = load_gpu("h100-sxm")
    fast = profile(attention_kernel_speedup=1.6)
    costs = {t: estimate_many(shape(), batch_size=1, gpu=gpu, profile=PROFILE, trainer=t) for t in (REFERENCE, fast)}
    attention_s = float(micro_batch_work(shape()).attention_flops) / gpu.peak_flops_per_s("bf16-mixed")
    saved = float(costs[REFERENCE].step_compute_s - costs[fast].step_compute_s)
    assert attention_s > 0 and saved == pytest.approx(attention_s * (1 - 1 / 1.6), rel=1e-9)
    assert float(costs[fast].peak_memory_bytes) == float(costs[REFERENCE].peak_memory_bytes)
    assert REFERENCE.kernel_rates(PROFILE) is PROFILE  # the default leaves the profile as it is


def test_transformer_engine_trainers_run_cudnn_attention_and_the_others_sdpa():
    for name in trainer_names():
        speedup = load_trainer(name).attention_kernel_speedup
        assert speedup == (1.6 if name in ("megatron", "nemo") else 1.0), name
        if speedup != 1:
            assert "2407.08608" in load_trainer(name).source


# --- training.trainer_overrides: a recipe that differs from its profile in a switch or two ------


def test_overrides_set_a_profiles_switches():
    """NeMo's Nemotron-4 340B recipe: the nemo profile with a bf16 Adam state and no master copy.
    Optimizer bytes per GPU go from 12 to 4 a parameter (sharded over data parallel as before)."""
    nemo = spec_with(trainer_profile="nemo", parallelism="zero1")
    overridden = spec_with(trainer_profile="nemo", parallelism="zero1",
                           trainer_overrides={"optimizer_state": "bf16", "master_weights": False})
    trainer = parse_spec(overridden).training.trainer()
    assert trainer.optimizer_state == "bf16" and not trainer.master_weights and trainer.tp_comm_overlap  # rest kept
    spec = parse_spec(overridden)
    shape = stage_shape(spec)
    params = float(parameter_counts(shape).trainable[0])
    before = peak_memory(stage_shape(parse_spec(nemo)), PROFILE, 4, "zero1", load_trainer("nemo"))
    after = peak_memory(shape, PROFILE, 4, "zero1", trainer)
    assert float(before.optimizer[0]) == 12 * params / 4 and float(after.optimizer[0]) == 4 * params / 4
    assert float(after.weights[0]) == float(before.weights[0])
    assert estimate(spec).total.peak_memory_bytes < estimate(parse_spec(nemo)).total.peak_memory_bytes
    assert parse_spec(spec_with(trainer_profile="nemo")).training.trainer() is load_trainer("nemo")  # none: as named


def test_a_spec_sets_the_attention_kernel_by_a_number():
    """A Megatron run on a GPU where cuDNN attention is no faster than FlashAttention-2: the
    override is a number, and the step takes longer than under the profile's H100 ratio."""
    cudnn = parse_spec(spec_with(trainer_profile="megatron", parallelism="zero1"))
    flash = parse_spec(spec_with(trainer_profile="megatron", parallelism="zero1",
                                 trainer_overrides={"attention_kernel_speedup": 1.0}))
    assert flash.training.trainer().attention_kernel_speedup == 1.0
    assert estimate(flash).total.time_s > estimate(cudnn).total.time_s


@pytest.mark.parametrize("overrides,needles", [
    ({"optimiser_state": "bf16"}, ["unknown switch 'optimiser_state'", "optimizer_state"]),
    ({"master_weights": True}, ["master_weights needs weights: compute"]),  # fsdp keeps fp32 weights
    ({"loss": "fast"}, ["loss"]),
    ({"name": "mine"}, ["unknown switch 'name'"]),
    ({"attention_kernel_speedup": -2}, ["attention_kernel_speedup", "greater than 0"]),
    ({"attention_kernel_speedup": "fast"}, ["attention_kernel_speedup", "valid number"]),
])
def test_bad_overrides_are_one_line(overrides, needles):
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(trainer_profile="fsdp", trainer_overrides=overrides))
    message = str(caught.value)
    assert "\n" not in message and "trainer_overrides" in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("parallelism,n_gpus", [("ddp", 1), ("zero3", 4)])
def test_the_allocator_reserve_is_a_share_of_the_transients_and_a_constant(parallelism, n_gpus):
    """Weights, gradients, optimizer state and activations reuse their cached blocks: the
    reserve (here 20% and 1000 bytes) is on the step's one-off transients only."""
    reserving = PROFILE.model_copy(update={"reserve_fraction": 0.2, "reserve_bytes": 1000.0})
    fsdp = load_trainer("fsdp")
    m = peak_memory(shape(fsdp), reserving, n_gpus, parallelism, fsdp)
    assert float(m.transient) > 0
    np.testing.assert_allclose(m.peak_reserved - m.peak_allocated, 0.2 * m.transient + 1000.0, rtol=1e-12)
