"""``costsim.export``: a plan written as nanoGPT or transformers files reads back
(``load_exported``) as the same plan: shapes, whole steps, tokens, batches and learning
rates per stage, with integers written as integers; what a format cannot express is
refused in one line that names it and the format that can.
"""

from __future__ import annotations

import ast
import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_properties import spec_dicts

from costsim.engine import steps_per_stage
from costsim.export import FORMATS, MANIFEST, README, ExportError, export_plan, load_exported
from costsim.export.cli import main
from costsim.lr import lr_at
from costsim.spec import ScheduleSpec, load_spec, parse_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").iterdir())

# Several stages: narrow then widened, deepened with the new blocks trained alone and
# frozen embeddings, a fresh optimizer, and tokens that are not whole steps.
GROWING = {
    "name": "grow wide then deep",
    "model": {"d_model": 128, "n_heads": 4, "vocab_size": 512, "seq_len": 64, "bias": True},
    "training": {"micro_batch_size": 4, "batch_size": 16, "precision": "bf16-mixed", "grad_clip": 1.0,
                 "weight_decay": 0.05, "beta2": 0.99, "lr_schedule": {"kind": "constant", "lr": 1e-3,
                                                                      "warmup_steps": 5}},
    "hardware": {"gpu": "a100-80gb", "n_gpus": 2},
    "stages": [
        {"name": "narrow", "layers": 2, "d_model": 64, "n_heads": 2, "tokens": 20 * 1024},
        {"name": "widen", "layers": 2, "growth": "widen_preserving", "tokens": 10 * 1024 + 1},
        {"name": "deepen, new only", "layers": 4, "growth": "stack_copy", "train": "new",
         "freeze_embeddings": True, "tokens": 8 * 1024},
        {"name": "all", "layers": 4, "tokens": 30 * 1024 - 7, "reset_optimizer": True},
    ],
}


def spec_of(data: dict, **training) -> ScheduleSpec:
    data = copy.deepcopy(data)
    data["training"].update(training)
    return parse_spec(data)


def learning_rates(spec: ScheduleSpec) -> np.ndarray:
    """Every optimizer step's learning rate, as costsim's trainer sets it."""
    t = spec.training
    steps = steps_per_stage(spec)
    if t.lr_reset_per_stage:
        return np.concatenate([np.atleast_1d(lr_at(t.lr_schedule, np.arange(n), n)) for n in steps])
    return np.atleast_1d(lr_at(t.lr_schedule, np.arange(sum(steps)), sum(steps)))


def assert_same_plan(spec: ScheduleSpec, loaded: ScheduleSpec) -> None:
    """What the trainer runs is what was planned: shapes, whole steps, tokens, batches, LR."""
    m, back = spec.model, loaded.model
    assert (back.vocab_size, back.seq_len) == (m.vocab_size, m.seq_len)
    assert [spec.stage_width(s) for s in spec.stages] == [loaded.stage_width(s) for s in loaded.stages]
    assert [s.layers for s in spec.stages] == [s.layers for s in loaded.stages]
    assert [spec.stage_kv_heads(s) for s in spec.stages] == [loaded.stage_kv_heads(s) for s in loaded.stages]
    steps = steps_per_stage(spec)
    assert steps_per_stage(loaded) == steps
    per_step = spec.training.batch_size * m.seq_len
    assert [s.tokens for s in loaded.stages] == [n * per_step for n in steps]  # whole steps, rounded as costed
    t, u = spec.training, loaded.training
    for name in ("micro_batch_size", "batch_size", "precision", "recompute", "parallelism", "weight_decay", "beta1",
                 "beta2", "eps", "grad_clip", "lr_reset_per_stage"):
        assert getattr(u, name) == getattr(t, name), name
    assert (u.lr_schedule.lr, u.lr_schedule.warmup_steps) == (t.lr_schedule.lr, t.lr_schedule.warmup_steps)
    np.testing.assert_allclose(learning_rates(loaded), learning_rates(spec), rtol=1e-12, atol=0)
    assert loaded.hardware == spec.hardware
    assert [spec.growth_operators(i) for i in range(len(spec.stages))] == \
        [loaded.growth_operators(i) for i in range(len(loaded.stages))]
    for field in ("train", "freeze_embeddings", "reset_optimizer", "name"):
        assert [getattr(s, field) for s in loaded.stages] == [getattr(s, field) for s in spec.stages], field


