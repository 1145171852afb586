"""The cost engine against 20 steps measured on an H200 (../shared/calibration)."""

import json
from importlib import resources

import numpy as np
import pytest

from costsim.calibration import (
    MeasuredStep,
    fit_profile,
    load_measurements,
    relative_errors,
    shape_of,
    split_holdout,
)
from costsim.flops import micro_batch_flops, parameter_counts
from costsim.hardware import load_gpu
from costsim.profile import load_profile

MEASUREMENTS = resources.files("costsim") / "data" / "measurements" / "h200_sweep_2026-11-28.json"
INFO, CASES = load_measurements(MEASUREMENTS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_counted_flops_match_the_gpu_counter_exactly(case):
    shape = shape_of([case])
    assert int(micro_batch_flops(shape).counted[0]) == case.counted_flops


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parameter_counts_match(case):
    raw = next(c for c in json.loads(MEASUREMENTS.read_text())["cases"] if c["name"] == case.name)
    counts = parameter_counts(shape_of([case]))
    assert (int(counts.total[0]), int(counts.trainable[0]), int(counts.non_embedding[0])) == (
        raw["params"], raw["trainable"], raw["non_embedding"])


def test_shipped_h200_profile_is_the_fit_of_the_shipped_measurements():
    shipped = load_profile("h200")
    refit = fit_profile(CASES, load_gpu("h200"), name="h200", device=INFO["gpu"], source=MEASUREMENTS.name)
    for field in ("matmul_efficiency", "attention_efficiency", "bandwidth_efficiency", "launch_overhead_s",
                  "logits_transient_bytes", "reserve_fraction"):
        assert getattr(shipped, field) == pytest.approx(getattr(refit, field), rel=1e-6), field


def test_held_out_errors_are_within_tolerance():
    """Fit on two thirds, check the held-out third: the numbers the README reports."""
    fit, held = split_holdout(CASES)
    assert len(fit) == 14 and len(held) == 6
    profile = fit_profile(CASES, load_gpu("h200"), name="test", device="H200")
    errors = {k: np.abs(v) for k, v in relative_errors(held, profile, load_gpu("h200")).items()}
    assert np.median(errors["step_time"]) < 0.15 and errors["step_time"].max() < 0.30
    assert np.median(errors["peak_allocated"]) < 0.05 and errors["peak_allocated"].max() < 0.20


def test_validate_calibrate_imports_fits_and_stores(tmp_path, capsys):
    from costsim.store import Store
    from validate.calibrate import main

    db = tmp_path / "c.duckdb"
    assert main(["--db", str(db), "--import", str(MEASUREMENTS), "--out-dir", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "h200.json").read_text())
    shipped = load_profile("h200")
    assert written["matmul_efficiency"] == pytest.approx(shipped.matmul_efficiency, rel=1e-6)
    rows = Store(db).query("SELECT profile_name, device FROM calibrations")
    assert rows == [{"profile_name": "h200", "device": "NVIDIA H200"}]
    assert "held out" in capsys.readouterr().out
    # importing the same file again stores nothing twice
    assert main(["--db", str(db), "--import", str(MEASUREMENTS), "--out-dir", str(tmp_path)]) == 0
    assert Store(db).query("SELECT count(*) AS n FROM cost_measurements") == [{"n": 20}]


@pytest.mark.parametrize("index", range(4))
def test_validate_measure_cpu_cases_match_the_engine(index):
    import torch

    from costsim.memory import saved_activation_bytes
    from validate.measure import CPU_SWEEP, measure_case

    case = CPU_SWEEP[index]
    row = measure_case(case, torch.device("cpu"), warmup=0, repeats=1)
    shape = shape_of([MeasuredStep(**row)])
    assert row["counted_flops"] == int(micro_batch_flops(shape).counted[0])
    assert row["saved_activation_bytes"] == int(saved_activation_bytes(shape)[0])
    assert row["step_s_median"] > 0


def test_costsim_calibrate_writes_to_the_working_folder_not_the_package(tmp_path, monkeypatch):
    from importlib import resources

    from costsim.calibrate import main

    shipped = resources.files("costsim") / "data" / "profiles" / "h200.json"
    before = shipped.read_text()
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert (tmp_path / "h200.json").is_file() and shipped.read_text() == before


@pytest.mark.parametrize("text", ["{bad", '{"a": 1}', '{"cases": [{"name": 1}]}', "[]"])
def test_bad_measurement_and_profile_files_are_one_line(tmp_path, text):
    from costsim.errors import SpecError

    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(SpecError, match="not a measurements file"):
        load_measurements(bad)
    with pytest.raises(SpecError, match="not a valid profile"):
        load_profile.__wrapped__(str(bad))
