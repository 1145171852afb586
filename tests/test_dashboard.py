"""The dashboard: typed page data from a real store, the CLI, and every page rendered in Chromium.

The store holds a real three-stage growth run and a one-stage baseline trained on the
CPU, one real CPU cost measurement, two small real ``costsim.search`` studies (one and two
objectives), the shipped H200 sweep as GPU cost measurements, the H200 profile as a
stored calibration, hand-written search trials with known answers, and a hand-written
check of the two runs (stored as studies.check_recommendation stores one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from costsim import estimate, load_gpu, load_profile, load_spec
from costsim.calibration import MeasuredStep, relative_errors
from costsim.dashboard import PAGES, dashboard_data, shown_pages, write_dashboard
from costsim.dashboard.__main__ import main
from costsim.dashboard.checks import check_data
from costsim.dashboard.data import (
    Selection,
    calibration_data,
    cost_data,
    loss_data,
    loss_predictions,
    predicted_loss_series,
    search_data,
    select,
    timeline_data,
)
from costsim.dashboard.draw import check_figures, dollar_unit, loss_figures, time_axis_unit
from costsim.errors import CostsimError
from costsim.hardware import preset_for_device
from costsim.loss import load_loss_profile, predict, stage_plans
from costsim.store import TABLES, Store
from costsim.text import dollars, time_unit
from studies.check_recommendation import Outcome, pair_verdict, store_check

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny_three_stage.yaml"
PAPER = ROOT / "examples" / "paper_s4.yaml"
SWEEP = resources.files("costsim") / "data" / "measurements" / "h200_sweep_2026-11-28.json"
CHROMIUM = Path("/usr/bin/chromium")

BASELINE_YAML = """\
name: tiny baseline
model: {d_model: 64, n_heads: 4, vocab_size: 256, seq_len: 64, tied_embeddings: true}
training:
  micro_batch_size: 8
  batch_size: 16
  precision: fp32
  lr_schedule: {kind: constant, lr: 3.0e-3, warmup_steps: 5}
hardware: {gpu: h200}
stages:
  - {name: full model, layers: 4, tokens: 20480}
"""

# Too big for one A100 40GB at micro-batch 32 without recompute: the cost page must flag it.
MISFIT_YAML = """\
name: too big
model: {d_model: 2048, n_heads: 16, vocab_size: 50304, seq_len: 2048}
training: {micro_batch_size: 32, batch_size: 64}
hardware: {gpu: a100-40gb}
stages:
  - {layers: 12, tokens: 1.0e9}
  - {layers: 24, tokens: 1.0e9, train: new}
"""

TRAIN_SCRIPT = """\
import sys
from costsim.search import main as search
from validate.measure import main as measure
from validate.run import main as run
db, runs, tiny, baseline = sys.argv[1:]
common = ["--db", db, "--no-progress", "--run-dir", runs]
assert run([tiny, *common]) == 0
assert run([baseline, *common, "--eval-every", "10"]) == 0
assert measure(["--device", "cpu", "--db", db, "--only", "byte_d64_L2_T64_B4", "--repeats", "2"]) == 0
search_args = ["--budget", "1e18", "--n-trials", "12", "--db", db, "--no-progress"]
assert search([*search_args, "--study-name", "searched", "--out", "best.yaml"]) == 0
assert search([*search_args, "--study-name", "searched-2d", "--objectives", "loss,cost", "--out", "best2.yaml"]) == 0
"""


@dataclass(frozen=True)
class Fixture:
    store: Store
    tiny_run: str
    baseline_run: str
    baseline_spec: Path
    misfit_spec: Path
    gpu_cases: list[MeasuredStep]


def _sweep_cases() -> list[dict]:
    return json.loads(SWEEP.read_text())["cases"]


def _cost_rows(cases: list[dict]) -> list[dict]:
    return [{
        "measurement_id": f"h200-{c['name']}", "device": "NVIDIA H200", "name": c["name"], "vocab_size": c["V"],
        "d_model": c["d"], "n_heads": c["h"], "n_layers": c["L"], "seq_len": c["T"], "micro_batch_size": c["B"],
        "frozen_blocks": c["frozen"], "freeze_embeddings": c["freeze_emb"], "tied_embeddings": c["tied"],
        "recompute": c["ckpt"], "precision": "bf16-mixed", "counted_flops": float(c["counted_flops"]),
        "step_time_s": c["step_s_median"], "peak_alloc_bytes": c["peak_alloc_bytes"],
        "peak_reserved_bytes": c["peak_reserved_bytes"], "source": "shipped sweep",
    } for c in cases]


def _trial(study: str, number: int, state: str, values: object, params: dict, minutes: int = 0) -> dict:
    return {"study_name": study, "trial_number": number, "state": state, "params_json": json.dumps(params),
            "values_json": None if values is None else json.dumps(values),
            "created_at": datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=number * 10 + minutes)}


SINGLE = [  # (number, state, value)
    (0, "COMPLETE", 3.0), (1, "COMPLETE", 2.5), (2, "FAIL", None), (3, "COMPLETE", 2.8),
    (4, "PRUNED", None), (5, "COMPLETE", 2.2), (6, "COMPLETE", 2.4),
]
PARETO = [  # (number, val_loss, cost_usd): 0, 2 and 3 are the front
    (0, 3.0, 10.0), (1, 3.2, 12.0), (2, 2.5, 20.0), (3, 2.0, 40.0), (4, 2.6, 45.0),
]


def _search_rows() -> list[dict]:
    rows = [_trial("single", n, state, None if value is None else [value], {"stages": n % 3 + 1, "lr": 1e-3 * (n + 1)})
            for n, state, value in SINGLE]
    rows.append(_trial("single", 5, "RUNNING", None, {"stages": 3, "lr": 6e-3}, minutes=-5))  # superseded
    rows += [_trial("pareto", n, "COMPLETE", {"val_loss": loss, "cost_usd": cost}, {"schedule": f"s{n}"})
             for n, loss, cost in PARETO]
    rows.append(_trial("pareto", 5, "COMPLETE", "not numbers", {}))
    return rows


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Fixture:
    tmp = tmp_path_factory.mktemp("dashboard")
    baseline = tmp / "baseline.yaml"
    baseline.write_text(BASELINE_YAML)
    misfit = tmp / "misfit.yaml"
    misfit.write_text(MISFIT_YAML)
    db = tmp / "s.duckdb"
    env = {**os.environ, "COSTSIM_DATA_DIR": str(tmp / "data")}
    done = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(db), str(tmp / "runs"), str(TINY), str(baseline)],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    store = Store(db)
    cases = _sweep_cases()
    store.append("cost_measurements", _cost_rows(cases))
    profile = load_profile("h200")
    store.append("calibrations", [{"profile_name": "h200", "device": profile.device,
                                   "created_at": datetime(2026, 11, 28, tzinfo=UTC),
                                   "params_json": profile.model_dump_json(),
                                   "holdout_report_json": json.dumps(profile.holdout_report)}])
    store.append("search_trials", _search_rows())
    runs = {row["spec_json"]: row["run_id"] for row in store.query("SELECT run_id, spec_json FROM runs")}
    tiny_run = next(run_id for spec, run_id in runs.items() if '"tiny three-stage"' in spec)
    baseline_run = next(run_id for spec, run_id in runs.items() if '"tiny baseline"' in spec)
    store_check(db, _check_report([Outcome("best", "stage 3", 2e11, 2.9, 2.6, 3.2, [3.0], [tiny_run]),
                                   Outcome("full training", "full model", 2e11, 3.0, 2.7, 3.3, [3.1], [baseline_run])],
                                  "tie", "grow"))
    return Fixture(store, tiny_run, baseline_run, baseline, misfit,
                   [MeasuredStep.model_validate(c) for c in cases])


@pytest.fixture
def no_loss_model(monkeypatch):
    """Make ``costsim.loss`` unimportable: the dashboard must work without a loss model."""
    monkeypatch.setitem(sys.modules, "costsim.loss", None)


@pytest.fixture
def loss_model(monkeypatch):
    """A stand-in loss model: a falling curve over the schedule's estimated FLOPs and time, ±0.1."""
    module = types.ModuleType("costsim.loss")

    def predict_curve(spec, steps=None):
        total = estimate(spec).total
        x = np.linspace(0, 1.2 * total.flops_counted, 25)
        loss = 2.5 + 3.0 * np.exp(-6 * x / x[-1])
        return types.SimpleNamespace(x_flops=x, x_time_s=np.linspace(0, total.time_s, 25), loss=loss,
                                     lower=loss - 0.1, upper=loss + 0.1)

    module.predict_curve = predict_curve
    monkeypatch.setitem(sys.modules, "costsim.loss", module)