def written_values(directory: Path, fmt: str) -> list[dict]:
    """Every value in the trainer files, read independently of costsim.export."""
    if fmt == "nanogpt":
        return [{node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(path.read_text()).body}
                for path in sorted(directory.glob("stage_*.py"))]
    return [json.loads(path.read_text()) for path in sorted(directory.glob("stage_*/*.json"))]


INTEGER_KEYS = {"n_layer", "n_head", "n_embd", "block_size", "vocab_size", "batch_size", "gradient_accumulation_steps",
                "max_iters", "warmup_iters", "lr_decay_iters", "eval_interval", "per_device_train_batch_size",
                "max_steps", "warmup_steps", "seed", "n_inner", "n_positions", "num_hidden_layers", "hidden_size",
                "num_attention_heads", "num_key_value_heads", "intermediate_size", "max_position_embeddings"}


def assert_integers(directory: Path, fmt: str) -> None:
    for values in written_values(directory, fmt):
        for key in INTEGER_KEYS & values.keys():
            assert type(values[key]) is int, f"{key} = {values[key]!r}"


def export_and_load(spec: ScheduleSpec, fmt: str, directory: Path) -> ScheduleSpec:
    export_plan(spec, fmt, directory)
    assert_integers(directory, fmt)
    return load_exported(directory, fmt)


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_round_trip(example: Path, fmt: str, tmp_path: Path) -> None:
    spec = load_spec(example)
    try:
        loaded = export_and_load(spec, fmt, tmp_path / "out")
    except ExportError as exc:
        # only the swiglu / GQA examples (Llama-shaped) are beyond nanoGPT, and the refusal says where to go
        assert fmt == "nanogpt" and example.name in ("width_and_depth.toml", "long_context_cp.yaml")
        assert "swiglu" in str(exc) and "use --to hf" in str(exc) and "\n" not in str(exc)
        return
    assert_same_plan(spec, loaded)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_growing_plan_round_trips_and_says_what_to_do_between_stages(fmt: str, tmp_path: Path) -> None:
    spec = spec_of(GROWING)
    result = export_plan(spec, fmt, tmp_path / "out")
    assert_same_plan(spec, load_exported(tmp_path / "out"))
    assert_integers(tmp_path / "out", fmt)
    readme = (tmp_path / "out" / README).read_text()
    assert "Neither the trainer nor this export grows a model" in readme
    assert "by widen_preserving" in readme and "by stack_copy" in readme
    assert "train: new = freeze the bottom 2 blocks" in readme and "freeze the token and position embeddings" in readme
    assert "start a fresh AdamW state" in readme
    assert readme.count("run: ") == len(spec.stages)
    # stages 1 and 3 are not whole steps of 1,024 tokens: said, and rounded up as costsim.estimate costs them
    rounded = [n for n in result.notes if "not a whole number" in n]
    assert len(rounded) == 2 and "stage 1" in rounded[0] and "11 steps (11,264 tokens)" in rounded[0]


def test_nanogpt_files_follow_the_global_iteration(tmp_path: Path) -> None:
    spec = spec_of(GROWING)
    export_plan(spec, "nanogpt", tmp_path)
    files = written_values(tmp_path, "nanogpt")
    ends = np.cumsum(steps_per_stage(spec)).tolist()
    assert [f["max_iters"] for f in files] == ends
    assert [f["init_from"] for f in files] == ["scratch"] + ["resume"] * (len(ends) - 1)
    assert all(f["max_iters"] % f["eval_interval"] == 0 for f in files)  # ckpt.pt is written at each stage's end
    assert all(f["gradient_accumulation_steps"] * f["batch_size"] == spec.training.batch_size for f in files)
    assert all(f["lr_decay_iters"] == ends[-1] and f["dropout"] == 0.0 for f in files)


