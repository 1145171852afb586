"""External models: Hugging Face configs and shipped presets mapped onto ModelSpec.

The parameter counts are the ones each family publishes (model cards, the Pythia
paper's table), reproduced exactly by costsim's one parameter formula
(``costsim.flops.parameter_counts``); features costsim cannot count are refused in one
line; a preset or config in a spec expands before validation, overrides on top; and a
spec with several mistakes lists every one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from costsim import SpecError, parse_spec
from costsim.engine import stage_shape
from costsim.errors import MAX_LISTED_MISTAKES
from costsim.estimate import main as estimate_main
from costsim.flops import parameter_counts
from costsim.models import ExternalModel, from_hf_config, load_preset, preset_config, preset_names
from costsim.spec import ModelSpec, ScheduleSpec

TRAINING = {"micro_batch_size": 1, "batch_size": 1}

# (preset, total parameters the family publishes)
PUBLISHED = [
    ("gpt2", 124_439_808),  # tied embeddings, 1024 learned positions, biases everywhere
    ("gpt2-medium", 354_823_168),
    ("gpt2-large", 774_030_080),
    ("gpt2-xl", 1_557_611_200),
    ("pythia-160m", 162_322_944),  # Pythia paper, Table 1 "Total params"; untied, rotary
    ("pythia-410m", 405_334_016),
    ("pythia-1b", 1_011_781_632),
    ("llama-3-8b", 8_030_261_248),  # RMSNorm, GQA 32:8, SwiGLU, untied, no biases
    ("llama-3-70b", 70_553_706_496),
    ("mistral-7b", 7_241_732_096),  # v0.1: Llama's blocks with a 32,000 vocabulary
    ("qwen2-7b", 7_615_616_512),  # biases on q/k/v only
]
# Pythia's "non-embedding params" leave out both embedding matrices; costsim's
# non-embedding count keeps an untied LM head (it is a matmul every token runs).
PYTHIA_NON_EMBEDDING = {"pythia-160m": 85_056_000, "pythia-410m": 302_311_424, "pythia-1b": 805_736_448}


def one_stage(model: dict | ModelSpec, layers: int) -> ScheduleSpec:
    if isinstance(model, ModelSpec):
        model = model.model_dump(exclude_none=True)
    return parse_spec({"model": model, "training": TRAINING, "stages": [{"layers": layers, "tokens": 1e6}]})


def counts(spec: ScheduleSpec):
    """Parameter counts of the final stage, by the engine's one formula."""
    c = parameter_counts(stage_shape(spec))
    return int(c.total[-1]), int(c.non_embedding[-1]), int(c.trainable[-1])


# --- published parameter counts ----------------------------------------------------


@pytest.mark.parametrize("name, total", PUBLISHED, ids=[p for p, _ in PUBLISHED])
def test_each_preset_has_its_published_parameter_count(name, total):
    external = load_preset(name)
    spec = one_stage(external.model, external.layers)
    assert counts(spec)[0] == total
    assert counts(spec)[2] == total  # everything trains
    if name in PYTHIA_NON_EMBEDDING:
        head = external.model.d_model * external.model.vocab_size
        assert counts(spec)[1] - head == PYTHIA_NON_EMBEDDING[name]


@pytest.mark.parametrize("name", preset_names())
def test_a_preset_is_its_config_mapped(name):
    """A preset is nothing but a published config.json, named by its source."""
    config = preset_config(name)
    assert config["_source"].startswith("https://huggingface.co/") and config["_source"].endswith("config.json")
    assert from_hf_config(config).model == load_preset(name).model
    assert load_preset(name).layers == from_hf_config(config).layers > 0


def test_presets_cover_the_families():
    families = {preset_config(n)["model_type"] for n in preset_names()}
    assert families == {"gpt2", "gpt_neox", "llama", "mistral", "qwen2"}
    assert {"gpt2", "gpt2-xl", "pythia-160m", "llama-3-8b", "llama-3-70b", "mistral-7b"} <= set(preset_names())