def _check_report(outcomes: list[Outcome], verdict: str, recommendation: str, loss_profile: str = "stdlib-bytes",
                  seed_std: float = 0.02) -> dict:
    """A check.json as studies.check_recommendation's ``summarise`` writes it, for outcomes given by hand."""
    pairs = []
    for i, a in enumerate(outcomes):
        for b in outcomes[i + 1:]:
            gap, noise, measured = pair_verdict(a, b, seed_std)
            predicted = "a better" if b.predicted > a.predicted else "b better"
            pairs.append({"a": a.role, "b": b.role, "measured_gap": gap, "noise": noise, "measured": measured,
                          "predicted_gap": b.predicted - a.predicted, "predicted": predicted,
                          "agree": measured == "tie" or measured == predicted})
    return {"budget": max(o.flops_counted for o in outcomes), "recommendation": recommendation, "comparison": None,
            "outcomes": [asdict(o) | {"mean": o.mean, "spread": o.spread, "inside": o.inside} for o in outcomes],
            "pairs": pairs, "compute_to_match_measured": None, "verdict": verdict, "loss_profile": loss_profile,
            "seed_std_profile": seed_std, "by_role": [o.role for o in outcomes]}


def _selection(fx: Fixture, *run_ids: str, specs: dict | None = None) -> Selection:
    return select(fx.store, list(run_ids) or None, specs)


# --- data -------------------------------------------------------------------------------------


def test_selection_finds_runs_and_tells_baseline_from_growth(fx: Fixture, tmp_path: Path) -> None:
    selection = _selection(fx, specs={"paper": load_spec(PAPER)})
    roles = {s.run_id: s.role for s in selection.schedules}
    assert roles == {fx.tiny_run: "growth", fx.baseline_run: "baseline", None: "growth"}
    assert all(s.status == "complete" and s.device == "cpu" for s in selection.runs)
    assert _selection(fx, fx.baseline_run).run_ids == (fx.baseline_run,)
    with pytest.raises(CostsimError, match="'nope' is not in"):
        _selection(fx, "nope")
    missing = Store(tmp_path / "missing.duckdb")
    assert select(missing).schedules == ()
    assert not missing.path.exists() and not missing.spool_dir.exists()  # reading created nothing


def test_timeline_stages_are_contiguous_with_frozen_phase_and_growth_events(fx: Fixture) -> None:
    spec = load_spec(TINY)
    [run, paper] = timeline_data(fx.store, _selection(fx, fx.tiny_run, specs={"paper": load_spec(PAPER)})).timelines
    assert [s.layers for s in run.stages] == [2, 4, 4, 6]
    assert run.stages[0].start_tokens == 0
    for before, after in zip(run.stages, run.stages[1:]):
        assert before.end_tokens == after.start_tokens > before.start_tokens
    assert [s.end_tokens - s.start_tokens for s in run.stages] == [s.tokens for s in spec.stages]
    assert not any(s.pending for s in run.stages)  # the run recorded every stage
    assert [(s.train, s.frozen, s.n_trainable_blocks) for s in run.stages] == [
        ("all", False, 2), ("new", True, 2), ("all", False, 4), ("all", False, 6)]
    assert [(e.kind, e.tokens, e.detail) for e in run.events] == [
        ("grow_depth", 40960.0, "2->4 by random_top"), ("grow_depth", 81920.0, "4->6 by stack_copy")]
    # a spec file: its growth is implied by the stages, one event per depth step
    assert [e.tokens for e in paper.events] == [s.start_tokens for s in paper.stages if s.index and
                                                 s.layers > paper.stages[s.index - 1].layers]
    assert sum(s.frozen for s in paper.stages) == 3 and paper.role == "growth"


