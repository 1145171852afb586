"""Published runs with tensor and pipeline parallelism (costsim/data/measurements/nemo_dgxc_h100.json):
every row builds the spec its layout describes, and costsim's throughput stays as close to
the measured one as when the comparison was first made (benchmarks/published_scale.py)."""

from __future__ import annotations

import math
import statistics

import pytest

from costsim.engine import spec_layout, stage_shape
from costsim.flops import parameter_counts
from costsim.published import LAYOUT_SOURCES, load_source, predict, published_runs

SOURCE = "nemo_dgxc_h100"
RUNS = published_runs((SOURCE,))
NOMINAL_PARAMS = {"gpt3-175b": 175e9, "nemotron4-15b": 15e9, "nemotron4-340b": 340e9, "llama3.1-8b": 8e9,
                  "llama3.1-70b": 70e9, "llama3.1-405b": 405e9}

# Measured when the source was added (the megatron profile, the shipped generic H100 calibration):
# median |tokens/s per GPU error| 18.1% over the 18 rows without context parallelism, costsim
# under-predicting every row: it counted the tensor-parallel, pipeline and data-parallel transfers
# the recipes overlap as exposed. Under the nemo profile (userbuffer TP overlap, bf16 gradient
# reduce-scatter behind the last backward and parameter all-gather behind the first forward,
# pipeline sends behind the next chunk; nothing fitted) it was measured at 6.1% (worst -12.6%,
# Nemotron-4 15B on 16 GPUs, whose compute roofline alone is 11.7% slower than its measured step).
# With the 17 context-parallel Llama 3.1 rows costed: 11.4% over all 35 (Llama 3.1 8B at 8k
# context 28% slow: its compute alone is 39% slower than the measured step, the generic
# profile's attention rate). With Transformer Engine's cuDNN attention at 1.6x FlashAttention-2
# (the profile's attention_kernel_speedup, from the FlashAttention-3 paper's H100 kernel figures,
# not from these rows), and the Llama 3.1 405B costed with its SwiGLU MLP (its entry had lacked
# mlp: swiglu, 298B parameters for 402B): 3.8% without context parallelism (worst +8.8%, GPT-3
# 175B), 6.4% over all 35 (worst -17.5%, Llama 3.1 8B, whose compute alone is 20% slower than its
# measured step). Each bound leaves about two points of margin.
MEDIAN_ERROR_BOUND = 0.06
MEDIAN_ERROR_BOUND_ALL = 0.09
WITHOUT_CP = [r for r in RUNS if r.run.get("context_parallel", 1) == 1]


def test_the_source_is_a_layout_source_with_its_rows():
    assert SOURCE in LAYOUT_SOURCES
    source = load_source(SOURCE)
    assert source["source"]["repo"] == "NVIDIA/dgxc-benchmarking" and len(source["source"]["commit"]) == 40
    assert len(RUNS) == len(source["runs"]) == 35  # GPT-3 175B x5, Nemotron-4 15B x8 and 340B x5, Llama 3.1 x17
    assert len(WITHOUT_CP) == 18


def test_context_parallel_rows_keep_their_layout():
    rows = [r for r in RUNS if r.run.get("context_parallel", 1) > 1]
    assert len(rows) == 17  # Llama 3.1 8B x5, 70B x6, 405B x6, all CP 2
    for run in rows:
        [spec] = run.specs.values()
        assert spec.training.context_parallel == run.run["context_parallel"] == 2
        model_parallel = spec.training.tensor_parallel * spec.training.pipeline_parallel * 2
        assert spec.hardware.n_gpus == model_parallel * spec.data_parallel
        assert run.run["micro_batch_size"] * spec.data_parallel * run.run["grad_accum"] == run.run["global_batch_size"]


@pytest.mark.parametrize("run", RUNS, ids=[r.label for r in RUNS])
def test_row_builds_the_spec_of_its_layout(run):
    row = run.run
    [spec] = run.specs.values()
    t, hw = spec.training, spec.hardware
    assert (t.tensor_parallel, t.pipeline_parallel, t.virtual_stages, t.sequence_parallel) == (
        row["tensor_parallel"], row["pipeline_parallel"], row["virtual_stages"],
        row.get("sequence_parallel", load_source(SOURCE)["models"][row["model"]].get("sequence_parallel", False)))
    assert t.pipeline_schedule == ("interleaved" if row["virtual_stages"] > 1 else "1f1b")
    assert t.trainer_profile == "nemo" and t.parallelism == "zero1" and t.precision == "bf16-mixed"
    assert hw.n_gpus == row["n_gpus"] and hw.gpus_per_node == 8 and spec.model.seq_len == row["seq_len"]
    assert hw.resolved_gpu().memory_bytes == 80 * 2**30
    # the layout multiplies out to the GPUs, and the batch to micro-batches on every replica
    layout = spec_layout(spec)
    assert int(layout.n_gpus) == row["n_gpus"] == (t.tensor_parallel * t.pipeline_parallel * t.context_parallel
                                                   * spec.data_parallel)
    micro = t.batch_size // (t.micro_batch_size * spec.data_parallel)
    assert t.micro_batch_size * spec.data_parallel * micro == row["global_batch_size"]
    if "grad_accum" in row:
        assert micro == row["grad_accum"]
    # the model's shapes come out at its name's size
    params = float(parameter_counts(stage_shape(spec)).total[0])
    full_depth = "layers" not in row or row["layers"] == load_source(SOURCE)["models"][row["model"]].get("layers")
    if full_depth:  # the 405B's proxy rows (32-192 GPUs) have fewer layers than the model
        assert params == pytest.approx(NOMINAL_PARAMS[row["model"]], rel=0.05)
    # the published throughput is the published step time's
    # (within the tables' rounding: one row, noted in the file, is 0.4% off its own step time)
    assert row["seq_len"] * row["global_batch_size"] / row["step_time_s"] == pytest.approx(row["tokens_per_s"],
                                                                                           rel=5e-3)
    predicted = predict(spec)
    assert math.isfinite(predicted.peak_reserved_gib) and predicted.peak_reserved_gib > 0
    assert math.isfinite(predicted.tokens_per_s_per_gpu) and predicted.tokens_per_s_per_gpu > 0


@pytest.mark.parametrize("runs,bound", [(WITHOUT_CP, MEDIAN_ERROR_BOUND), (RUNS, MEDIAN_ERROR_BOUND_ALL)])
def test_median_throughput_error_stays_within_the_measured_bound(runs, bound):
    errors = [abs(predict(spec).tokens_per_s_per_gpu / run.measured_tokens_per_s_per_gpu - 1)
              for run in runs for spec in run.specs.values()]
    assert statistics.median(errors) < bound


def test_every_nemo_run_fits_the_card_under_its_recipes_trainer():
    """Every row of the NeMo tables ran on an 80 GB H100; the 340B's recipe keeps Adam's state in
    bf16 (its trainer_overrides), without which its 128-GPU row (data parallel 2) would not fit."""
    runs = [run for run in published_runs(LAYOUT_SOURCES) if run.source == "nemo_dgxc_h100"]
    assert len(runs) == 35
    assert all(predict(spec).fits_card for run in runs for spec in run.specs.values())
    smallest = next(run for run in runs if run.label.startswith("nemotron4-340b x128"))
    spec = next(iter(smallest.specs.values()))
    plain = spec.model_copy(update={"training": spec.training.model_copy(update={"trainer_overrides": {}})})
    assert not predict(plain).fits_card