def test_hf_runs_per_device_batches_and_stage_steps(tmp_path: Path) -> None:
    spec = spec_of(GROWING)
    export_plan(spec, "hf", tmp_path)
    runs = [json.loads((tmp_path / f"stage_{i:02d}" / "training_args.json").read_text()) for i in range(4)]
    configs = [json.loads((tmp_path / f"stage_{i:02d}" / "config.json").read_text()) for i in range(4)]
    assert [r["max_steps"] for r in runs] == steps_per_stage(spec)
    assert all(r["per_device_train_batch_size"] * r["gradient_accumulation_steps"] * 2 == 16 for r in runs)
    assert [r["warmup_steps"] for r in runs] == [5, 0, 0, 0]  # the global warmup is the first run's
    assert [c["n_embd"] for c in configs] == [64, 128, 128, 128] and configs[0]["model_type"] == "gpt2"


@pytest.mark.parametrize("schedule", [
    {"kind": "cosine", "lr": 6e-4, "warmup_steps": 3, "min_lr_ratio": 0.1},
    {"kind": "wsd", "lr": 6e-4, "warmup_steps": 2, "decay_fraction": 0.3, "min_lr_ratio": 0.05},
    {"kind": "constant", "lr": 6e-4, "warmup_steps": 4},
])
@pytest.mark.parametrize("reset", [False, True])
def test_schedules_round_trip_or_are_refused(schedule: dict, reset: bool, tmp_path: Path) -> None:
    """A schedule across stages is nanoGPT's (global iteration); one restarted per stage is
    transformers' (one run a stage); a constant rate without warmup either way."""
    spec = spec_of(GROWING, lr_schedule=schedule, lr_reset_per_stage=reset)
    for fmt in FORMATS:
        out = tmp_path / fmt
        try:
            loaded = export_and_load(spec, fmt, out)
        except ExportError as exc:
            expected = {"nanogpt": schedule["kind"] == "wsd" or reset,
                        "hf": not reset and schedule["kind"] != "constant"}
            assert expected[fmt], str(exc)
            assert "schedule" in str(exc) and "\n" not in str(exc)
            continue
        assert_same_plan(spec, loaded)


# --- refusals and bad input --------------------------------------------------------------------


@pytest.mark.parametrize(("change", "said"), [
    ({"mlp": "swiglu"}, "model.mlp swiglu"),
    ({"tied_embeddings": False}, "untied embeddings"),
    ({"n_kv_heads": 2, "mlp": "swiglu"}, "grouped key/value heads"),
    ({"d_ff": 384}, "d_ff other than 4 x d_model"),
])
def test_nanogpt_refuses_what_it_cannot_build_and_points_to_hf(change: dict, said: str, tmp_path: Path) -> None:
    data = copy.deepcopy(GROWING)
    data["model"].update(change)
    if "d_ff" in change:
        data["stages"][0]["d_ff"] = 192
    with pytest.raises(ExportError) as caught:
        export_plan(parse_spec(data), "nanogpt", tmp_path / "out")
    message = str(caught.value)
    assert message.startswith("nanogpt cannot express this plan: ") and said in message
    assert message.endswith("; use --to hf") and "\n" not in message
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_plan_no_format_expresses_says_so(tmp_path: Path) -> None:
    data = copy.deepcopy(GROWING)
    data["model"]["n_kv_heads"] = 2  # a GELU MLP with grouped key/value heads: neither GPT-2 nor a gated family
    for fmt in FORMATS:
        with pytest.raises(ExportError, match="key/value heads.*; no format costsim exports can$"):
            export_plan(parse_spec(data), fmt, tmp_path / fmt)


