"""GPUs: presets are data files under costsim/data/gpus/, loaded by name; any other GPU
is a file of the same keys, loaded by path."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costsim.errors import SpecError, validation_message
from costsim.shipped import shipped_names, shipped_text


class GPUSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    # bounds far outside any real accelerator, so no time or price can come out infinite
    peak_bf16_flops_per_s: float = Field(ge=1e9, le=1e18, description="dense bf16 matmul peak")
    peak_tf32_flops_per_s: float = Field(ge=1e9, le=1e18, description="dense matmul peak for fp32 training (TF32)")
    hbm_bandwidth_bytes_per_s: float = Field(ge=1e8, le=1e16)
    memory_bytes: float = Field(ge=1e6, le=1e15)
    interconnect_bandwidth_bytes_per_s: float = Field(ge=1e6, le=1e16, description="inside a node (NVLink, PCIe): "
                                                      "per GPU, one direction")
    interconnect_latency_s: float = Field(0.0, ge=0, le=1, description="inside a node, per ring step of a collective "
                                          "(0: not modelled; NCCL's tuning table puts NVLink at a few microseconds)")
    inter_node_bandwidth_bytes_per_s: float | None = Field(
        None, ge=1e6, le=1e16, description="between nodes (InfiniBand, Ethernet): per GPU, one direction; default the "
        "interconnect's (a single node)")
    inter_node_latency_s: float = Field(0.0, ge=0, le=1, description="between nodes, per ring step of a collective")
    price_per_gpu_hour: float = Field(0.0, ge=0, le=1e4, description="USD, indicative")
    source: str = ""

    def peak_flops_per_s(self, precision: str) -> float:
        return self.peak_bf16_flops_per_s if precision == "bf16-mixed" else self.peak_tf32_flops_per_s


@cache
def gpu_preset_names() -> tuple[str, ...]:
    return shipped_names("gpus")


@cache
def load_gpu(name: str) -> GPUSpec:
    if name not in gpu_preset_names():
        raise KeyError(f"unknown GPU {name!r}; presets: {', '.join(gpu_preset_names())}")
    return GPUSpec.model_validate(json.loads(shipped_text("gpus", name)))


def gpu_from_name_or_file(text: str) -> str | GPUSpec:
    """A preset's name as it is, or the GPU a .json file (the keys of costsim/data/gpus/*.json)
    describes. A missing or invalid file is a SpecError naming the problem (one line a mistake)."""
    if text in gpu_preset_names():
        return text
    path = Path(text)
    if not (path.suffix == ".json" or path.exists()):
        raise SpecError(f"unknown GPU {text!r}; use one of {', '.join(gpu_preset_names())} or a GPU .json file "
                        "(same keys as costsim/data/gpus/*.json)")
    try:
        return GPUSpec.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise SpecError(f"GPU file {text}: cannot read it ({exc.strerror or exc})") from None
    except ValidationError as exc:
        raise SpecError(f"GPU file {text}: {_gpu_file_problem(exc)}") from None


def _gpu_file_problem(exc: ValidationError) -> str:
    """What is wrong with a GPU file: one line a mistake (bad JSON reads as such, not as a field)."""
    if any(e["type"] == "json_invalid" for e in exc.errors()):
        return f"not valid JSON ({exc.errors()[0]['ctx'].get('error', 'invalid')})"
    return validation_message(exc, GPUSpec)


def preset_for_device(device: str) -> str | None:
    """The GPU preset a device name (as ``torch.cuda.get_device_name`` gives it) is, or None.

    Matched on the words the two names share besides the vendor and product line ("NVIDIA
    H200" is "NVIDIA H200 SXM 141GB"; "NVIDIA A100-SXM4-80GB" is the 80 GB A100, not the 40
    GB; "AMD Instinct MI250X" is no preset, not the MI300X).
    """
    words = set(_words(device)) - VENDOR_WORDS
    scores = {name: len(words & set(_words(load_gpu(name).name))) for name in gpu_preset_names()}
    best = max(scores, key=scores.get, default=None)
    return best if best is not None and scores[best] > 0 else None


VENDOR_WORDS = {"NVIDIA", "AMD", "INSTINCT"}  # shared by whole product lines: they identify no card


def _words(name: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in name.upper()).split()
