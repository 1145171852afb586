"""Bad input never crashes and never gives a wrong number: mutated specs (a sample here;
``python benchmarks/fuzz.py --n 5000`` runs more) and bad command lines."""

import random
import subprocess
import sys
from pathlib import Path

import pytest
from fuzzing import base_specs, check, mutate

ROOT = Path(__file__).resolve().parents[1]
N_SAMPLES = 300


def test_mutated_specs_are_refused_in_one_line_or_answered_sanely():
    rng = random.Random(0)
    seeds = base_specs()
    outcomes = {"refused": 0, "answered": 0}
    for _ in range(N_SAMPLES):
        outcomes[check(mutate(rng.choice(seeds), rng))] += 1
    assert outcomes["refused"] > 0 and outcomes["answered"] > 0, outcomes


def test_nesting_a_thousand_deep_is_one_line(tmp_path):
    spec = tmp_path / "deep.json"
    spec.write_text('{"model": ' + "[" * 1000 + "]" * 1000 + "}")
    for module in ("costsim.estimate", "validate.run"):
        done = subprocess.run([sys.executable, "-m", module, str(spec), "--db", str(tmp_path / "x.duckdb")]
                              if module == "validate.run" else [sys.executable, "-m", module, str(spec)],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-500:]


def test_a_json_integer_with_thousands_of_digits_is_one_line(tmp_path):
    spec = tmp_path / "long.json"
    spec.write_text('{"model": {"d_model": ' + "9" * 5000 + '}}')
    done = subprocess.run([sys.executable, "-m", "costsim.estimate", str(spec)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-500:]


@pytest.mark.parametrize("module, args", [
    ("costsim.estimate", ["examples/tiny_three_stage.yaml", "--loss-points", "0"]),
    ("costsim.estimate", ["examples/tiny_three_stage.yaml", "--loss-profile", "nope"]),
    ("costsim.estimate", ["examples/tiny_three_stage.yaml", "--loss-profile", "examples/full_gpt2.json"]),
    ("costsim.search", ["--budget", "1e28", "--n-trials", "5", "--db", "", "--out", "/tmp/costsim-fuzz.yaml"]),
    ("costsim.fit", ["--out", "/nonexistent/dir/p.json"]),
    ("costsim.fit", ["--out", "x.json", "--data", "/nonexistent.duckdb"]),
    ("costsim.fit", ["--out", "/tmp/costsim-fuzz-profile.json", "--lag-tokens", "0"]),
    ("costsim.fit", ["--out", "/tmp/costsim-fuzz-profile.json", "--data-break", "3e6"]),
    ("costsim.fit", ["--out", "/tmp/costsim-fuzz-profile.json", "--data-break", "3e6,0.9", "--fit-data-break"]),
    ("studies.data_repetition", ["--threads", "0"]),
    ("costsim.calibrate", ["/nonexistent.json"]),
    ("costsim.dashboard", ["--db", "/nonexistent/x.duckdb"]),
    ("studies.growth_corpus", ["--export", "--db", "/nonexistent/x.duckdb"]),
    ("studies.growth_corpus", ["--only", "no such run", "--db", "/nonexistent/x.duckdb"]),
    ("validate.run", ["examples/tiny_three_stage.yaml", "--threads", "0"]),
])
def test_bad_command_lines_are_one_line(module, args):
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 2, (done.stdout[-300:], done.stderr[-500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in done.stderr, done.stderr[-500:]


def test_validate_run_threads_default_to_the_cpus_it_may_use(monkeypatch):
    import os

    from validate.run import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == len(os.sched_getaffinity(0))


def test_fitting_a_break_size_without_a_break_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    """--fit-data-break-size moves a break: from a law without one (a published law's, or a
    profile fitted before the break) it names the flags that give one."""
    import costsim.fit as fit

    real = fit.load_loss_profile

    def unbroken(name):
        profile = real(name)
        return profile.model_copy(update={"params": profile.params.model_copy(update={
            "data_break_tokens": 0.0, "late_beta": 0.0, "data_break_size_exponent": 0.0})})

    monkeypatch.setattr(fit, "load_loss_profile", unbroken)
    assert fit.main(["--out", str(tmp_path / "p.json"), "--fit-data-break-size"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data-break" in err[0] and not (tmp_path / "p.json").exists()