def test_loss_is_measured_per_run_against_counted_flops_and_time(fx: Fixture, no_loss_model) -> None:
    selection = _selection(fx)
    data = loss_data(fx.store, selection, loss_predictions(fx.store, selection))
    assert data.predicted() == () and any("predict_curve does not exist" in n for n in data.notes)
    series = {s.schedule or s.label: s for s in data.measured()}
    assert {s.role for s in series.values()} == {"baseline", "growth"}
    stages = fx.store.query("SELECT run_id, sum(steps * flops_counted_per_step) AS flops FROM stages GROUP BY run_id")
    for row in stages:
        [curve] = [s for s in data.measured() if s.label.startswith(row["run_id"])]
        assert len(curve.x_flops) == len(curve.x_time_s) == len(curve.loss) >= 2
        assert list(curve.x_flops) == sorted(curve.x_flops) and list(curve.x_time_s) == sorted(curve.x_time_s)
        assert curve.x_flops[-1] == row["flops"]  # the last eval comes after every counted step
        assert curve.loss[-1] < curve.loss[0] and curve.lower is None


def test_predicted_curves_come_from_costsim_loss_when_it_exists(fx: Fixture, loss_model) -> None:
    spec = load_spec(TINY)
    [curve] = predicted_loss_series(spec, "tiny", "growth")
    assert curve.kind == "predicted" and curve.schedule == "tiny" and len(curve.lower) == len(curve.loss) == 25
    assert all(lo < mid < hi for lo, mid, hi in zip(curve.lower, curve.loss, curve.upper))
    selection = _selection(fx, fx.tiny_run)
    predictions = loss_predictions(fx.store, selection)
    assert "predicted time is on each spec's hardware" in predictions.note
    assert len(loss_data(fx.store, selection, predictions).predicted()) == 1
    points = [p for p in calibration_data(fx.store, selection, predictions).points if p.quantity == "val_loss"]
    measured = fx.store.query("SELECT val_loss FROM evals WHERE run_id = ? ORDER BY step", [fx.tiny_run])
    assert [p.measured for p in points] == [row["val_loss"] for row in measured]


def test_costsim_loss_predicts_each_run_over_the_flops_it_counted(fx: Fixture) -> None:
    pytest.importorskip("costsim.loss")
    selection = _selection(fx, specs={"paper": load_spec(PAPER)})
    predictions = loss_predictions(fx.store, selection)
    assert set(predictions.by_label) == {s.label for s in selection.schedules}
    measured_flops = {row["run_id"]: row["flops"] for row in fx.store.query(
        "SELECT run_id, sum(steps * flops_counted_per_step) AS flops FROM stages GROUP BY run_id")}
    for schedule in selection.schedules:
        [curve] = predictions.by_label[schedule.label]
        assert curve.kind == "predicted" and curve.role == schedule.role and curve.schedule == schedule.label
        assert list(curve.x_flops) == sorted(curve.x_flops)
        assert all(lo <= mid <= hi for lo, mid, hi in zip(curve.lower, curve.loss, curve.upper))
        if schedule.run_id:  # predicted at the steps the run took: counted FLOPs are exact on the CPU
            assert curve.x_flops[-1] == pytest.approx(measured_flops[schedule.run_id], rel=1e-12)
    points = [p for p in calibration_data(fx.store, selection, predictions).points if p.quantity == "val_loss"]
    assert {p.label.split(" step ")[0] for p in points} == {fx.tiny_run, fx.baseline_run}


def test_predicted_loss_is_skipped_without_a_loss_model(no_loss_model) -> None:
    assert predicted_loss_series(load_spec(TINY)) is None


def test_cost_breakdown_is_the_estimate_and_flags_stages_that_do_not_fit(fx: Fixture) -> None:
    specs = {"misfit": load_spec(fx.misfit_spec)}
    data = cost_data(_selection(fx, fx.tiny_run, specs=specs))
    run, misfit = data.breakdowns
    expected = estimate(load_spec(TINY))
    assert [s.flops_counted for s in run.estimate.stages] == [s.flops_counted for s in expected.stages]
    assert [s.cost_usd for s in run.estimate.stages] == [s.cost_usd for s in expected.stages]
    assert run.gpu_memory_bytes == load_gpu("h200").memory_bytes
    assert not misfit.estimate.total.fits_in_memory
    assert all(s.fit_suggestion for s in misfit.estimate.stages if not s.fits_in_memory)
    assert misfit.gpu_memory_bytes == load_gpu("a100-40gb").memory_bytes


def test_calibration_compares_run_stages_and_cost_measurements(fx: Fixture, no_loss_model) -> None:
    selection = _selection(fx)
    data = calibration_data(fx.store, selection, loss_predictions(fx.store, selection))
    stages = [p for p in data.points if p.source == "run stage"]
    assert len([p for p in stages if p.quantity == "flops_counted"]) == 4 + 1  # both runs' stages
    # on the CPU counted FLOPs and saved activations are predicted exactly
    assert all(p.predicted == p.measured for p in stages if p.quantity in ("flops_counted", "memory"))
    assert not [p for p in stages if p.quantity == "step_time"]
    assert any("no predicted step time" in n for n in data.notes)
    cpu = [p for p in data.points if p.source == "cost measurement" and p.device == "cpu"]
    assert {p.quantity for p in cpu} == {"flops_counted", "memory"}
    assert all(p.predicted == p.measured for p in cpu)
    gpu = [p for p in data.points if p.device == "NVIDIA H200"]
    expected = relative_errors(sorted(fx.gpu_cases, key=lambda c: c.name), load_profile("h200"), load_gpu("h200"))
    for quantity, key in (("step_time", "step_time"), ("memory", "peak_allocated")):
        errors = [p.relative_error for p in gpu if p.quantity == quantity]
        np.testing.assert_allclose(errors, expected[key], rtol=1e-9, atol=1e-12)
    assert all(p.predicted == p.measured for p in gpu if p.quantity == "flops_counted")
    [profile] = data.profiles
    assert profile.profile_name == "h200"
    assert {row[0] for row in profile.holdout} == {"step_time", "peak_allocated", "peak_reserved"}


