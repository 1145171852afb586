"""The study reproduction's builders, and one end-to-end run at toy size."""

from fractions import Fraction

import numpy as np
import pytest

from costsim.paper import paper_incremental
from studies.incremental_training import (
    PRESETS,
    Curve,
    compare,
    counted_breakdown,
    framework_rows,
    loss_at,
    study_specs,
    to_reach,
)


def curve(flops, loss):
    flops = np.asarray(flops, dtype=float)
    return Curve(flops=flops, time_s=flops / 1e9, loss=np.asarray(loss, dtype=float))


def test_crossings_and_reach():
    growth = curve([1, 2, 4, 8], [3.0, 2.5, 2.2, 2.1])
    base = curve([1, 2, 4, 8], [3.5, 2.6, 2.0, 1.8])
    result = compare(growth, base)
    (x,) = result.crossings
    assert 2 < x < 4  # ahead early, behind after the crossing
    assert result.ahead_at_start and not result.ahead_at_end and "study's finding" in result.verdict()
    assert compare(growth, growth).crossings == []
    assert compare(growth, curve([10, 20], [1, 1])).ahead_at_start is None
    assert to_reach(base, 2.3) == pytest.approx(2 + 2 * (2.6 - 2.3) / 0.6)
    assert to_reach(growth, 1.5) is None
    assert loss_at(base, 3.0) == pytest.approx(2.3)
    assert loss_at(base, 100.0) is None


def test_framework_rows_reproduce_the_study_exactly():
    rows = framework_rows()
    assert [(r["layers"], r["S"]) for r in rows] == [(12, 4), (24, 8), (12, 12)]
    assert [r["study_exact"] for r in rows] == [Fraction(17, 32), Fraction(29, 64), Fraction(41, 96)]
    for r in rows:
        assert r["study"] == pytest.approx(float(r["study_exact"]), rel=1e-12)
        # counted FLOPs save less than the study's units say, for the two reasons the report gives
        assert r["counted"] > r["study"]
        assert 0 < r["frozen_backward_share"] < 0.5 and 0 < r["head_share"] < 0.6


def test_breakdown_is_zero_without_frozen_blocks():
    shares = counted_breakdown(paper_incremental(12, 4, 1e9, freeze=False))
    assert shares["frozen_backward_share"] == 0
    assert shares["head_share"] > 0


def test_study_specs_share_data_and_budget():
    specs = study_specs(PRESETS["cpu"])
    assert set(specs) == {"baseline", "incremental", "no_freeze"}
    tokens = {k: s.total_tokens for k, s in specs.items()}
    assert tokens["baseline"] == tokens["incremental"] == pytest.approx(tokens["no_freeze"])
    assert all(s.training.seed == specs["baseline"].training.seed for s in specs.values())
    assert any(st.train == "new" for st in specs["incremental"].stages)
    assert all(st.train == "all" for st in specs["no_freeze"].stages)
    assert specs["incremental"].stages[-1].reset_optimizer


def test_study_runs_end_to_end_at_toy_size(tmp_path, monkeypatch):
    """Real runs, the report and the dashboard: every table filled from what ran."""
    from studies.incremental_training import main

    monkeypatch.setenv("COSTSIM_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out"
    assert main(["--preset", "smoke", "--out", str(out), "--search-trials", "12", "--budgets", "1e18"]) == 0
    report = (out / "report.md").read_text()
    for heading in ("## 1.", "## 2.", "## 3.", "## 4."):
        assert heading in report
    assert "17/32" in report and "| 1e+18 |" in report
    assert (out / "dashboard" / "index.html").is_file()
    from costsim.store import Store

    assert len(Store(out / "study.duckdb").query("SELECT run_id FROM run_summary WHERE status = 'complete'")) == 3


def test_gpu_preset_builds_and_fits_one_gpu():
    """The --gpu preset (not run on CPU CI): valid specs that fit an H100/H200's memory."""
    from costsim import estimate

    total = 0.0
    for spec in study_specs(PRESETS["gpu"]).values():
        result = estimate(spec.model_copy(update={"hardware": spec.hardware.model_copy(update={"gpu": "h100-sxm"})}))
        assert result.total.fits_in_memory
        total += result.total.time_s
    assert total < 600  # the three runs: about ten minutes on one H100 by costsim's own estimate
