"""Bad input: one line naming the field on stderr, exit status 2, never a traceback.

The CLIs run as subprocesses from the repository root on spec files written into
tmp_path; a few cases also go through ``parse_spec`` directly.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from costsim import ScheduleSpec, SpecError, estimate, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

BASE = {
    "name": "small",
    "model": {"d_model": 64, "n_heads": 4, "vocab_size": 100, "seq_len": 32},
    "training": {"micro_batch_size": 2, "batch_size": 4},
    "hardware": {"gpu": "h200", "n_gpus": 1},
    "stages": [{"layers": 2, "tokens": 1024.0, "train": "all"}, {"layers": 4, "tokens": 2048.0, "train": "new"}],
}


def run_cli(*args: str, module: str = "costsim.estimate") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stderr.endswith("\n")
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def mutated(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


# (id, change to BASE, words the one-line message must contain: the field, and the offending part)
BAD_SPECS = [
    ("misspelled stage key", lambda d: rename(d["stages"][0], "layers", "layer"),
     ["layer:", "stages.0.layer", "unknown key"]),
    ("misspelled top-level key", lambda d: rename(d, "model", "modle"), ["modle", "unknown key"]),
    ("unknown training key", lambda d: d["training"].update(batchsize=4), ["training.batchsize", "unknown key"]),
    ("wrong type", lambda d: d["stages"][0].update(layers="three"), ["stages.0.layers", "integer"]),
    ("layers shrink", lambda d: d["stages"][1].update(layers=1), ["stages[1].layers", "only grow"]),
    ("heads do not divide", lambda d: d["model"].update(n_heads=5), ["n_heads", "d_model"]),
    ("kv heads do not divide", lambda d: d["model"].update(n_kv_heads=3), ["n_kv_heads"]),
    ("zero tokens", lambda d: d["stages"][1].update(tokens=0), ["stages.1.tokens", "greater than 0"]),
    ("negative tokens", lambda d: d["stages"][0].update(tokens=-1e9), ["stages.0.tokens", "greater than 0"]),
    ("nan tokens", lambda d: d["stages"][0].update(tokens=float("nan")), ["stages.0.tokens", "finite"]),
    ("inf tokens", lambda d: d["stages"][0].update(tokens=float("inf")), ["stages.0.tokens", "finite"]),
    ("top:K above the layers", lambda d: d["stages"][0].update(train="top:3"), ["stages[0].train", "top:3"]),
    ("bad train policy", lambda d: d["stages"][1].update(train="newest"), ["stages.1.train", "newest"]),
    ("top:0 policy", lambda d: d["stages"][1].update(train="top:0"), ["stages.1.train", "top:0"]),
    ("unknown gpu", lambda d: d["hardware"].update(gpu="h900"), ["hardware.gpu", "h900"]),
    ("batch not a multiple", lambda d: d["training"].update(batch_size=5), ["training.batch_size", "micro_batch_size"]),
    ("batch not a multiple of gpus", lambda d: d["hardware"].update(n_gpus=4), ["training.batch_size", "n_gpus"]),
    ("width shrinks", lambda d: d["stages"][0].update(d_model=128, n_heads=4), ["stages[1].d_model", "only grow"]),
    ("last stage narrower", lambda d: d["stages"][1].update(d_model=32, n_heads=4, growth="widen_random"),
     ["d_model"]),
    ("no stages", lambda d: d.update(stages=[]), ["stages", "at least 1"]),
    ("missing model", lambda d: d.pop("model"), ["model", "missing"]),
    ("zero gpus", lambda d: d["hardware"].update(n_gpus=0), ["hardware.n_gpus"]),
    ("bad precision", lambda d: d["training"].update(precision="fp8"), ["training.precision"]),
]


@pytest.mark.parametrize("change, needles", [pytest.param(c, n, id=i) for i, c, n in BAD_SPECS])
def test_bad_yaml_spec_is_one_line_exit_2(tmp_path, change, needles):
    path = tmp_path / "spec.yaml"
    text = yaml.safe_dump(mutated(change), sort_keys=False)
    path.write_text(text)
    assert_one_line_error(run_cli(path), *needles)


def test_nan_tokens_written_as_yaml_nan(tmp_path):
    path = tmp_path / "nan.yaml"
    text = yaml.safe_dump(BASE, sort_keys=False).replace("tokens: 1024.0", "tokens: .nan")
    assert ".nan" in text
    path.write_text(text)
    assert_one_line_error(run_cli(path), "stages.0.tokens", "finite")


def test_layers_three_written_by_hand(tmp_path):
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False).replace("layers: 2", "layers: three", 1))
    assert_one_line_error(run_cli(path), "stages.0.layers")


@pytest.mark.parametrize("suffix, text, needles", [
    pytest.param(".json", '{"model": {"d_model": 64,}', ["not valid JSON"], id="json"),
    pytest.param(".yaml", "model: {d_model: 64\nstages: [\n", ["not valid YAML"], id="yaml"),
    pytest.param(".yml", "model:\n  d_model: 64\n   n_heads: 4\n", ["not valid YML"], id="yml"),
    pytest.param(".toml", "[model\nd_model = 64\n", ["not valid TOML"], id="toml"),
    pytest.param(".toml", "[model]\nd_model = 64\nd_model = 65\n", ["not valid TOML"], id="toml-duplicate-key"),
    pytest.param(".json", json.dumps({**BASE, "stages": [{"layers": 2, "tokens": float("nan")}]}),
                 ["stages.0.tokens", "finite"], id="json-NaN"),
    pytest.param(".toml", '[model]\nd_model = 64\nn_heads = 4\nvocab_size = 100\nseq_len = 32\n'
                 '[training]\nmicro_batch_size = 1\nbatch_size = 1\n[[stages]]\nlayers = 2\ntokens = inf\n',
                 ["stages.0.tokens", "finite"], id="toml-inf"),
    pytest.param(".yaml", "", ["mapping"], id="empty-file"),
    pytest.param(".yaml", "- layers: 2\n", ["mapping"], id="list-not-mapping"),
    pytest.param(".ini", "[model]\n", [".ini", "unknown spec format"], id="unknown-extension"),
    pytest.param("", "{}", ["unknown spec format"], id="no-extension"),
])
def test_malformed_files_are_one_line_exit_2(tmp_path, suffix, text, needles):
    path = tmp_path / f"spec{suffix}"
    path.write_text(text)
    line = assert_one_line_error(run_cli(path), *needles)
    if "not valid" in needles[0]:
        assert str(path) in line


def test_missing_file(tmp_path):
    path = tmp_path / "nosuch.yaml"
    assert_one_line_error(run_cli(path), str(path), "cannot read")


def test_directory_instead_of_file(tmp_path):
    path = tmp_path / "dir.yaml"
    path.mkdir()
    assert_one_line_error(run_cli(path), str(path), "cannot read")


def test_spec_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00model: 1\n")
    assert_one_line_error(run_cli(path), str(path))


@pytest.mark.parametrize("flags, needles", [
    pytest.param(["--calibration", "nosuch"], ["calibration", "nosuch"], id="calibration"),
    pytest.param(["--gpu", "nosuch"], ["hardware.gpu", "nosuch"], id="gpu"),
    pytest.param(["--n-gpus", "0"], ["hardware.n_gpus"], id="n-gpus-zero"),
    pytest.param(["--n-gpus", "3"], ["training.batch_size"], id="n-gpus-not-dividing"),
])
def test_bad_overrides_are_one_line_exit_2(flags, needles):
    assert_one_line_error(run_cli(EXAMPLES / "paper_s4.yaml", *flags), *needles)


# --- parse_spec directly -----------------------------------------------------------


@pytest.mark.parametrize("change, needles", [pytest.param(c, n, id=i) for i, c, n in BAD_SPECS])
def test_parse_spec_raises_spec_error(change, needles):
    with pytest.raises(SpecError) as info:
        parse_spec(mutated(change))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("data", [None, [], "model: x", 3])
def test_parse_spec_rejects_non_mappings(data):
    with pytest.raises(SpecError, match="mapping"):
        parse_spec(data)


def test_spec_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_spec(mutated(lambda d: d["stages"][0].update(layers=0)))


# --- valid specs -------------------------------------------------------------------


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def to_toml(data: dict) -> str:
    """Enough TOML for a spec: scalars, tables, and the stages as an array of tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, (dict, list))]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]", *(f"{k} = {_toml_value(v)}" for k, v in value.items())]
        elif isinstance(value, list):
            for item in value:
                lines += ["", f"[[{key}]]", *(f"{k} = {_toml_value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


def _example_data(name: str) -> dict:
    path = EXAMPLES / name
    return yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())


@pytest.mark.parametrize("data", [
    pytest.param(BASE, id="small"),
    pytest.param(_example_data("paper_s4.yaml"), id="paper_s4"),
    pytest.param(_example_data("full_gpt2.json"), id="full_gpt2"),
])
def test_three_formats_load_to_equal_specs(tmp_path, data):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "s.json").write_text(json.dumps(data))
    (tmp_path / "s.toml").write_text(to_toml(data))
    specs = [load_spec(tmp_path / f"s.{ext}") for ext in ("yaml", "json", "toml")]
    assert all(isinstance(s, ScheduleSpec) for s in specs)
    assert specs[0] == specs[1] == specs[2] == parse_spec(data)
    # and the CLI gives the same numbers for all three
    outputs = [json.loads(run_cli(tmp_path / f"s.{ext}", "--json").stdout) for ext in ("yaml", "json", "toml")]
    assert outputs[0] == outputs[1] == outputs[2]


