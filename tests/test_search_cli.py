"""What a user of ``costsim.search`` sees and gives: GPU presets and GPU files, the memory
headroom (one rule for the search and costsim.estimate), --help, and the printed report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from costsim import estimate, parse_spec, search
from costsim.constants import MEMORY_HEADROOM
from costsim.errors import SpecError
from costsim.hardware import GPUSpec, gpu_from_name_or_file, gpu_preset_names, load_gpu, preset_for_device
from costsim.loss import load_loss_profile
from costsim.memory import usable_memory_bytes
from costsim.planner import Budget, Comparison, Planner, SearchSpace
from costsim.profile import profile_for
from costsim.spec import HardwareSpec

LOSS = "chinchilla-published"
NEW_PRESETS = ("h100-pcie", "l40s", "a10g", "l4", "mi300x")
GPU_FILE = {"name": "Test GPU 24GB", "peak_bf16_flops_per_s": 1.0e14, "peak_tf32_flops_per_s": 5.0e13,
            "hbm_bandwidth_bytes_per_s": 1.0e12, "memory_bytes": 24 * 2**30,
            "interconnect_bandwidth_bytes_per_s": 3.2e10, "price_per_gpu_hour": 0.9, "source": "a test"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "costsim.search", "--loss-profile", LOSS, "--db", "", "--out",
                           str(cwd / "best.yaml"), "--no-progress", *args], capture_output=True, text=True,
                          timeout=300, check=False)


# --- GPU presets -------------------------------------------------------------------------

@pytest.mark.parametrize("name", gpu_preset_names())
def test_every_preset_names_its_datasheet_and_labels_its_price(name: str) -> None:
    gpu = load_gpu(name)
    assert "datasheet" in gpu.source.lower() or "data sheet" in gpu.source.lower()
    assert "indicative" in gpu.source.lower() and gpu.price_per_gpu_hour > 0
    assert "sparsity" in gpu.source  # the rates are dense, and the file says so


def test_the_rented_gpus_are_presets_and_use_the_generic_calibration() -> None:
    assert set(NEW_PRESETS) <= set(gpu_preset_names())
    for name in NEW_PRESETS:
        assert profile_for(name, None).name == "generic"


@pytest.mark.parametrize(("device", "preset"), [
    ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA L40S", "l40s"),
    ("NVIDIA A10G", "a10g"), ("NVIDIA L4", "l4"), ("AMD Instinct MI300X", "mi300x"),
    ("NVIDIA A100 80GB PCIe", "a100-80gb"), ("AMD Instinct MI250X", None), ("NVIDIA A10", None),
])
def test_a_device_name_finds_its_preset_and_no_other(device: str, preset: str | None) -> None:
    """The presets added here must not capture another card's device name (a shared "80GB"
    or "AMD Instinct" is not the same card)."""
    assert preset_for_device(device) == preset


# --- GPU files -----------------------------------------------------------------------------

def test_a_gpu_file_is_a_gpu(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(GPU_FILE))
    assert gpu_from_name_or_file(str(path)) == GPUSpec(**GPU_FILE)
    assert gpu_from_name_or_file("h100-pcie") == "h100-pcie"


@pytest.mark.parametrize(("change", "says"), [
    ({"memory_bytes": -1}, "memory_bytes: Input should be greater than or equal to"),
    ({"memry_bytes": 1e10}, "memry_bytes: unknown key"),
    ({"memory_bytes": None}, "memory_bytes"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_gpu_file_is_one_line_naming_the_problem(tmp_path: Path, change, says: str) -> None:
    path = tmp_path / "gpu.json"
    path.write_text(change if isinstance(change, str) else json.dumps({**GPU_FILE, **change}))
    with pytest.raises(SpecError) as caught:
        gpu_from_name_or_file(str(path))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"GPU file {path}: ") and says in message


def test_search_on_a_gpu_file(tmp_path: Path) -> None:
    """--gpu FILE: the search plans for that GPU (its memory, its price) with the generic
    calibration, and writes a spec carrying the GPU inline that estimate accepts."""
    path = tmp_path / "my-gpu.json"
    path.write_text(json.dumps(GPU_FILE))
    done = cli("--gpu", str(path), "--n-gpus", "2", "--budget", "1e17", "--n-trials", "12", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "on 2 x Test GPU 24GB" in done.stdout
    assert "per GPU: 21.6 GiB of 24.0 GiB usable (--memory-headroom 0.9); $0.90 an hour (the GPU file's" \
        in done.stdout
    written = parse_spec(yaml.safe_load((tmp_path / "best.yaml").read_text()))
    assert written.hardware.resolved_gpu() == GPUSpec(**GPU_FILE)
    result = estimate(written)
    assert result.calibration == "generic" and result.total.fits_in_memory


def test_a_bad_gpu_file_stops_the_cli_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({**GPU_FILE, "memory_bytes": 0}))
    done = cli("--gpu", str(path), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: GPU file {path}: memory_bytes: ")


# --- memory headroom ------------------------------------------------------------------------

def planner(headroom: float = MEMORY_HEADROOM, cap_gb: float | None = None) -> Planner:
    profile = load_loss_profile(LOSS)
    hardware = HardwareSpec(gpu="a100-40gb", n_gpus=1)
    space = SearchSpace.for_budget(1e19, profile=profile)
    return Planner(Budget(flops=1e19), hardware, space, profile_for("a100-40gb", None), profile,
                   max_memory_bytes=cap_gb and cap_gb * 2**30, memory_headroom=headroom)


def test_the_headroom_and_a_cap_set_the_usable_memory() -> None:
    memory = load_gpu("a100-40gb").memory_bytes
    assert MEMORY_HEADROOM == 0.9
    assert planner().memory_limit == usable_memory_bytes(memory) == 0.9 * memory
    assert planner(1.0).memory_limit == memory
    assert planner(cap_gb=8).memory_limit == 8 * 2**30  # a cap below the headroom's share is used as it is
    assert planner(cap_gb=39).memory_limit == 0.9 * memory


def between_headroom_and_full(p: Planner) -> dict:
    """A spec whose peak lies between 90% and 100% of the A100 40GB's memory."""
    memory = load_gpu("a100-40gb").memory_bytes
    for micro in (1, 2, 4, 8, 16, 32, 64):
        spec = parse_spec({"model": {"d_model": 768, "n_heads": 12, "vocab_size": 50304, "seq_len": 1024},
                           "training": {"micro_batch_size": micro, "batch_size": 64},
                           "hardware": {"gpu": "a100-40gb"}, "stages": [{"layers": 12, "tokens": 1e9}]})
        peak = estimate(spec).total.peak_memory_bytes
        if 0.9 * memory < peak <= memory:
            return {"spec": spec, "peak": peak}
    pytest.skip("no micro-batch of this model peaks between 90% and 100% of the GPU")


