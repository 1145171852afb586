"""The search checks its own answer by training it: studies.check_recommendation end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quick_check_trains_the_answer_and_gives_a_verdict(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "studies.check_recommendation", "--quick", "--threads", "1",
                           "--db", str(tmp_path / "check.duckdb"), "--out", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "check.json").read_text())
    assert report["verdict"] in ("confirmed", "tie", "contradicted")
    roles = [o["role"] for o in report["outcomes"]]
    assert roles[0] == "best" and "study" in roles
    for o in report["outcomes"]:
        assert len(o["measured"]) == 1 and o["lower"] <= o["predicted"] <= o["upper"]
        assert 1.0 < o["measured"][0] < 6.0  # a byte-level model that trained: below ln 256 = 5.55
    assert "verdict:" in done.stdout and (tmp_path / "out" / "check.html").stat().st_size > 0

    # an interrupted or repeated check resumes: complete runs of the same specs are reused
    from costsim.store import Store

    count = "SELECT count(*) AS n FROM run_summary"
    before = Store(tmp_path / "check.duckdb").query(count)[0]["n"]
    again = subprocess.run([sys.executable, "-m", "studies.check_recommendation", "--quick", "--threads", "1",
                            "--db", str(tmp_path / "check.duckdb"), "--out", str(tmp_path / "again")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert Store(tmp_path / "check.duckdb").query(count)[0]["n"] == before
    assert json.loads((tmp_path / "again" / "check.json").read_text())["outcomes"] == report["outcomes"]

    # the name is a role's label, not what was trained: the same model under another name is
    # reused, another seed is not
    from costsim.spec import parse_spec
    from studies.runner import complete_run

    row = Store(tmp_path / "check.duckdb").query("SELECT spec_json FROM run_summary WHERE status = 'complete'")[0]
    spec = parse_spec(json.loads(row["spec_json"]))
    assert complete_run(tmp_path / "check.duckdb", spec.model_copy(update={"name": "check runner-up seed1"}))
    reseeded = spec.model_copy(update={"training": spec.training.model_copy(update={"seed": 99})})
    assert complete_run(tmp_path / "check.duckdb", reseeded) is None


def test_bad_paths_fail_before_any_work(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "studies.check_recommendation", "--quick",
                           "--db", str(tmp_path / "no" / "such" / "dir" / "x.duckdb")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: --db") and done.stdout == ""
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("args", [["--seeds", "0"], ["--budget", "-1"]])
def test_bad_numbers_are_one_line(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "studies.check_recommendation", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_runs_trained_in_parallel_come_back_by_role_in_seed_order(monkeypatch, tmp_path: Path) -> None:
    import time

    from studies import check_recommendation as check

    def fake_train(spec, seed, db, workdir, threads, device, label):
        time.sleep(0.05 * (3 - seed))  # later seeds finish first: order must not follow completion
        return f"{label}/{seed}/{threads}"

    monkeypatch.setattr(check, "train_one", fake_train)
    trained = check.train_all([("best", None), ("study", None)], 3, tmp_path / "x.duckdb", tmp_path, 1, "cpu",
                              parallel=2)
    assert trained == {"best": ["best/1/1", "best/2/1", "best/3/1"], "study": ["study/1/1", "study/2/1", "study/3/1"]}


def _checked(role: str, predicted: float, measured: list[float]):
    from studies.check_recommendation import Outcome

    return Outcome(role, role, 4e12, predicted, predicted - 0.09, predicted + 0.09, measured, [role] * len(measured))


def test_when_the_best_is_full_training_the_next_shape_is_trained_and_judged(monkeypatch) -> None:
    """Two shapes the law calls a tie (1.5612 both) that trained 0.08 apart: the check
    trains the runner-up beside the best, and a runner-up that trains clearly better
    contradicts the pick (the shipped profile's pick at 4e12, d32 L4, against d64 L2, both as
    measured: heldout_check)."""
    from types import SimpleNamespace

    from costsim.loss import load_loss_profile
    from studies import check_recommendation as check

    monkeypatch.setattr(check, "grows", lambda spec: False)  # every schedule here is full training
    best, other, paper = (SimpleNamespace(spec=name, flops_counted=4e12) for name in ("a", "b", "c"))
    result = SimpleNamespace(best=[best], baseline=best, runner_up=other, paper=paper, comparison=None)
    assert [role for role, _ in check.schedules(result)] == ["best", "runner-up", "study"]
    assert [role for role, _ in check.schedules(SimpleNamespace(**{**vars(result), "runner_up": None}))] == \
        ["best", "study"]

    profile = load_loss_profile("stdlib-bytes")
    worse_pick = [_checked("best", 1.5612, [1.6149, 1.6338, 1.6147]),
                  _checked("runner-up", 1.5612 + 4e-5, [1.5477, 1.5470, 1.5341]),
                  _checked("study", 1.6234, [1.6488, 1.6838, 1.6616])]
    report = check.summarise(result, worse_pick, {}, profile)
    pair = next(p for p in report["pairs"] if {p["a"], p["b"]} == {"best", "runner-up"})
    assert pair["measured"] == "b better" and not pair["agree"] and report["verdict"] == "contradicted"
    assert report["beaten_by"] == ["runner-up"]
    # as trained at 4e12: the law put the runner-up ahead by 4e-5 nats, so the pair's sign
    # agrees, yet the search recommended the other; the recommendation is what is judged
    swapped = [_checked("best", 1.5612, worse_pick[0].measured), _checked("runner-up", 1.5612 - 4e-5,
                                                                           worse_pick[1].measured), worse_pick[2]]
    report = check.summarise(result, swapped, {}, profile)
    assert all(p["agree"] for p in report["pairs"]) and report["verdict"] == "contradicted"
    tied = [worse_pick[0], _checked("runner-up", 1.5612 + 4e-5, [1.6150, 1.6300, 1.6200]), worse_pick[2]]
    assert check.summarise(result, tied, {}, profile)["verdict"] == "confirmed"


def test_a_pair_the_search_called_a_tie_is_judged_on_its_interval_not_its_sign(monkeypatch) -> None:
    """The shipped profile's check at 4e12: the search's best grows (d64 L1 to L2, identity,
    predicted 0.0078 ahead of full training of d64 L2, 90% interval of the gap -0.086 to
    +0.099: a tie, so it recommends full training). Trained, full training was 0.054 ahead:
    inside the interval, and the recommendation trained best. A gap outside the interval
    contradicts it, as does the runs putting growth clearly ahead."""
    from types import SimpleNamespace

    from costsim.loss import load_loss_profile
    from costsim.planner import Comparison
    from studies import check_recommendation as check

    monkeypatch.setattr(check, "grows", lambda spec: spec == "a")
    best, full, paper = (SimpleNamespace(spec=name, flops_counted=4e12) for name in ("a", "b", "c"))
    tie = Comparison(gap=0.0078, lower=-0.0861, upper=0.0992, intervals_overlap=True, verdict="tie")
    result = SimpleNamespace(best=[best], baseline=full, runner_up=None, paper=paper, comparison=tie)
    profile = load_loss_profile("stdlib-bytes")
    trained = [_checked("best", 1.5376, [1.6047, 1.5982, 1.5877]),  # as measured
               _checked("full training", 1.5454, [1.5477, 1.5470, 1.5341]),
               _checked("study", 1.6705, [1.6283, 1.6633, 1.6349])]
    report = check.summarise(result, trained, {}, profile)
    pair = next(p for p in report["pairs"] if {p["a"], p["b"]} == {"best", "full training"})
    assert pair["predicted"] == "tie" and pair["measured"] == "b better" and pair["agree"]
    assert report["recommendation"] == "full training" and report["verdict"] == "confirmed"
    # the same pair, full training far further ahead than the interval allows
    far = [_checked("best", 1.5376, [1.7061, 1.6876, 1.6970]), *trained[1:]]
    assert check.summarise(result, far, {}, profile)["verdict"] == "contradicted"
    # growth clearly ahead: inside the interval, but it beats the recommended full training
    ahead = [_checked("best", 1.5376, [1.4961, 1.4976, 1.4970]), *trained[1:]]
    report = check.summarise(result, ahead, {}, profile)
    assert report["verdict"] == "contradicted" and report["beaten_by"] == ["best"]