def test_cli_writes_and_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(GROWING))
    out = tmp_path / "export"
    assert main([str(plan), "--to", "nanogpt", "--out", str(out)]) == 0
    assert "does not grow models" in capsys.readouterr().out
    assert main([str(plan), "--to", "megatron", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown format; choose one of" in err and "nanogpt" in err and "hf" in err
    assert main([str(plan), "--to", "hf", "--out", str(out)]) == 2  # not empty
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and "--force" in err
    assert main([str(tmp_path / "missing.yaml"), "--to", "hf", "--out", str(tmp_path / "y")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_force_replaces_a_previous_export_and_nothing_else(tmp_path: Path) -> None:
    spec = spec_of(GROWING)
    export_plan(spec, "nanogpt", tmp_path)
    (tmp_path / "mine.txt").write_text("keep")
    one_stage = parse_spec({**copy.deepcopy(GROWING), "stages": [{"layers": 4, "tokens": 4096}]})
    with pytest.raises(ExportError, match="not empty"):
        export_plan(one_stage, "nanogpt", tmp_path)
    export_plan(one_stage, "nanogpt", tmp_path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [README, MANIFEST, "mine.txt", "stage_00.py"]
    assert load_exported(tmp_path).stages[0].layers == 4


def test_out_must_be_a_creatable_folder(tmp_path: Path) -> None:
    spec = spec_of(GROWING)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_plan(spec, "hf", tmp_path / "file")
    with pytest.raises(ExportError, match="does not exist"):
        export_plan(spec, "hf", tmp_path / "no" / "such")


def test_reading_back_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="costsim export folder"):
        load_exported(tmp_path)
    export_plan(spec_of(GROWING), "nanogpt", tmp_path / "n")
    with pytest.raises(ExportError, match="holds a nanogpt export"):
        load_exported(tmp_path / "n", "hf")
    stage = tmp_path / "n" / "stage_01.py"
    stage.write_text(stage.read_text() + "import os\n")  # a config is data: never executed
    with pytest.raises(ExportError, match="only 'name = value' lines"):
        load_exported(tmp_path / "n")
    stage.write_text(stage.read_text().replace("import os\n", "n_layers = 3\n"))
    with pytest.raises(ExportError, match="n_layers is no train.py setting"):
        load_exported(tmp_path / "n")


# --- every valid plan: exported and read back, or refused in one line -----------------------------

SCHEDULES = st.sampled_from([
    {"kind": "constant", "lr": 6e-4, "warmup_steps": 0},
    {"kind": "constant", "lr": 3e-3, "warmup_steps": 2},
    {"kind": "cosine", "lr": 1e-3, "warmup_steps": 1, "min_lr_ratio": 0.1},
    {"kind": "wsd", "lr": 1e-3, "warmup_steps": 0, "decay_fraction": 0.2},
])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=spec_dicts(max_stages=4), schedule=SCHEDULES, reset=st.booleans(), gpt=st.booleans())
def test_every_plan_round_trips_or_is_refused(fmt: str, data: dict, schedule: dict, reset: bool, gpt: bool) -> None:
    for stage in data["stages"]:  # tokens within a few steps' reach keep the check fast
        stage["tokens"] = stage["tokens"] % 1e6 + 1
    if gpt:  # half the plans nanoGPT's GPT can build, so its round trip is drawn as often as its refusals
        model = data["model"]
        model.update(mlp="gelu", tied_embeddings=True)
        model.pop("n_kv_heads", None)
        model.pop("d_ff", None)
        for stage in data["stages"]:
            if "d_ff" in stage:
                stage["d_ff"] = 4 * stage["d_model"]
    spec = spec_of(data, lr_schedule=schedule, lr_reset_per_stage=reset)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            loaded = export_and_load(spec, fmt, Path(tmp) / "out")
        except ExportError as exc:
            assert str(exc).startswith(f"{fmt} cannot express this plan: ") and "\n" not in str(exc)
            event(f"{fmt}: refused")
            return
    event(f"{fmt}: round trip")
    assert_same_plan(spec, loaded)