def test_shipped_examples_load_and_estimate():
    for path in sorted(EXAMPLES.iterdir()):
        spec = load_spec(path)
        result = estimate(spec)
        assert len(result.stages) == len(spec.stages)
        assert result.total.fits_in_memory


def test_uppercase_extension_loads(tmp_path):
    path = tmp_path / "spec.YAML"
    path.write_text(yaml.safe_dump(BASE))
    assert load_spec(path) == parse_spec(BASE)


# --- the CLIs' successful output ---------------------------------------------------


def test_schema_cli_prints_json_schema():
    result = run_cli(module="costsim.schema")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    schema = json.loads(result.stdout)
    assert "stages" in schema["properties"]
    assert {"model", "training", "hardware", "stages"} <= set(schema["properties"])
    assert set(schema["required"]) >= {"model", "training", "stages"}


def test_estimate_cli_json_output():
    result = run_cli(EXAMPLES / "paper_s4.yaml", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = json.loads(result.stdout)
    total_keys = {"tokens", "flops_counted", "flops_model", "time_s", "cost_usd", "peak_memory_bytes"}
    stage_keys = {"layers", "tokens", "steps", "flops_counted_per_step", "flops_model_per_step", "step_time_s",
                  "peak_memory_bytes", "fits_in_memory"}
    assert total_keys <= set(out["total"])
    assert len(out["stages"]) == 8
    for stage in out["stages"]:
        assert stage_keys <= set(stage)
        assert isinstance(stage["fits_in_memory"], bool)
        assert isinstance(stage["steps"], int) and isinstance(stage["flops_counted_per_step"], int)
    assert [s["layers"] for s in out["stages"]] == [3, 6, 6, 9, 9, 12, 12, 12]
    assert out["total"]["tokens"] == pytest.approx(sum(s["tokens"] for s in out["stages"]))
    assert out["total"]["flops_counted"] == pytest.approx(
        sum(s["steps"] * s["flops_counted_per_step"] for s in out["stages"]), rel=1e-12)
    assert out["total"]["peak_memory_bytes"] == max(s["peak_memory_bytes"] for s in out["stages"])
    # the JSON is the library's result plus the predicted loss curve
    loss = out.pop("loss")
    assert out == json.loads(json.dumps(estimate(load_spec(EXAMPLES / "paper_s4.yaml")).model_dump()))
    assert loss["final"]["loss"] > 0 and len(loss["points"]) >= 64


def test_estimate_cli_table_output():
    result = run_cli(EXAMPLES / "width_and_depth.toml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "width and depth growth" in result.stdout and "total" in result.stdout


HUGE = {
    "name": "huge on one small GPU",
    "model": {"d_model": 8192, "n_heads": 64, "vocab_size": 50304, "seq_len": 4096},
    "training": {"micro_batch_size": 8, "batch_size": 8},
    "hardware": {"gpu": "a100-40gb", "n_gpus": 1},
    "stages": [{"layers": 80, "tokens": 1e9}],
}


def test_huge_model_does_not_fit(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(HUGE))
    result = run_cli(path, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    (stage,) = out["stages"]
    assert stage["fits_in_memory"] is False and out["total"]["fits_in_memory"] is False
    assert isinstance(stage["fit_suggestion"], str) and stage["fit_suggestion"].strip()
    assert stage["peak_memory_bytes"] > 40e9
    # the table says so too
    table = run_cli(path)
    assert table.returncode == 0 and "NO" in table.stdout and "does not fit" in table.stdout


def test_fit_suggestion_fits_when_followed():
    """GPT-2 small with 64 sequences per micro-batch does not fit 40 GB; the suggested micro-batch does."""
    data = {
        "model": {"d_model": 768, "n_heads": 12, "vocab_size": 50304, "seq_len": 1024},
        "training": {"micro_batch_size": 64, "batch_size": 64},
        "hardware": {"gpu": "a100-40gb"},
        "stages": [{"layers": 12, "tokens": 1e9}],
    }
    (stage,) = estimate(parse_spec(data)).stages
    assert not stage.fits_in_memory
    assert stage.fit_suggestion.startswith("micro_batch_size: ")
    micro = int(stage.fit_suggestion.removeprefix("micro_batch_size: ").split(",")[0])
    assert 0 < micro < 64 and 64 % micro == 0
    data["training"]["micro_batch_size"] = micro
    if "recompute: full" in stage.fit_suggestion:
        data["training"]["recompute"] = "full"
    (followed,) = estimate(parse_spec(data)).stages
    assert followed.fits_in_memory and followed.fit_suggestion is None


def test_model_level_error_names_the_path_once():
    with pytest.raises(SpecError) as info:
        parse_spec(mutated(lambda d: d["model"].update(n_heads=5)))
    assert "model: model:" not in str(info.value)


@pytest.mark.parametrize("value, text", [
    (9.996e17, "1EFLOP"), (4.44e12, "4.44TFLOP"), (999.4, "999FLOP"), (999.6, "1kFLOP"), (3.2e22, "32ZFLOP"),
    (0.5, "0.5FLOP"),
])
def test_estimate_prints_three_digits_with_the_right_prefix(value, text):
    from costsim.text import si

    assert si(value, "FLOP") == text


@pytest.mark.parametrize("module, args", [("validate.run", ["examples/tiny_three_stage.yaml"]),
                                          ("validate.measure", ["--device", "cpu"])])
def test_a_training_command_without_torch_says_how_to_install_it(module, args, tmp_path):
    """The base install (planning only) has no torch; the training commands must say so
    in one line instead of a traceback."""
    code = ("import runpy, sys; sys.modules['torch'] = None; "  # None in sys.modules: import torch fails
            f"sys.argv = [{module!r}, *{args!r}, '--db', {str(tmp_path / 'x.duckdb')!r}]; "
            f"runpy.run_module({module!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: this command needs torch") and "pip install torch" in line


@pytest.mark.parametrize("where, key, value, says", [
    ("model", "seq_len", 2**40, "beyond any real run"),
    ("model", "vocab_size", 2**62, "beyond any real run"),
    ("model", "d_model", 2**32, "beyond any real run"),
    ("training", "batch_size", 2**40, "beyond any real run"),
    ("training", "seed", 2**63, "less than"),
    ("hardware", "n_gpus", 2**40, "beyond any real run"),
])
def test_sizes_beyond_any_real_run_are_refused_not_wrapped(where, key, value, says):
    """Before these limits, seq_len 2^40 printed negative counted FLOPs and d_model 2^32
    less memory than 2^20 (int64 wrap-around), with exit 0."""
    data = {"model": {"d_model": 64, "n_heads": 4, "vocab_size": 256, "seq_len": 64},
            "training": {"micro_batch_size": 8, "batch_size": 8}, "stages": [{"layers": 2, "tokens": 1e6}]}
    data.setdefault(where, {})[key] = value
    with pytest.raises(SpecError, match=says) as err:
        parse_spec(data)
    assert f"{where}.{key}" in str(err.value) and "\n" not in str(err.value)


def test_tokens_beyond_any_real_run_and_huge_micro_batches_are_refused():
    base = {"model": {"d_model": 8192, "n_heads": 64, "vocab_size": 128256, "seq_len": 65536},
            "training": {"micro_batch_size": 8, "batch_size": 8}, "stages": [{"layers": 2, "tokens": 1e6}]}
    with pytest.raises(SpecError, match="beyond any real run"):
        parse_spec({**base, "stages": [{"layers": 2, "tokens": 1e308}]})
    with pytest.raises(SpecError, match="micro-batch of this shape"):
        parse_spec({**base, "training": {"micro_batch_size": 2**20, "batch_size": 2**20},
                    "stages": [{"layers": 4096, "tokens": 1e9}]})
    # the largest published dense run still estimates, exactly in counted FLOPs per micro-batch
    big = {"model": {"d_model": 16384, "n_heads": 128, "n_kv_heads": 8, "vocab_size": 128256, "seq_len": 8192,
                     "d_ff": 53248, "mlp": "swiglu"},
           "training": {"micro_batch_size": 1, "batch_size": 2048}, "hardware": {"gpu": "h100-sxm", "n_gpus": 2048},
           "stages": [{"layers": 126, "tokens": 1.5e13}]}
    total = estimate(parse_spec(big)).total
    assert 3e25 < total.flops_counted < 5e25 and total.peak_memory_bytes > 0


def test_a_huge_batch_that_does_not_fit_is_answered_quickly():
    """The largest micro-batch that fits is searched over the batch's divisors, not every
    number below it (2^24 candidates took minutes)."""
    import time

    spec = parse_spec({"model": {"d_model": 1024, "n_heads": 16, "vocab_size": 50304, "seq_len": 1024},
                       "training": {"micro_batch_size": 2**14, "batch_size": 2**24},
                       "stages": [{"layers": 24, "tokens": 1e12}]})
    started = time.monotonic()
    stage = estimate(spec).stages[0]
    assert not stage.fits_in_memory and stage.fit_suggestion.startswith("micro_batch_size: ")
    assert time.monotonic() - started < 10


def test_an_inline_gpu_outside_any_real_one_is_refused_naming_the_field():
    """A tiny rate or a huge price printed infinite times and costs with exit 0."""
    gpu = {"name": "x", "peak_bf16_flops_per_s": 1e-300, "peak_tf32_flops_per_s": 1e12,
           "hbm_bandwidth_bytes_per_s": 1e12, "memory_bytes": 8e10, "interconnect_bandwidth_bytes_per_s": 1e9,
           "price_per_gpu_hour": 2.0}
    base = {"model": {"d_model": 64, "n_heads": 4, "vocab_size": 256, "seq_len": 64},
            "training": {"micro_batch_size": 8, "batch_size": 8}, "stages": [{"layers": 2, "tokens": 1e6}]}
    with pytest.raises(SpecError, match=r"^hardware\.gpu\.peak_bf16_flops_per_s: "):
        parse_spec({**base, "hardware": {"gpu": gpu}})
    with pytest.raises(SpecError, match="price_per_gpu_hour"):
        parse_spec({**base, "hardware": {"gpu": {**gpu, "peak_bf16_flops_per_s": 1e15, "price_per_gpu_hour": 1e300}}})


def test_a_stage_of_part_of_a_step_is_said_not_silently_rounded(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("model: {d_model: 64, n_heads: 4, vocab_size: 256, seq_len: 64}\n"
                    "training: {micro_batch_size: 8, batch_size: 8}\nstages: [{layers: 2, tokens: 1}]\n")
    result = run_cli(path)
    assert result.returncode == 0
    assert "stage 0: 1 tokens is not a whole number of 512-token steps; costed as 1 step (512 tokens)" in result.stdout