def test_mapping_per_family():
    gpt2, pythia, llama, qwen = (load_preset(n).model for n in ("gpt2", "pythia-160m", "llama-3-8b", "qwen2-7b"))
    assert (gpt2.tied_embeddings, gpt2.bias, gpt2.norm, gpt2.positions, gpt2.mlp) == (True, True, "layernorm",
                                                                                       "learned", "gelu")
    assert gpt2.d_ff is None and gpt2.seq_len == 1024 and gpt2.vocab_size == 50257
    assert (pythia.tied_embeddings, pythia.bias, pythia.positions, pythia.d_ff) == (False, True, "rotary", 3072)
    assert (llama.n_kv_heads, llama.mlp, llama.norm, llama.bias, llama.qkv_bias) == (8, "swiglu", "rmsnorm", False,
                                                                                       False)
    assert (qwen.qkv_bias, qwen.bias, qwen.n_kv_heads) == (True, False, 4)


def test_accepted_features_say_why():
    """Parallel residual and partial rotary change nothing costsim counts: accepted, with a note."""
    notes = load_preset("pythia-160m").notes
    assert any(n.startswith("use_parallel_residual:") and "same matmuls" in n for n in notes)
    assert any(n.startswith("rotary_pct:") and "no parameters" in n for n in notes)
    assert load_preset("llama-3-8b").notes == ()  # rope_scaling is null there


def test_the_defaults_cost_exactly_what_they_did():
    """The variant fields default to the reference GPT: writing them changes nothing."""
    plain = {"d_model": 64, "n_heads": 4, "vocab_size": 100, "seq_len": 32}
    explicit = {**plain, "norm": "layernorm", "positions": "learned", "qkv_bias": False}
    a, b = stage_shape(one_stage(plain, 2)), stage_shape(one_stage(explicit, 2))
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    # 2 blocks of 12d^2 + 4 LayerNorm... and 132 tokens+positions of embeddings, tied
    assert counts(one_stage(plain, 2))[0] == 2 * (12 * 64 * 64 + 4 * 64) + 2 * 64 + (100 + 32) * 64


# --- what is refused, in one line ----------------------------------------------------


def _gpt2(**changes) -> dict:
    return {**preset_config("gpt2"), **changes}


def _mistral(**changes) -> dict:
    return {**preset_config("mistral-7b"), **changes}


@pytest.mark.parametrize("config, says", [
    pytest.param({**_mistral(), "num_local_experts": 8, "num_experts_per_tok": 2}, ["num_local_experts=8",
                 "mixture of experts", "not representable"], id="moe"),
    pytest.param(_mistral(head_dim=256), ["head_dim 256", "another head width"], id="head-dim"),
    pytest.param({**preset_config("llama-3-8b"), "attention_bias": True}, ["attention_bias=true",
                 "not representable"], id="llama-attention-bias"),
    pytest.param({**preset_config("llama-3-8b"), "mlp_bias": True}, ["mlp_bias=true"], id="llama-mlp-bias"),
    pytest.param({**preset_config("pythia-160m"), "attention_bias": False}, ["attention_bias=false"],
                 id="neox-attention-without-bias"),
    pytest.param(_gpt2(add_cross_attention=True), ["cross-attention"], id="cross-attention"),
    pytest.param(_gpt2(activation_function="relu"), ["activation_function \"relu\"", "gelu_new"], id="activation"),
    pytest.param({**preset_config("llama-3-8b"), "hidden_act": "gelu"}, ["hidden_act \"gelu\"", "silu"],
                 id="gated-gelu"),
    pytest.param(_gpt2(model_type="gemma"), ["model_type \"gemma\"", "gpt2, gpt_neox, llama, mistral, qwen2"],
                 id="unknown-family"),
    pytest.param({k: v for k, v in _gpt2().items() if k != "model_type"}, ["no model_type"], id="no-family"),
    pytest.param({k: v for k, v in _gpt2().items() if k != "n_embd"}, ["no n_embd"], id="missing-key"),
    pytest.param(_gpt2(n_head="12"), ["n_head must be a positive integer", "\"12\""], id="string-number"),
    pytest.param(_gpt2(n_layer=0), ["n_layer must be a positive integer"], id="zero-layers"),
    pytest.param(_gpt2(n_layer=10**6), ["beyond any real run"], id="too-deep"),
    pytest.param(_gpt2(n_head=7), ["n_heads 7 does not divide d_model 768"], id="heads-do-not-divide"),
    pytest.param(_gpt2(tie_word_embeddings="yes"), ["tie_word_embeddings"], id="tie-not-bool"),
])
def test_what_costsim_cannot_count_is_one_line(config, says):
    with pytest.raises(SpecError) as info:
        from_hf_config(config)
    message = str(info.value)
    assert "\n" not in message
    for needle in says:
        assert needle in message, (needle, message)