def test_estimate_and_the_search_judge_fits_by_the_same_rule() -> None:
    """One rule for "fits": a peak above 90% of the card fits neither estimate nor the
    search's default planner, and fits a planner given the whole card."""
    default, whole = planner(), planner(1.0)
    case = between_headroom_and_full(default)
    assert not estimate(case["spec"]).total.fits_in_memory
    assert not default.evaluate(case["spec"]).fits_in_memory
    assert whole.evaluate(case["spec"]).fits_in_memory
    # the search's memory constraint is the same test
    assert (case["peak"] / default.memory_limit - 1 > 0) and (case["peak"] / whole.memory_limit - 1 <= 0)


def test_the_search_never_plans_past_the_headroom() -> None:
    result = search.run(Budget(flops=1e19), HardwareSpec(gpu="a100-40gb", n_gpus=1), n_trials=10, seed=0,
                        loss_profile=LOSS)
    limit = 0.9 * load_gpu("a100-40gb").memory_bytes
    for e in [*result.best, result.baseline, result.paper]:
        if e is not None:
            assert e.peak_memory_bytes <= limit


# --- what the CLI prints ---------------------------------------------------------------------

def test_help_shows_the_defaults(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "costsim.search", "--help"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for shown in ("(default: h100-sxm)", "(default: 8)", "(default: 0.9)", "(default: 300)", "(default: 0)",
                  "(default: loss)", "(default: best_schedule.yaml)", "none given: --budget 1e19"):
        assert shown in text, shown
    assert "default: None" not in text and "default: False" not in text


def test_a_bare_run_says_what_it_assumed_and_reports_parameter_counts(tmp_path: Path) -> None:
    done = cli("--n-trials", "12", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "no budget given: assuming --budget 1e19 (counted FLOPs)"
    assert sum("assum" in line for line in lines) == 1
    assert lines[1].startswith("budget: 1e+19 counted FLOPs on 8 x NVIDIA H100 SXM 80GB")
    # the printed counts are the engine's, for the model the recommendation ends with
    written = parse_spec(yaml.safe_load((tmp_path / "best.yaml").read_text()))
    last = estimate(written).stages[-1]
    [recommended] = [line for line in lines if line.startswith("recommendation: ")]
    from costsim.text import si

    assert f"{si(last.params_total)} params ({si(last.params_non_embedding)} non-embedding)" in recommended


def test_describe_gives_the_final_models_parameter_counts() -> None:
    p = planner()
    e = p.evaluate(p.build(d_model=768, layers=12, batch_tokens=2**16))
    last = estimate(e.spec).stages[-1]
    assert (e.params_total, e.params_non_embedding) == (last.params_total, last.params_non_embedding)
    assert 120e6 < e.params_total < 130e6 and 80e6 < e.params_non_embedding < 90e6  # GPT-2 small
    assert "124M params (85M non-embedding)" in search.describe(e)


@pytest.mark.parametrize(("comparison", "says"), [
    (Comparison(gap=0.05, lower=0.01, upper=0.09, intervals_overlap=True, verdict="growth better"),
     ["growing is better", "growing predicts 0.0500 nats lower loss than full training", "excludes 0",
      "outside the uncertainty"]),
    (Comparison(gap=-0.03, lower=-0.05, upper=-0.01, intervals_overlap=False, verdict="full training better"),
     ["full training is better (do not grow)", "full training predicts 0.0300 nats lower loss than growing",
      "excludes 0"]),
    (Comparison(gap=0.002, lower=-0.01, upper=0.014, intervals_overlap=True, verdict="tie"),
     ["a tie within the uncertainty", "growing predicts 0.0020 nats lower loss", "includes 0",
      "inside the uncertainty", "recommend full training (do not grow)"]),
])
def test_the_comparison_line_says_which_is_better_by_how_much_and_whether_it_is_noise(
        comparison: Comparison, says: list[str]) -> None:
    line = comparison.describe(0.9)
    assert "\n" not in line and "90% interval" in line
    for part in says:
        assert part in line, part


def test_the_printed_comparison_adds_what_full_training_would_need() -> None:
    p = planner()
    base = p.best_full_training()
    win = Comparison(gap=0.05, lower=0.01, upper=0.09, intervals_overlap=True, verdict="growth better")
    result = search.SearchResult(best=[base], baseline=base, paper=None, n_trials=1, budget_for_equal_loss=1.5e19,
                                 budget_for_paper_loss=None, study_name="t", trials=[], comparison=win)
    line = search._comparison_line(result, Budget(flops=1e19), 0.9)
    assert line == f"  growth vs full training: {win.describe(0.9)}; full training needs 1.500x the budget to match " \
        "the growth schedule's point prediction"
