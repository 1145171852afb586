"""External model descriptions as costsim's ``ModelSpec``: Hugging Face ``config.json``
files, and presets shipped as data in ``costsim/data/models/`` (published config.json
contents, each naming its source in ``_source``). Nothing is downloaded.

Each supported ``model_type`` is one entry of ``FAMILIES``: the keys that hold the
shape, and what the family builds where the reference GPT has a choice (biases,
RMSNorm, rotary positions, a gated MLP, tied embeddings). A feature that would change
what costsim counts and that it cannot represent (routed experts, a sliding window
shorter than the sequence, a head width other than d_model/n_heads, ...) is refused in
one line saying so. A feature that changes nothing costsim counts (parallel residual,
partial rotary, rope scaling: no parameters and no matmul FLOPs) is accepted, and the
result's ``notes`` say why.

Learned position embeddings are counted as a table of ``seq_len`` rows, as the
reference GPT builds it: a preset's ``seq_len`` is its maximum context, so its count is
the published one; overriding ``seq_len`` resizes the table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from costsim.constants import LIMITS
from costsim.errors import SpecError, validation_message
from costsim.shipped import shipped_names, shipped_text
from costsim.spec import ModelSpec

# --- the families ------------------------------------------------------------------

GELU = frozenset({"gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "gelu_accurate"})
SILU = frozenset({"silu", "swish"})

_ROTARY = ("rotary positions have no parameters and their elementwise FLOPs are not counted (only matmuls "
           "and attention are), so this changes nothing costsim counts")
_PARALLEL = ("attention and MLP read the same input instead of one after the other: the same matmuls, norms and "
             "parameters, so costsim costs the block in sequence (its saved activations count the shared "
             "input twice, 4 bytes a token per block more than a fused run)")
_ATTENTION_SCALING = "a scaling inside attention: no matmul and no parameter changes"


@dataclass(frozen=True)
class Refusal:
    """A feature costsim cannot count: refused when the config's ``key`` makes ``applies`` true."""

    key: str
    applies: Callable[[object], bool]
    why: str  # what is not representable and what costsim will not do

    def check(self, config: Mapping, label: str) -> None:
        if self.key in config and self.applies(config[self.key]):
            raise SpecError(f"{label}: {self.key}={_show(config[self.key])}: {self.why}")


def _set(value: object) -> bool:
    return bool(value)


def _show(value: object) -> str:
    """A config value as the config.json writes it (anything else a spec may hold, as text)."""
    return json.dumps(value, default=str)


_MOE = "a mixture of experts is not representable; costsim counts one dense MLP a block and will not cost experts"
_CROSS = "cross-attention is not representable; costsim costs decoder-only models"
_BIASES = "costsim biases every Linear layer (bias) or the q/k/v projection only (qkv_bias)"
COMMON_REFUSALS = (
    *(Refusal(key, _set, _MOE) for key in ("num_local_experts", "num_experts", "n_routed_experts",
                                           "moe_intermediate_size")),
    Refusal("add_cross_attention", _set, _CROSS),
    Refusal("is_encoder_decoder", _set, _CROSS),
)

_LLAMA_KEYS = {"d_model": "hidden_size", "n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads",
               "layers": "num_hidden_layers", "seq_len": "max_position_embeddings", "d_ff": "intermediate_size",
               "vocab_size": "vocab_size"}


@dataclass(frozen=True)
class Family:
    """How one Hugging Face ``model_type`` writes a decoder, mapped onto ModelSpec."""

    keys: Mapping[str, str]  # ModelSpec field (or "layers") -> config key
    optional: frozenset[str]  # fields whose key may be absent or null: ModelSpec's default applies
    activation_key: str
    activation_default: str  # what transformers assumes when the key is absent
    activations: frozenset[str]  # elementwise, so uncounted; others are refused rather than guessed at
    mlp: str  # gelu | swiglu (a gated MLP)
    norm: str
    positions: str
    bias: bool
    qkv_bias: bool = False
    tied_default: bool = False  # tie_word_embeddings when the config does not say
    refusals: tuple[Refusal, ...] = ()
    window_key: str | None = None  # sliding-window attention length
    window_switch: str | None = None  # the key that turns the window on, where one does (Qwen2)
    accepted: Mapping[str, str] = field(default_factory=dict)  # key present -> why it changes nothing counted


_LLAMA = Family(
    keys=_LLAMA_KEYS, optional=frozenset({"n_kv_heads"}), activation_key="hidden_act", activation_default="silu",
    activations=SILU, mlp="swiglu", norm="rmsnorm", positions="rotary", bias=False,
    refusals=(Refusal("attention_bias", _set, f"biases on q, k, v and the output projection only are not "
                      f"representable; {_BIASES}"),
              Refusal("mlp_bias", _set, f"biases on the MLP only are not representable; {_BIASES}")),
    accepted={"rope_scaling": _ROTARY},
)

FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        keys={"d_model": "n_embd", "n_heads": "n_head", "layers": "n_layer", "seq_len": "n_positions",
              "d_ff": "n_inner", "vocab_size": "vocab_size"},
        optional=frozenset({"d_ff"}), activation_key="activation_function", activation_default="gelu_new",
        activations=GELU, mlp="gelu", norm="layernorm", positions="learned", bias=True, tied_default=True,
        accepted={"scale_attn_by_inverse_layer_idx": _ATTENTION_SCALING,
                  "reorder_and_upcast_attn": _ATTENTION_SCALING},
    ),
    "gpt_neox": Family(
        keys={k: v for k, v in _LLAMA_KEYS.items() if k != "n_kv_heads"}, optional=frozenset(),
        activation_key="hidden_act", activation_default="gelu", activations=GELU, mlp="gelu", norm="layernorm",
        positions="rotary", bias=True,
        refusals=(Refusal("attention_bias", lambda v: v is False,
                          f"attention without biases beside an MLP with them is not representable; {_BIASES}"),),
        accepted={"use_parallel_residual": _PARALLEL, "rotary_pct": _ROTARY, "rope_scaling": _ROTARY},
    ),
    "llama": _LLAMA,
    "mistral": replace(_LLAMA, window_key="sliding_window"),
    "qwen2": replace(_LLAMA, qkv_bias=True, window_key="sliding_window", window_switch="use_sliding_window"),
}


# --- mapping a config --------------------------------------------------------------


@dataclass(frozen=True)
class ExternalModel:
    """An external model as costsim costs it: the final model, its depth (the last
    stage's layers), where it came from, and what was accepted without being counted."""

    model: ModelSpec
    layers: int
    source: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Mapped:
    fields: dict[str, object]  # ModelSpec fields, not yet validated
    layers: int
    window: int | None  # sliding-window length: the longest seq_len costsim costs exactly
    notes: tuple[str, ...]


def _family(config: Mapping, label: str) -> Family:
    model_type = config.get("model_type")
    supported = ", ".join(FAMILIES)
    if model_type is None:
        raise SpecError(f"{label}: no model_type; costsim maps Hugging Face configs of {supported}")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise SpecError(f"{label}: model_type {_show(model_type)} is not one costsim maps ({supported}); "
                        "write the model's fields (d_model, n_heads, ...) in the spec instead")
    return FAMILIES[model_type]


def _positive_int(config: Mapping, key: str, label: str, optional: bool) -> int | None:
    value = config.get(key)
    if value is None:
        if optional:
            return None
        raise SpecError(f"{label}: no {key}; a {config['model_type']} config.json names it")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{label}: {key} must be a positive integer, got {_show(value)}")
    return value


def _window(config: Mapping, family: Family, label: str) -> int | None:
    if family.window_key is None or (family.window_switch and not config.get(family.window_switch)):
        return None
    return _positive_int(config, family.window_key, label, optional=True)


def _map(config: Mapping, label: str) -> _Mapped:
    family = _family(config, label)
    for refusal in (*COMMON_REFUSALS, *family.refusals):
        refusal.check(config, label)
    values = {name: _positive_int(config, key, label, name in family.optional) for name, key in family.keys.items()}
    fields = {name: value for name, value in values.items() if value is not None}
    layers = fields.pop("layers")
    if layers > LIMITS["layers"]:
        raise SpecError(f"{label}: {layers} layers is beyond any real run (costsim takes at most {LIMITS['layers']})")
    head_dim = _positive_int(config, "head_dim", label, optional=True)
    if head_dim is not None and head_dim * fields["n_heads"] != fields["d_model"]:
        raise SpecError(f"{label}: head_dim {head_dim} x {fields['n_heads']} heads is not the hidden size "
                        f"{fields['d_model']}; costsim splits d_model into n_heads and will not cost another "
                        "head width")
    activation = config.get(family.activation_key) or family.activation_default
    if not isinstance(activation, str) or activation not in family.activations:
        raise SpecError(f"{label}: {family.activation_key} {_show(activation)} is not an activation costsim "
                        f"models for {config['model_type']} ({', '.join(sorted(family.activations))}); it will not "
                        "guess another's saved activations")
    tied = config.get("tie_word_embeddings", family.tied_default)
    if not isinstance(tied, bool):
        raise SpecError(f"{label}: tie_word_embeddings must be true or false, got {_show(tied)}")
    window = _window(config, family, label)
    if window is not None:
        # the longest sequence whose attention costsim counts exactly (full causal = the window)
        fields["seq_len"] = min(fields["seq_len"], window)
    if fields.get("n_kv_heads") == fields["n_heads"]:
        del fields["n_kv_heads"]  # plain multi-head attention, as ModelSpec writes it
    fields |= {"tied_embeddings": tied, "mlp": family.mlp, "norm": family.norm, "positions": family.positions,
               "bias": family.bias, "qkv_bias": family.qkv_bias}
    notes = tuple(f"{key}: {why}" for key, why in family.accepted.items() if config.get(key))
    return _Mapped(fields=fields, layers=layers, window=window, notes=notes)