def test_calibration_shows_a_gpu_stage_allocated_and_reserved(tmp_path: Path, no_loss_model) -> None:
    store = Store(tmp_path / "gpu.duckdb")
    spec = load_spec(TINY)
    store.append("runs", [{"run_id": "g", "started_at": datetime(2026, 11, 28, tzinfo=UTC), "status": "complete",
                           "spec_json": spec.model_dump_json(), "torch_version": "2.11", "device": "NVIDIA H200",
                           "seed": 0, "kind": "train", "record_id": "g:run"}])
    store.append("stages", [{
        "run_id": "g", "stage_index": 0, "layers": 2, "d_model": 64, "tokens": 1e4, "steps": 10,
        "flops_counted_per_step": 1e9, "flops_counted_predicted_per_step": 1e9,
        "peak_memory_bytes": 1.1e9, "peak_memory_predicted_bytes": 1.0e9,
        "peak_reserved_bytes": 1.5e9, "peak_reserved_predicted_bytes": 1.2e9,
        "step_time_s": 0.02, "step_time_predicted_s": 0.025, "record_id": "g:stage:0"}])
    selection = select(store, ["g"], None)
    data = calibration_data(store, selection, loss_predictions(store, selection))
    memory = sorted((p.detail, p.predicted, p.measured) for p in data.points if p.quantity == "memory")
    assert memory == [("peak allocated", 1.0e9, 1.1e9), ("peak reserved", 1.2e9, 1.5e9)]
    [time_point] = [p for p in data.points if p.quantity == "step_time"]
    assert time_point.relative_error == pytest.approx(0.025 / 0.02 - 1)


def test_search_history_best_so_far_and_pareto_front(fx: Fixture) -> None:
    data = search_data(fx.store)
    studies = {s.name: s for s in data.studies}
    single, pareto = studies["single"], studies["pareto"]
    assert [t.number for t in single.trials] == [n for n, _, _ in SINGLE]  # trial 5's RUNNING row superseded
    assert single.objectives == ("objective 0",)
    numbers, best = single.best_so_far()
    complete = [(n, v) for n, state, v in SINGLE if state == "COMPLETE"]
    assert numbers == tuple(n for n, _ in complete)
    assert best == tuple(np.minimum.accumulate([v for _, v in complete]))
    [winner] = single.best()
    assert winner.number == 5 and winner.params == {"stages": 3, "lr": 6e-3}
    assert pareto.objectives == ("val_loss", "cost_usd")
    assert [t.number for t in pareto.best()] == [0, 2, 3]
    assert [t.number for t in pareto.trials] == [0, 1, 2, 3, 4]
    assert any("pareto, trial 5" in n for n in data.notes)
    assert single.outcome is None and pareto.outcome is None  # hand-written trials, no stored answer


def test_search_page_data_from_a_real_costsim_search(fx: Fixture) -> None:
    studies = {s.name: s for s in search_data(fx.store).studies}
    one, two = studies["searched"], studies["searched-2d"]
    assert len(one.trials) == len(two.trials) == 12
    assert len(one.objectives) == 1 and len(two.objectives) == 2
    assert one.best() and all(t.complete for t in two.best())
    for study in (one, two):
        outcome = study.outcome
        assert outcome.budget == {"flops": 1e18}
        names = [name for name, _ in outcome.comparison]
        assert names[0].startswith("best") and "compute-optimal full training" in names
        best = outcome.comparison[0][1]
        assert best.loss_lower <= best.loss <= best.loss_upper and best.flops_counted <= 1e18
        assert best.stages == len(outcome.best_spec.stages) == len(outcome.best_timeline.stages)
    # the single-objective answer is its best trial's loss
    assert one.outcome.comparison[0][1].loss == pytest.approx(one.best()[0].values[0])


@pytest.mark.parametrize(("device", "preset"), [
    ("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb"), ("NVIDIA B200", "b200"), ("Tesla T4", None),
])
def test_gpu_preset_for_device_names(device: str, preset: str | None) -> None:
    assert preset_for_device(device) == preset


def test_empty_store_still_gives_an_index_that_says_why(tmp_path: Path) -> None:
    data = dashboard_data(Store(tmp_path / "empty.duckdb"))
    for page in PAGES:
        assert page.section(data).why_empty
    assert "python -m validate.run" in data.timeline.why_empty
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "check.html").write_text("from an older store")
    index = write_dashboard(data, tmp_path / "out").read_text()
    # every page says why it is empty, except the check page, which only a store with checks gets
    assert [page.file for page in shown_pages(data)] == [page.file for page in PAGES if page.file != "check.html"]
    assert index.count("empty:") == len(PAGES) - 1 and "python -m validate.measure" in index
    assert "check.html" not in index and not (tmp_path / "out" / "check.html").exists()


# --- check: the search's answer trained -----------------------------------------------------

CHECK_SEEDS = {  # role -> (spec, predicted, lower, upper, final loss per seed)
    "best": (TINY, 1.4643, 1.2434, 1.6856, [1.64, 1.70]),
    "full training": ("baseline", 1.4837, 1.2429, 1.6943, [1.6706, 1.6752]),
    "study": (TINY, 1.5087, 1.2714, 1.7188, [1.70, 1.73]),
}