def test_a_sliding_window_is_costed_only_where_it_covers_the_sequence():
    """Mistral v0.1 attends within 4096 tokens; over a longer sequence costsim's full
    causal attention would overcount, so the default is the window and more is refused."""
    assert load_preset("mistral-7b").model.seq_len == 4096
    assert load_preset("mistral-7b", {"seq_len": 2048}).model.seq_len == 2048
    with pytest.raises(SpecError, match="longer than the model's sliding window 4096"):
        load_preset("mistral-7b", {"seq_len": 8192})
    # Qwen2 has a window key that is switched off
    assert load_preset("qwen2-7b").model.seq_len == 131072
    windowed = {**preset_config("qwen2-7b"), "use_sliding_window": True, "sliding_window": 4096}
    assert from_hf_config(windowed).model.seq_len == 4096


def test_unknown_preset_names_them_all():
    with pytest.raises(SpecError, match="unknown model preset \"gpt5\"; presets: gpt2, "):
        load_preset("gpt5")


def test_a_config_file_or_its_folder(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(preset_config("pythia-410m")))
    by_file, by_folder = from_hf_config(folder / "config.json"), from_hf_config(folder)
    assert isinstance(by_file, ExternalModel) and by_file.model == by_folder.model == load_preset("pythia-410m").model
    assert by_file.source == str(folder / "config.json") and by_file.layers == 24
    (tmp_path / "bad.json").write_text("{not json")
    for path, says in ((tmp_path / "nosuch.json", "cannot read"), (tmp_path / "bad.json", "not valid JSON")):
        with pytest.raises(SpecError, match=says) as info:
            from_hf_config(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


# --- in a spec -------------------------------------------------------------------------


def test_a_preset_in_a_spec_expands_to_its_fields():
    spec = one_stage({"preset": "llama-3-8b"}, 32)
    assert spec.model == load_preset("llama-3-8b").model
    assert counts(spec)[0] == 8_030_261_248
    # a spec dumps as plain fields and reloads to itself
    assert parse_spec(spec.model_dump()) == spec


def test_overrides_apply_on_top_of_the_preset():
    spec = one_stage({"preset": "gpt2", "seq_len": 512, "vocab_size": 50304}, 12)
    assert (spec.model.seq_len, spec.model.vocab_size, spec.model.d_model) == (512, 50304, 768)
    # the learned position table follows seq_len, the vocabulary its override
    assert counts(spec)[0] == 124_439_808 - 512 * 768 + (50304 - 50257) * 768


@pytest.mark.parametrize("model, says", [
    pytest.param({"preset": "gpt2", "seq_lenn": 512}, ["model.seq_lenn", "did you mean 'seq_len'"], id="misspelled"),
    pytest.param({"preset": "gpt2", "seq_len": "long"}, ["model.seq_len", "integer"], id="bad-override"),
    pytest.param({"preset": "gpt2", "n_heads": 7}, ["model: n_heads 7 does not divide d_model 768"], id="heads"),
    pytest.param({"preset": "gpt5"}, ["model: unknown model preset", "gpt2-xl"], id="unknown"),
    pytest.param({"preset": 3}, ["model: unknown model preset 3"], id="not-a-name"),
    pytest.param({"preset": "gpt2", "hf_config": "x.json"}, ["model: give preset or hf_config, not both"],
                 id="both"),
    pytest.param({"hf_config": "/nonexistent/config.json"}, ["model: /nonexistent/config.json", "cannot read"],
                 id="missing-file"),
    pytest.param({"preset": "mistral-7b", "seq_len": 32768}, ["sliding window 4096"], id="past-the-window"),
])
def test_bad_model_references_are_one_line_naming_model(model, says):
    with pytest.raises(SpecError) as info:
        one_stage(model, 12)
    message = str(info.value)
    assert "\n" not in message
    for needle in says:
        assert needle in message, (needle, message)


def test_hf_config_is_found_beside_the_spec_file(tmp_path, monkeypatch):
    from costsim import load_spec

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.json").write_text(json.dumps(preset_config("pythia-160m")))
    for i, where in enumerate(("configs/config.json", "configs")):
        path = tmp_path / f"spec{i}.yaml"
        path.write_text(yaml.safe_dump({"model": {"hf_config": where, "seq_len": 1024}, "training": TRAINING,
                                        "stages": [{"layers": 12, "tokens": 1e6}]}))
        monkeypatch.chdir(Path(__file__).parent)  # not the spec's folder
        spec = load_spec(path)
        assert spec.model == load_preset("pythia-160m", {"seq_len": 1024}).model
    # and from the working directory when it is not beside the spec
    monkeypatch.chdir(tmp_path)
    assert one_stage({"hf_config": "configs/config.json"}, 12).model == load_preset("pythia-160m").model


def test_the_reference_gpt_refuses_what_it_does_not_build():
    """costsim estimates a Llama; validate's reference GPT (LayerNorm, learned positions)
    would train a different model, so it says so instead."""
    pytest.importorskip("torch")
    from costsim.errors import CostsimError
    from validate.trainer import gpt_shape

    spec = one_stage({"preset": "llama-3-8b", "d_model": 64, "n_heads": 4, "n_kv_heads": 1, "d_ff": 128,
                      "vocab_size": 256, "seq_len": 32}, 2)
    with pytest.raises(CostsimError, match="norm: rmsnorm, positions: rotary.*validate cannot train it"):
        gpt_shape(spec, 0)
    assert gpt_shape(one_stage({"preset": "gpt2", "seq_len": 32}, 2), 0).bias is True


# --- every mistake listed --------------------------------------------------------------


SMALL = {"model": {"d_model": 64, "n_heads": 4, "vocab_size": 100, "seq_len": 32},
         "training": {"micro_batch_size": 2, "batch_size": 4},
         "stages": [{"layers": 2, "tokens": 1024.0}, {"layers": 4, "tokens": 2048.0}]}


def _mistakes(data: dict) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return str(info.value).splitlines()


def test_several_field_mistakes_are_all_listed_one_line_each():
    data = json.loads(json.dumps(SMALL))
    data["model"]["n_heads"] = "four"
    data["training"]["batchsize"] = 4
    data["stages"][1]["tokens"] = -1
    lines = _mistakes(data)
    assert lines[0] == "3 mistakes:"
    paths = [line.split(":")[0] for line in lines[1:]]
    assert paths == ["  model.n_heads", "  training.batchsize", "  stages.1.tokens"]


def test_a_misspelled_key_is_one_mistake_with_the_fix():
    data = json.loads(json.dumps(SMALL))
    data["training"]["batch_sise"] = data["training"].pop("batch_size")
    assert _mistakes(data) == ["training.batch_sise: unknown key; did you mean 'batch_size'? "
                               "(python -m costsim.schema lists the allowed keys)"]


def test_several_cross_field_mistakes_are_all_listed():
    data = json.loads(json.dumps(SMALL))
    data["stages"] = [{"layers": 4, "tokens": 1.0}, {"layers": 2, "tokens": 1.0, "train": "top:3"},
                      {"layers": 1, "tokens": 1.0}]
    data["training"]["batch_size"] = 5
    lines = _mistakes(data)
    assert lines[0] == "4 mistakes:"
    assert lines[1].startswith("  training.batch_size 5 is not a multiple")
    assert lines[2].startswith("  stages[1].train: top:3 asks for more blocks")
    assert lines[3].startswith("  stages[1].layers: 2 is fewer than the previous stage's 4")
    assert lines[4].startswith("  stages[2].layers: 1 is fewer than the previous stage's 2")


def test_past_the_limit_it_says_how_many_more():
    data = json.loads(json.dumps(SMALL))
    data["stages"] = [{"layers": 2, "tokens": -1.0, "bogus": 1} for _ in range(7)]
    lines = _mistakes(data)
    assert lines[0] == "14 mistakes:"
    assert len(lines) == 1 + MAX_LISTED_MISTAKES + 1 and lines[-1] == "  and 4 more"


def test_the_cli_prints_every_mistake_and_exits_2(tmp_path, capsys):
    data = json.loads(json.dumps(SMALL))
    data["stages"][0]["layers"] = 0
    data["training"]["precision"] = "fp8"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(data))
    assert estimate_main([str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        "error: 2 mistakes:",
        "  training.precision: Input should be 'fp32' or 'bf16-mixed'",
        "  stages.0.layers: Input should be greater than 0",
    ]


# --- estimate --model / --hf-config ----------------------------------------------------


def test_estimate_a_preset_without_a_spec(capsys):
    assert estimate_main(["--model", "gpt2", "--tokens", "1e9", "--gpu", "h100-sxm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (stage,) = out["stages"]
    assert stage["layers"] == 12 and stage["params_total"] == 124_439_808 and stage["fits_in_memory"]
    assert out["name"] == "gpt2: full training" and out["gpu"].startswith("NVIDIA H100")
    # about 2^19 tokens a step, in whole sequences
    assert stage["steps"] == 1908 and out["total"]["tokens"] == 1e9
    assert estimate_main(["--model", "pythia-160m", "--tokens", "1e8"]) == 0
    text = capsys.readouterr().out
    assert "parameters (final stage): 162,322,944 total, 123,689,472 non-embedding, 162,322,944 trainable" in text


def test_estimate_an_hf_config_and_a_spec_with_another_model(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(preset_config("qwen2-7b")))
    assert estimate_main(["--hf-config", str(tmp_path), "--tokens", "1e9", "--seq-len", "4096", "--n-gpus", "8",
                          "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stages"][0]["params_total"] == 7_615_616_512 and out["n_gpus"] == 8
    spec = Path(__file__).resolve().parents[1] / "examples" / "paper_s4.yaml"
    assert estimate_main([str(spec), "--model", "gpt2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stages"][-1]["params_total"] == 124_439_808 and len(out["stages"]) == 8


@pytest.mark.parametrize("argv, says", [
    pytest.param([], "give a SPEC file, or --model", id="nothing"),
    pytest.param(["--model", "gpt2"], "--tokens is needed", id="no-tokens"),
    pytest.param(["--model", "gpt5", "--tokens", "1e9"], "unknown model preset", id="unknown-preset"),
    pytest.param(["--hf-config", "/nonexistent", "--tokens", "1e9"], "cannot read", id="missing-config"),
    pytest.param(["--model", "gpt2", "--tokens", "0"], "stages.0.tokens", id="zero-tokens"),
    pytest.param(["--model", "gpt2", "--tokens", "1e9", "--batch-tokens", "0"], "--batch-tokens", id="no-batch"),
    pytest.param(["--model", "gpt2", "--tokens", "1e9", "--n-gpus", "0"], "hardware.n_gpus", id="no-gpus"),
    pytest.param(["--model", "mistral-7b", "--tokens", "1e9", "--seq-len", "8192"], "sliding window",
                 id="past-the-window"),
    pytest.param(["examples/paper_s4.yaml", "--tokens", "1e9"], "apply without a SPEC", id="tokens-with-spec"),
    pytest.param(["examples/width_and_depth.toml", "--model", "gpt2"], "width may only grow",
                 id="spec-of-another-width"),
])
def test_estimate_flags_bad_input_is_one_line(argv, says, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert estimate_main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    [line] = out.err.splitlines()
    assert line.startswith("error: ") and says in line, line