def _merged(mapped: _Mapped, overrides: Mapping, label: str) -> dict[str, object]:
    """The mapped fields with the user's overrides on top (checked later, as written)."""
    fields = {**mapped.fields, **overrides}
    seq_len = fields.get("seq_len")
    if mapped.window is not None and isinstance(seq_len, int) and seq_len > mapped.window:
        raise SpecError(f"{label}: seq_len {seq_len} is longer than the model's sliding window {mapped.window}; "
                        "costsim counts full causal attention over the sequence and will not cost a window; set "
                        f"seq_len to {mapped.window} or less")
    return fields


def _external(mapped: _Mapped, overrides: Mapping | None, label: str, source: str) -> ExternalModel:
    try:
        model = ModelSpec.model_validate(_merged(mapped, overrides or {}, label))
    except ValidationError as exc:
        raise SpecError(f"{label}: {validation_message(exc, ModelSpec)}") from None
    return ExternalModel(model=model, layers=mapped.layers, source=source, notes=mapped.notes)


def read_hf_config(path: str | Path) -> dict:
    """A config.json (or the folder of a downloaded model, which holds one) as a mapping."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
    except OSError as exc:
        raise SpecError(f"{file}: cannot read the Hugging Face config ({exc.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise SpecError(f"{file}: not a text file (not UTF-8); give a config.json") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{file}: not valid JSON: {exc.msg} (line {exc.lineno}); give a config.json") from None
    except (ValueError, RecursionError):
        raise SpecError(f"{file}: not a config.json (a value or nesting beyond any real config)") from None
    if not isinstance(data, dict):
        raise SpecError(f"{file}: a config.json is one JSON object, not a {type(data).__name__}")
    return data


def from_hf_config(config: Mapping | str | Path, overrides: Mapping | None = None) -> ExternalModel:
    """A Hugging Face config (a mapping, a config.json or a model folder) as costsim's
    model; ``overrides`` are ModelSpec fields set on top (e.g. ``seq_len``)."""
    if isinstance(config, Mapping):
        label = str(config.get("_name_or_path") or "config")
        return _external(_map(config, label), overrides, label, label)
    data = read_hf_config(config)
    return _external(_map(data, str(config)), overrides, str(config), str(config))


# --- presets -------------------------------------------------------------------------


@cache
def preset_names() -> tuple[str, ...]:
    return shipped_names("models")


def preset_config(name: object) -> dict:
    """A preset's config.json contents (a fresh copy: callers may change it)."""
    if not isinstance(name, str) or name not in preset_names():
        raise SpecError(f"unknown model preset {_show(name)}; presets: {', '.join(preset_names())}")
    return json.loads(shipped_text("models", name))


def load_preset(name: str, overrides: Mapping | None = None) -> ExternalModel:
    config = preset_config(name)
    label = f"preset {name}"
    return _external(_map(config, label), overrides, label, f"{label} ({config['_source']})")


# --- in a spec -----------------------------------------------------------------------


def _config_path(value: object, base_dir: Path | None) -> Path:
    """A spec's hf_config path: beside the spec file if it is there, else from the working directory."""
    if not isinstance(value, str) or not value:
        raise SpecError(f"hf_config must be a path to a config.json, got {_show(value)}")
    path = Path(value)
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        return base_dir / path
    return path


def model_fields(reference: Mapping, base_dir: Path | None = None) -> dict[str, object]:
    """A spec's ``model: {preset: NAME, ...}`` or ``{hf_config: PATH, ...}`` as ModelSpec
    fields, the other keys applied on top as overrides (validated by ModelSpec, as written)."""
    overrides = dict(reference)
    if "preset" in overrides and "hf_config" in overrides:
        raise SpecError("give preset or hf_config, not both")
    if "preset" in overrides:
        name = overrides.pop("preset")
        label = f"preset {name}"
        mapped = _map(preset_config(name), label)
    else:
        label = str(_config_path(overrides.pop("hf_config"), base_dir))
        mapped = _map(read_hf_config(label), label)
    return _merged(mapped, overrides, label)