def _check_store(tmp_path: Path, monkeypatch) -> tuple[Store, dict]:
    """Six fake runs (two seeds per role, three evaluations each, no training) and one stored
    check naming them, into a store created before the ``checks`` table existed; the second
    study seed's run is missing from the store. Best's first seed recorded its stages, having
    taken half the steps its spec plans."""
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(BASELINE_YAML)
    store = Store(tmp_path / "check.duckdb")
    monkeypatch.delitem(TABLES, "checks")  # an older store: created and flushed without the table
    store.append("events", [{"run_id": "x", "step": 0, "kind": "k"}])
    store.flush()
    monkeypatch.undo()
    outcomes = []
    for role, (path, predicted, lower, upper, finals) in CHECK_SEEDS.items():
        spec = load_spec(baseline if path == "baseline" else path)
        run_ids = [f"{role.replace(' ', '-')}-{seed}" for seed in (1, 2)]
        for seed, (run_id, final) in enumerate(zip(run_ids, finals), start=1):
            if run_id == "study-2":
                continue
            store.append("runs", [{"run_id": run_id, "started_at": datetime(2026, 12, 2, tzinfo=UTC),
                                   "status": "complete", "spec_json": spec.model_dump_json(), "torch_version": "2.11",
                                   "device": "cpu", "seed": seed, "kind": "train"}])
            store.append("evals", [{"run_id": run_id, "step": step, "tokens": 1024.0 * step,
                                    "flops_counted": 1e10 * step, "val_loss": final + 0.5 * (2 - step) + 0.1 * seed,
                                    "wall_time_s": 1.0 * step} for step in (0, 1, 2)])
        outcomes.append(Outcome(role, spec.stages[-1].name or role, 4e12, predicted, lower, upper, finals, run_ids))
    taken = [s // 2 for s in (40, 20, 20, 40)]
    store.append("stages", [{
        "run_id": "best-1", "stage_index": i, "layers": 2, "d_model": 64, "tokens": 1024.0 * steps, "steps": steps,
        "flops_counted_per_step": 1e9, "flops_counted_predicted_per_step": 1e9, "step_time_s": 0.01}
        for i, steps in enumerate(taken)])
    report = _check_report(outcomes, "confirmed", "full training", loss_profile="chinchilla")
    store_check(store.path, report)
    return store, report


def test_check_page_shows_predicted_against_measured_per_role_and_one_band_each(tmp_path: Path,
                                                                               monkeypatch) -> None:
    store, report = _check_store(tmp_path, monkeypatch)
    [row] = store.query("SELECT * FROM checks")
    assert (row["budget"], row["loss_profile"], row["verdict"], row["recommendation"]) == (
        4e12, "chinchilla", "confirmed", "full training")
    assert json.loads(row["report_json"]) == report
    data = check_data(store)
    [check] = data.checks
    assert check.check_id == row["check_id"] and check.interval == 0.9
    assert check.roles() == ("best", "full training", "study")
    best, full, study = check.outcomes
    assert best.mean == pytest.approx(1.67) and best.spread == pytest.approx(0.06 / 2**0.5) and best.inside == 1
    assert full.inside == 2 and study.inside == 1 and study.run_ids == ("study-1", "study-2")
    assert [(p.a, p.b, p.says(p.measured), p.agree) for p in check.pairs] == [
        ("best", "full training", "tie", True), ("best", "study", "tie", True),
        ("full training", "study", "full training better", True)]
    assert check.verdict_words.startswith("confirmed: every measured gap beyond seed noise has the predicted sign")
    assert "(full training) measured 1.6729 nats, inside its interval" in check.verdict_words
    assert data.notes == ("check " + check.check_id + ": study run(s) study-2 are not in this store; "
                          "their curves are left out",)
    # the measured curves, one per stored seed, from the runs' evaluations
    measured = [s for s in check.curves if s.kind == "measured"]
    assert [(s.label, s.key, s.role) for s in measured] == [
        ("best seed 1", "best", "growth"), ("best seed 2", "best", "growth"),
        ("full training seed 1", "full training", "baseline"), ("full training seed 2", "full training", "baseline"),
        ("study seed 1", "study", "growth")]
    assert measured[1].x_flops == (0.0, 1e10, 2e10) and measured[1].loss[-1] == pytest.approx(1.70 + 0.2)
    # one predicted curve per role, by the profile the check names (not the spec's default, stdlib-bytes),
    # at the steps the first seed took where it recorded them
    predicted = {s.key: s for s in check.curves if s.kind == "predicted"}
    assert list(predicted) == ["best", "full training", "study"]
    assert predicted["best"].label == "best predicted (chinchilla)"
    profile = load_loss_profile("chinchilla")
    tiny = load_spec(TINY)
    for role, steps in (("best", [20, 10, 10, 20]), ("study", None)):
        final = predict(profile, stage_plans(tiny, steps), points_per_stage=1)
        assert predicted[role].loss[-1] == pytest.approx(float(final.loss[-1]), rel=1e-9)
        assert predicted[role].lower[-1] == pytest.approx(float(final.lower[-1]), rel=1e-9)
    assert predicted["best"].x_flops[-1] == pytest.approx(predicted["study"].x_flops[-1] / 2, rel=1e-9)
    assert predicted["best"].loss[-1] != pytest.approx(
        predict(load_loss_profile("stdlib-bytes"), stage_plans(tiny, [20, 10, 10, 20]), 1).loss[-1], rel=1e-3)
    # drawn: the table of predicted [interval] against measured mean ± sd, the pairs, and the curves
    outcomes_table, pairs_table, curves = check_figures(data)
    cells = outcomes_table.data[0].cells["values"]
    assert list(outcomes_table.data[0].header["values"]) == [
        "schedule", "counted FLOPs", "predicted final loss [90% interval] (nats)", "measured mean ± sd (nats)",
        "seeds inside the interval"]
    assert [list(column) for column in cells] == [
        ["best", "full training", "study"], ["4T FLOPs"] * 3,
        ["1.4643 [1.2434, 1.6856]", "1.4837 [1.2429, 1.6943]", "1.5087 [1.2714, 1.7188]"],
        ["1.6700 ± 0.0424 (2 seeds)", "1.6729 ± 0.0033 (2 seeds)", "1.7150 ± 0.0212 (2 seeds)"],
        ["1/2", "2/2", "1/2"]]
    assert "<b>confirmed</b>" in outcomes_table.layout.title.text
    assert "every measured gap beyond seed noise" in outcomes_table.layout.title.text
    pairs = [list(column) for column in pairs_table.data[0].cells["values"]]
    assert pairs[0] == ["best vs full training", "best vs study", "full training vs study"]
    assert pairs[-2:] == [["tie", "tie", "full training better"], ["yes", "yes", "yes"]]
    bands = [trace for trace in curves.data if trace.fill == "tonexty"]
    assert [trace.legendgroup for trace in bands] == ["best", "full training", "study"]  # one band per role
    lines = [trace for trace in curves.data if trace.hovertemplate]
    assert [trace.name for trace in lines] == [s.label for s in check.curves]
    assert all(trace.x[0] > 0 for trace in lines)  # the step-0 evaluation has no place on the log axis
    assert curves.layout.xaxis.type == "log" and curves.layout.xaxis.title.text == "counted FLOPs"
    assert curves.layout.xaxis.tickformat == "~s" and curves.layout.yaxis.title.text == "validation loss (nats)"
    assert all(" FLOPs" in trace.hovertemplate and " nats" in trace.hovertemplate for trace in lines)
    # the page is written and linked only now that the store has a check
    index = write_dashboard(dashboard_data(store), tmp_path / "out").read_text()
    assert '<a href="check.html">Check</a>' in index and "3 figures" in index
    assert "1.4643 [1.2434, 1.6856]" in (tmp_path / "out" / "check.html").read_text()


def test_check_without_its_runs_or_profile_still_shows_its_report(tmp_path: Path) -> None:
    store = Store(tmp_path / "bare.duckdb")
    outcomes = [Outcome("best", "s", 1e12, 2.0, 1.9, 2.1, [2.05], ["gone"]),
                Outcome("full training", "f", 1e12, 2.2, 2.1, 2.3, [1.9], ["gone-too"])]
    report = _check_report(outcomes, "contradicted", "grow", loss_profile="my-own-fit")
    store_check(store.path, report)
    store.append("checks", [{"check_id": "broken", "created_at": datetime(2026, 12, 3, tzinfo=UTC), "budget": 1.0,
                             "loss_profile": "x", "verdict": "tie", "recommendation": "grow", "report_json": "{}"}])
    data = check_data(store)
    [check] = data.checks
    assert check.curves == () and check.interval is None
    assert check.verdict_words == ("contradicted: full training better beyond seed noise, where best better was "
                                   "predicted.")
    assert any("loss profile 'my-own-fit' cannot be loaded here" in n for n in data.notes)
    assert any(n.startswith("check broken: its stored report cannot be read") for n in data.notes)
    figures = check_figures(data)
    assert len(figures) == 2 and "[interval]" in figures[0].data[0].header["values"][2]


def test_a_runner_up_that_trains_better_than_the_pick_is_why_the_check_is_contradicted(tmp_path: Path) -> None:
    # the shipped profile's check at 4e12: the law put the two shapes 4e-5 nats apart, the runner-up ahead,
    # and the search recommended the other; trained, the runner-up was 0.078 better (these seeds: 0.081)
    store = Store(tmp_path / "check.duckdb")
    outcomes = [Outcome("best", "s", 4e12, 1.56119, 1.4722, 1.6500, [1.6149, 1.6338, 1.6147], ["a", "b", "c"]),
                Outcome("runner-up", "r", 4e12, 1.56115, 1.4733, 1.6488, [1.5350, 1.5400, 1.5441], ["d", "e", "f"])]
    store_check(store.path, _check_report(outcomes, "contradicted", "full training"))
    [check] = check_data(store).checks
    assert all(p.agree for p in check.pairs) and check.recommended().role == "best"
    assert check.verdict_words == ("contradicted: runner-up better beyond seed noise (0.0814 nats), where 0.0000 was "
                                   "predicted.")


# --- units ------------------------------------------------------------------------------------

BPE_YAML = """\
name: small bpe
model: {d_model: 64, n_heads: 4, vocab_size: 50304, seq_len: 64}
training: {micro_batch_size: 8, batch_size: 16}
hardware: {gpu: h200}
stages:
  - {layers: 2, tokens: 20480}
"""


def _two_vocab_store(tmp_path: Path) -> Store:
    """A byte-level run trained on the CPU and a BPE run trained on an H200, each with three evaluations."""
    store = Store(tmp_path / "vocab.duckdb")
    bpe = tmp_path / "bpe.yaml"
    bpe.write_text(BPE_YAML)
    for run_id, spec, device, seconds in (("byte", load_spec(TINY), "cpu", 40.0), ("bpe", load_spec(bpe),
                                                                                   "NVIDIA H200", 0.5)):
        store.append("runs", [{"run_id": run_id, "started_at": datetime(2026, 11, 28, tzinfo=UTC),
                               "status": "complete", "spec_json": spec.model_dump_json(), "torch_version": "2.11",
                               "device": device, "seed": 0, "kind": "train", "record_id": f"{run_id}:run"}])
        store.append("evals", [{"run_id": run_id, "step": step, "tokens": 1024.0 * step, "flops_counted": 1e9 * step,
                                "val_loss": 5.0 - step, "wall_time_s": seconds * step, "record_id": f"{run_id}:{step}"}
                               for step in (0, 1, 2)])
    return store


def test_loss_page_has_one_figure_per_vocabulary_and_one_time_axis_per_device(tmp_path: Path) -> None:
    pytest.importorskip("costsim.loss")
    store = _two_vocab_store(tmp_path)
    selection = select(store)
    data = loss_data(store, selection, loss_predictions(store, selection))
    assert data.vocab_sizes() == (256, 50304)
    assert {(s.schedule or s.label, s.kind): (s.vocab_size, s.time_on) for s in data.series} == {
        ("byte · tiny three-stage", "measured"): (256, "cpu"), ("byte · tiny three-stage", "predicted"): (256, "h200"),
        ("bpe · small bpe", "measured"): (50304, "h200"), ("bpe · small bpe", "predicted"): (50304, "h200")}
    byte, bpe = loss_figures(data)
    assert "vocabulary 256 (byte-level)" in byte.layout.title.text
    assert "vocabulary 50,304 (BPE)" in bpe.layout.title.text
    assert "each time axis is one device" in byte.layout.title.text
    # the byte-level run trained on the CPU (80 s: in minutes): its measured time and the H200's predicted
    # time get an axis each; the BPE run trained on the GPU its spec names: measured and predicted time share
    # one axis
    assert [byte.layout[a].title.text for a in ("xaxis", "xaxis2", "xaxis3")] == [
        "counted FLOPs", "time on cpu (min)", "time on h200 (s)"]
    assert [bpe.layout[a].title.text for a in ("xaxis", "xaxis2")] == ["counted FLOPs", "time on h200 (s)"]
    assert "xaxis3" not in bpe.layout
    for figure in (byte, bpe):
        on_axis: dict[str, set[str]] = {}
        for trace in figure.data:
            if trace.hovertemplate:
                on_axis.setdefault(trace.xaxis or "x", set()).add(trace.hovertemplate.split(" on ")[-1].split(":")[0]
                                                                  if " on " in trace.hovertemplate else "flops")
        assert all(len(devices) == 1 for devices in on_axis.values()), on_axis
    assert [a.text for a in bpe.layout.annotations] == ["against counted FLOPs", "measured and predicted time on h200"]


def test_unit_helpers_write_dollars_and_pick_a_time_unit() -> None:
    assert [dollars(v) for v in (0, 3.2e-6, 1e-4, 0.5, 12345.678)] == [
        "$0.00", "$0.0000032", "$0.00010", "$0.50", "$12,345.68"]
    assert [time_unit(s) for s in (0.02, 59, 60, 7200)] == [(1.0, "s"), (1.0, "s"), (60.0, "min"), (3600.0, "h")]
    assert dollar_unit([2.0, 40.0]).tickformat == ",.2f"
    small = dollar_unit([1e-4, 3e-4])
    assert small.prefix == "$" and small.tickformat == ",.5~f" and small.hover("y") == "$%{y:,.5~f}"
    assert time_axis_unit([30.0, 5400.0]).values([5400.0]) == [1.5]


UNIT_OF = {"s": "time", "min": "time", "h": "time", "GiB": "memory", "$": "cost", "FLOPs": "flops"}


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _axis_unit(axis: dict) -> str | None:
    """The unit in an axis title, "(GiB)" -> "GiB", or "FLOPs" for a FLOPs axis; None without one."""
    title = (axis.get("title") or {}).get("text") or ""
    match = re.search(r"\(([^()]+)\)$", title)
    return match.group(1) if match else "FLOPs" if title.endswith("FLOPs") else None


def test_every_page_shows_memory_in_gib_time_with_units_and_plain_dollars(fx: Fixture) -> None:
    specs = {"paper_s4.yaml": load_spec(PAPER), "misfit.yaml": load_spec(fx.misfit_spec)}
    data = dashboard_data(fx.store, None, specs)
    checked = set()
    for page in PAGES:
        for figure in page.draw(page.section(data)):
            plot = figure.to_plotly_json()
            texts = _strings(plot)
            assert not [t for t in texts if "GB" in t], page.file  # GiB only, no decimal gigabytes
            assert not [t for t in texts if re.search(r"memory \((bytes|B)\)", t)], page.file
            layout = plot["layout"]
            axes = {key: axis for key, axis in layout.items() if re.fullmatch(r"[xy]axis\d*", key)}
            for axis in axes.values():
                title = (axis.get("title") or {}).get("text") or ""
                unit = _axis_unit(axis)
                if re.search(r"\btime\b", title):
                    assert unit in ("s", "min", "h"), f"{page.file}: time axis {title!r} without a unit"
                if "memory" in title:
                    assert unit == "GiB", f"{page.file}: memory axis {title!r}"
                if "cost" in title:
                    assert unit == "$" and axis.get("tickprefix") == "$", f"{page.file}: cost axis {title!r}"
                if unit == "$":  # plain dollars with cents: a fixed-point format, never SI ("100µ")
                    assert re.fullmatch(r",\.\d+~?f", axis["tickformat"]), axis
                    assert axis["hoverformat"] == axis["tickformat"]
                if unit in UNIT_OF:
                    checked.add(UNIT_OF[unit])
                    assert "tickformat" in axis, f"{page.file}: {title!r} left to plotly's default tick labels"
                if axis.get("tickformat", "").endswith("s"):
                    assert unit == "FLOPs", f"{page.file}: SI prefixes on {title!r}"
            for trace in plot["data"]:
                if trace.get("hoverinfo") == "skip" or trace.get("type") == "table":
                    continue
                for letter in "xy":
                    unit = _axis_unit(axes.get(f"{letter}axis{trace.get(letter + 'axis', letter)[1:]}", {}))
                    if unit is None:
                        continue
                    hover = _strings([trace.get("hovertemplate"), trace.get("hovertext")])
                    assert hover, f"{page.file}: {trace.get('name')!r} hovers without units ({unit})"
                    symbol = "$" if unit == "$" else f" {unit}"
                    assert all(symbol in h for h in hover), f"{page.file}: {trace.get('name')!r}: {hover[:2]} ({unit})"
    assert checked == {"time", "memory", "cost", "flops"}
    search = [f for f in PAGES if f.file == "search.html"][0]
    tables = [f for f in search.draw(data.search) if f.data[0].type == "table"]
    cells = [c for t in tables for column in t.data[0].cells["values"] for c in column]
    assert "cost ($)" in cells and any(re.fullmatch(r"\$[\d,]+\.\d\d+", str(c)) for c in cells)


# --- CLI --------------------------------------------------------------------------------------


def test_help_says_how_to_fill_the_store(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "python -m validate.run" in text and "--spec" in text and "--runs" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--runs", "nope"], "'nope' is not in"),
    (["--runs", " , "], "--runs: give one or more run ids"),
    (["--spec", "missing.yaml"], "missing.yaml: cannot read the spec"),
])
def test_bad_input_is_one_line_and_exit_2(fx: Fixture, tmp_path: Path, capsys, argv, message) -> None:
    assert main(["--db", str(fx.store.path), "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_store_held_open_for_writing_elsewhere_is_one_line_and_exit_2(fx: Fixture, tmp_path: Path, capsys,
                                                                       held_open) -> None:
    with held_open(fx.store.path, False):
        assert main(["--db", str(fx.store.path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cannot open the store" in err and err.count("\n") == 1


def test_a_store_another_reader_holds_open_still_draws(fx: Fixture, tmp_path: Path, held_open) -> None:
    """Readers share DuckDB's lock, and a flush writes a copy, so a reader blocks nothing."""
    fx.store.append("events", [{"run_id": "r", "step": 0, "kind": "test", "detail": None}])
    with held_open(fx.store.path, True):
        assert main(["--db", str(fx.store.path), "--out", str(tmp_path / "out")]) == 0
    assert fx.store.query("SELECT count(*) AS n FROM events WHERE run_id = 'r'") == [{"n": 1}]


def test_cli_writes_small_offline_pages_and_opens_the_index(fx: Fixture, tmp_path: Path, monkeypatch,
                                                             no_loss_model) -> None:
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    out = tmp_path / "out"
    assert main(["--db", str(fx.store.path), "--out", str(out), "--runs", fx.tiny_run, "--spec", str(PAPER),
                 "--open"]) == 0
    assert opened == [(out / "index.html").resolve().as_uri()]
    files = {p.name: p.stat().st_size for p in out.iterdir()}
    assert set(files) == {"index.html", "plotly.min.js", *(page.file for page in PAGES)}  # the store has a check
    assert all(size < 200_000 for name, size in files.items() if name.endswith(".html"))  # plotly.js not inlined
    for page in PAGES:
        text = (out / page.file).read_text()
        assert "cdn.plot.ly" not in text and "https://" not in text
    timeline = (out / "timeline.html").read_text()
    assert "plotly.min.js" in timeline and "trains 3 of 6" in timeline


# --- every page in a headless browser -----------------------------------------------------------

PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {  // capture phase: also a <script src> that fails to load
  window.__errors.push(e.message ? String(e.message)
                                 : "failed to load " + (e.target && (e.target.src || e.target.href)));
}, true);
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("unhandled rejection: " + e.reason);
});
var __consoleError = console.error;
console.error = function () {
  window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
function __size(v) { return v == null ? 0 : (typeof v.length === "number" ? v.length : 0); }
window.addEventListener("load", function () { setTimeout(function () {
  var plots = Array.prototype.map.call(document.querySelectorAll(".plotly-graph-div"), function (gd) {
    var full = gd._fullData || [];
    return {traces: full.length, svg: gd.querySelectorAll(".main-svg").length,
            points: full.reduce(function (n, t) {
              return n + Math.max(__size(t.x), __size(t.y), __size(t.cells && t.cells.values)); }, 0),
            texts: Array.prototype.map.call(gd.querySelectorAll("svg text"), function (e) { return e.textContent; })};
  });
  var pre = document.createElement("pre");
  pre.id = "verdict";
  pre.textContent = JSON.stringify({errors: window.__errors, plotly: typeof Plotly, plots: plots});
  document.body.appendChild(pre);
}, 300); });
</script>"""


def _render(page: Path, profile: Path) -> dict:
    """Load ``page`` in headless Chromium and return the probe's verdict."""
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    start = done.stdout.find('<pre id="verdict">')
    assert start >= 0, f"{page.name}: no verdict (exit {done.returncode}); stderr: {done.stderr[-2000:]}"
    verdict = done.stdout[start + len('<pre id="verdict">'):done.stdout.index("</pre>", start)]
    return json.loads(verdict.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&"))


def _render_all(out: Path, copy: Path) -> dict[str, dict]:
    """Render a test copy of every page (the probe injected first thing in <head>), in parallel."""
    shutil.copytree(out, copy)
    pages = sorted(copy.glob("*.html"))
    for page in pages:
        page.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    with ThreadPoolExecutor(max_workers=3) as pool:
        verdicts = pool.map(lambda item: _render(item[1], copy / f"profile{item[0]}"), enumerate(pages))
        return {page.name: verdict for page, verdict in zip(pages, verdicts)}


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)")


@needs_chromium
def test_every_page_renders_in_chromium_without_errors_or_empty_plots(fx: Fixture, tmp_path: Path) -> None:
    specs = {"paper_s4.yaml": load_spec(PAPER), "misfit.yaml": load_spec(fx.misfit_spec)}
    full = write_dashboard(dashboard_data(fx.store, None, specs), tmp_path / "full").parent
    empty = write_dashboard(dashboard_data(Store(tmp_path / "none.duckdb")), tmp_path / "empty").parent
    verdicts = _render_all(full, tmp_path / "full-copy")
    empty_verdicts = _render_all(empty, tmp_path / "empty-copy")
    assert set(verdicts) == {"index.html", *(page.file for page in PAGES)}
    assert set(empty_verdicts) == {"index.html", *(page.file for page in PAGES if not page.optional)}
    for name, verdict in {**verdicts, **{f"empty/{k}": v for k, v in empty_verdicts.items()}}.items():
        assert verdict["errors"] == [], f"{name}: {verdict['errors']}"
    for page in PAGES:
        verdict = verdicts[page.file]
        assert verdict["plotly"] == "object", page.file
        assert verdict["plots"], f"{page.file}: no plot"
        for plot in verdict["plots"]:
            assert plot["traces"] > 0 and plot["points"] > 0 and plot["svg"] > 0, f"{page.file}: empty plot {plot}"
        assert empty_verdicts.get(page.file, {"plots": []})["plots"] == []
    # per study: the answer's table and timeline when stored, the history, the best table, a Pareto scatter (2-D)
    studies = search_data(fx.store).studies
    assert len(verdicts["search.html"]["plots"]) == sum(
        2 * (s.outcome is not None) + 2 + (len(s.objectives) == 2) for s in studies)
    assert len(verdicts["calibration.html"]["plots"]) == 2  # the comparison grid and the profiles table
    assert len(verdicts["check.html"]["plots"]) == 3  # the check's two tables and its curves
    # units as drawn: axis titles and tick labels, never SI-prefixed dollars or decimal gigabytes
    data = dashboard_data(fx.store, None, specs)
    loss_plots = verdicts["loss.html"]["plots"]
    assert len(loss_plots) == len(data.loss.vocab_sizes()) == 2  # byte-level runs, BPE specs
    assert any("vocabulary 256 (byte-level)" in t for t in loss_plots[0]["texts"])
    assert any(t.startswith("time on cpu (") for t in loss_plots[0]["texts"])
    cost = verdicts["cost.html"]["plots"][0]["texts"]
    assert "peak memory per GPU (GiB)" in cost and "cost ($)" in cost and "time (h)" in cost
    assert any(re.fullmatch(r"\$[\d,.]+", t) for t in cost)  # a dollar tick label
    for name, verdict in verdicts.items():
        texts = [t for plot in verdict["plots"] for t in plot["texts"]]
        assert not [t for t in texts if "GB" in t or re.fullmatch(r"\$?[\d.]+[µm]", t)], name


@needs_chromium
def test_probe_catches_a_broken_page(tmp_path: Path) -> None:
    """The browser check is worth something only if it fails on a broken page."""
    out = tmp_path / "broken"
    out.mkdir()
    (out / "index.html").write_text(textwrap.dedent("""\
        <!DOCTYPE html><html><head><script src="plotly.min.js"></script></head>
        <body><div class="plotly-graph-div"></div><script>Plotly.newPlot("x", []);</script></body></html>"""))
    verdict = _render_all(out, tmp_path / "copy")["index.html"]
    assert verdict["plotly"] == "undefined"
    assert any("failed to load" in e for e in verdict["errors"])
    assert any("Plotly is not defined" in e for e in verdict["errors"])
    assert verdict["plots"] == [{"traces": 0, "svg": 0, "points": 0, "texts": []}]
