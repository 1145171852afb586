"""The GPU session script is the only way GPU numbers reach the README, and a device
session is short and rare: it must not find the script broken. DEVICE=cpu runs its
steps at laptop sizes."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_session_script_runs_its_steps_on_a_cpu(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path / "out"), "COSTSIM_DATA_DIR": str(tmp_path / "data"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/gpu_session.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"
    results = [json.loads(line) for line in (out / "throughput.jsonl").read_text().splitlines()]
    assert [(r["preset"], r["loop"]) for r in results] == [("tiny", "trainer"), ("tiny", "bare")]
    assert all(r["tokens_per_s"] > 0 and r["device"] == "cpu" for r in results)
    assert json.loads((out / "measure.json").read_text())
    report = (out / "paper_run.log").read_text()
    assert "final validation loss" in report and report.count("(exact)") >= 2 * 8, report  # 8 stages
    assert (out / "gpu.duckdb").stat().st_size > 0


def test_residual_by_tokens_bins_every_point_of_the_corpus():
    from costsim.corpus import load_runs

    done = subprocess.run([sys.executable, "benchmarks/residual_by_tokens.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    binned, seeds = done.stdout.split("full training repeated over seeds")
    counts = [int(line.split()[1]) for line in binned.splitlines() if line.startswith("  ")]
    assert sum(counts) == sum(len(r.loss) for r in load_runs())
    assert "full training:" in done.stdout and "growth:" in done.stdout
    assert "full d96 L6" in seeds  # three seeds in the shipped corpus


def test_batch_residuals_scores_every_batch_of_every_shape_trained_at_several():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from batch_residuals import batch_groups

    from costsim.corpus import load_runs

    groups = batch_groups(load_runs())
    # d64 L4 was trained at eight batches, d96 L6 at four, d48 L4 at three; a cosine run is not a batch variant
    assert sorted(groups[(64, 4)]) == [8, 16, 32, 64, 128, 256, 512, 2048]
    assert sorted(groups[(96, 6)]) == [8, 32, 64, 256] and sorted(groups[(48, 4)]) == [8, 32, 128]
    done = subprocess.run([sys.executable, "benchmarks/batch_residuals.py", "--along"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    scored = sum(len(by_batch) for by_batch in groups.values())
    assert done.stdout.count("  batch ") == scored and f"over {scored} batches" in done.stdout
    assert done.stdout.count("best batch measured") == len(groups)
    # --along: every batch but each shape's usual one (32 sequences), against that one
    assert done.stdout.count("  along: batch ") == scored - len(groups)
    assert done.stdout.count("minus batch 32 at tokens") == scored - len(groups)


def test_loss_accuracy_variants_hold_what_they_name():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from loss_accuracy import variant_holds, variant_sets

    from costsim.fit import LAW_FROM_FULL_TRAINING

    structure, held = variant_holds("lingering/N/flat/carry/lt3")
    assert structure == "lingering"
    assert set(held) == {"shape_exponent", "lag_size_slope", "lag_tokens"}
    assert variant_sets("lingering/N/flat/carry/lt3") == {"startup_growth": "carry", "lag_tokens": 3.0}
    assert "lag_tokens" not in variant_holds("fading/N")[1] and "lag_tokens" not in variant_sets("fading/N")
    assert variant_sets("lingering/widthclock")["width_lag_scale"] > 1  # starts away from 1, so it is fitted
    assert variant_sets("lingering/break")["data_break_tokens"] > 0  # starts broken, so the break is fitted
    assert "late_beta" not in variant_holds("lingering/break")[1]
    assert {"data_break_tokens", "late_beta"} <= set(variant_holds("lingering/breakheld")[1])
    assert LAW_FROM_FULL_TRAINING in variant_holds("lingering/lawfirst")[1]
    assert LAW_FROM_FULL_TRAINING not in variant_holds("lingering/breakheld")[1]
    assert variant_sets("lingering/breakheld/breaksize")["data_break_size_exponent"] > 0  # fitted: starts away from 0
    assert "data_break_size_exponent" not in variant_holds("lingering/breakheld/breaksize")[1]
    assert variant_sets("lingering/breakheld") == variant_sets("lingering/break")
    for bad in ("lingering/lt0", "lingering/ltx", "lingering/ltinf", "nosuch/N", "fading/sideways"):
        with pytest.raises(SystemExit, match="unknown variant"):
            variant_holds(bad)


def test_scale_sensitivity_reads_growths_answer_with_each_term_switched_off():
    """Without the start-up a from-scratch model has no slow start for growth to skip, so
    at every size of the ladder both study schedules cost more than with it; without the
    lags they cost less; the no-freeze variant has no frozen phase to price."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scale_sensitivity import LADDER, SWITCHES, comparison, rung

    from costsim.loss import load_loss_profile

    profile = load_loss_profile("stdlib-bytes")
    for row in (LADDER[0], LADDER[-1]):
        model, training, tokens = rung(*row)
        layers = row[1]
        for freeze in (True, False):
            compared = {name: comparison(profile.switched(**update), model, training, layers, tokens, freeze)[0]
                        for name, update in SWITCHES.items()}
            # a schedule that never reaches full training's final loss costs more than any ratio
            ratio = {name: math.inf if c.ratio is None else c.ratio for name, c in compared.items()}
            assert ratio["no start-up"] >= ratio["shipped"] > ratio["no lags"]
            assert ratio["no start-up"] > ratio["shipped"] or ratio["shipped"] == math.inf
            if not freeze:
                assert ratio["no frozen cost"] == pytest.approx(ratio["shipped"], rel=1e-9)
    done = subprocess.run([sys.executable, "benchmarks/scale_sensitivity.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sum(line.strip().startswith("d") for line in done.stdout.splitlines()) == len(LADDER)


def test_gap_bias_splits_every_schedule_final_gap_error_along_the_run():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gap_bias import SHARES, residuals_along

    from costsim.corpus import load_runs
    from costsim.heldout import score_schedules
    from costsim.loss import load_loss_profile

    params = load_loss_profile("stdlib-bytes").params
    runs = load_runs("heldout_larger")
    scores = {s.run: s for s in score_schedules(runs, runs, params)}
    for schedule, score in scores.items():
        held = [r for r in runs if r.schedule == schedule]
        rows = residuals_along(params, held, runs)
        assert len(rows) == len(SHARES)
        growth, base = rows[-1]
        # at the end the growth run's residual minus its baseline's is the final gap error
        assert growth - base == pytest.approx(score.predicted.end_gap - score.measured.end_gap, abs=1e-3), schedule


def test_store_flush_times_a_flush_and_a_read_at_each_size():
    done = subprocess.run([sys.executable, "benchmarks/store_flush.py", "--rows", "1e5", "--repeats", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["10,000", "100,000"]
    assert all(float(value) > 0 for row in rows for value in row[1:])


def test_lr_limit_reads_every_full_training_run_under_the_corpuss_lr():
    """15 runs under 2e-3 (4 in the sweep, 11 held out), each slower than the LR-blind curve at
    1.64M tokens, and the power law fitted on the sweep nearer the held-out ones than 1."""
    done = subprocess.run([sys.executable, "benchmarks/lr_limit.py", "--shipped"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    section = done.stdout.split("under the profile's LR (0.002)")[1].split("\n\n")[0].splitlines()
    runs = [line for line in section if line.startswith("full ")]
    assert len(runs) == 15 and sum(" sweep " in line for line in runs) == 4
    assert all(float(line.split()[-2]) < 1 for line in runs)
    fitted = next(line for line in section if line.startswith("efficiency = "))
    power, one = (float(x) for x in re.search(r"rms ([\d.]+) \(the model's 1: ([\d.]+)\)", fitted).groups())
    assert power < one


def test_law_shape_reads_every_long_curve_against_the_law():
    """Part 1 (no fits): a row per full-training run at 32 sequences past 5M tokens, the late
    windows filled only for runs that reach them, and each run's own floor above the law's."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from law_shape import curves

    rows = curves("stdlib-bytes")
    header, body = rows[0], rows[1:]
    long = [r for r in body if r[0] == "full d64 L2 long seed1"]
    assert len(body) > 40 and len(long) == 1 and all(len(r) == len(header) for r in body)
    assert long[0][5] and not next(r for r in body if r[0] == "full d96 L6 seed1")[5]  # 12-27M: only long runs
    measured, predicted = (float(x) for x in long[0][5].split("/"))
    assert measured < predicted  # the runs flatten where one power law keeps paying for tokens
    assert float(long[0][6]) > float(long[0][8])


def test_check_runs_scores_every_check_run_and_orders_each_budget():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from check_runs import score

    lines = score("stdlib-bytes")
    assert "21 schedules, 63 runs" in lines[0]
    inside = int(re.search(r"inside their intervals (\d+)/63", lines[0]).group(1))
    outside = [line for line in lines if line.startswith("  outside: ")]
    assert len(outside) == 63 - inside <= 2  # the shipped profile: the two d32 L1 seeds at 2e12, one layer
    assert all("d32 L1" in line for line in outside)
    assert [line.strip() for line in lines if line.startswith("  at")] == ["at2e12:", "at4e12:", "at5e12:", "at1e13:",
                                                                         "at2e13:"]
