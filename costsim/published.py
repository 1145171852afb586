"""Published multi-GPU training runs as costsim specs, and costsim's prediction of each.

The runs are data (``costsim/data/measurements/<source>.json``), each file naming where its
figures come from and what every field means. ``published_runs`` turns every run into the
spec a user would write for it (with the source's trainer profile); ``predict`` costs it
the way ``costsim.estimate`` does. ``benchmarks/published_scale.py`` prints the comparison.

``SOURCES`` are data-parallel (FSDP) runs; ``LAYOUT_SOURCES`` are runs with tensor and
pipeline parallelism, each row naming its layout (``tensor_parallel``, ``pipeline_parallel``,
``virtual_stages``, ``sequence_parallel``, ``context_parallel``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from costsim.engine import estimate_many, spec_layout, stage_shape
from costsim.hardware import load_gpu
from costsim.memory import fits_within, usable_memory_bytes
from costsim.models import load_preset
from costsim.profile import profile_for
from costsim.spec import ScheduleSpec, parse_spec

GIB = 2**30
SOURCES = ("llm_foundry_mpt_h100", "torchtitan_llama3_h100")
LAYOUT_SOURCES = ("nemo_dgxc_h100",)  # with tensor / pipeline parallelism
STEPS = 10  # a spec needs tokens; costs are per step, so any whole number of steps will do


@dataclass(frozen=True)
class PublishedRun:
    source: str
    label: str
    run: dict  # the row as published
    specs: dict[str, ScheduleSpec]  # by recompute: one, or none and full to bracket a policy costsim lacks

    @property
    def measured_peak_gib(self) -> float | None:
        return self.run.get("peak_memory_gib")

    @property
    def measured_tokens_per_s_per_gpu(self) -> float | None:
        """As published, or from a published step time: seq_len x global batch / step time / GPUs."""
        if "tokens_per_s_per_gpu" in self.run:
            return self.run["tokens_per_s_per_gpu"]
        if "step_time_s" in self.run:
            r = self.run
            return r["seq_len"] * r["global_batch_size"] / r["step_time_s"] / r["n_gpus"]
        return None


@dataclass(frozen=True)
class Prediction:
    peak_reserved_gib: float
    peak_allocated_gib: float
    fits_card: bool  # reserved peak within the card's memory
    fits_headroom: bool  # costsim's rule: within MEMORY_HEADROOM of it
    tokens_per_s_per_gpu: float


@cache
def load_source(name: str) -> dict:
    return json.loads((resources.files("costsim") / "data" / "measurements" / f"{name}.json").read_text())


def _gpu(described: dict) -> str | dict:
    """The source's card as a spec writes it: a preset's name, or the preset with the memory
    (and bandwidth) the source reports, inline."""
    preset = load_gpu(described["preset"])
    changes = {"memory_bytes": described["memory_gib"] * GIB}
    if "hbm_bandwidth_bytes_per_s" in described:
        changes["hbm_bandwidth_bytes_per_s"] = described["hbm_bandwidth_bytes_per_s"]
    if changes == {"memory_bytes": preset.memory_bytes}:
        return described["preset"]
    return {**preset.model_dump(), **changes, "name": f"{preset.name} as {described['memory_gib']} GiB"}


def _spec(source: dict, model: dict, layers: int, run: dict, recompute: str, gpu: str | dict,
          layout: dict | None = None, trainer_overrides: dict | None = None) -> ScheduleSpec:
    """``layout``: the run's training.tensor_parallel, pipeline_parallel, ... (none: data parallel only);
    ``trainer_overrides``: where a model's recipe differs from the source's trainer profile."""
    tokens = STEPS * run["global_batch_size"] * run["seq_len"]
    hardware = {"gpu": gpu, "n_gpus": run["n_gpus"]}
    if "gpus_per_node" in source:
        hardware["gpus_per_node"] = source["gpus_per_node"]
    return parse_spec({
        "name": f"{source['name']}: {run.get('model', '')} T{run['seq_len']} x{run['n_gpus']}",
        "model": model,
        "training": {"micro_batch_size": run["micro_batch_size"], "batch_size": run["global_batch_size"],
                     "precision": "bf16-mixed", "recompute": recompute, "parallelism": source["parallelism"],
                     "trainer_profile": source["trainer_profile"], "trainer_overrides": trainer_overrides or {},
                     **(layout or {})},
        "hardware": hardware,
        "stages": [{"layers": layers, "tokens": tokens}],
    })


def _llm_foundry(source: dict, gpu: str | dict) -> list[PublishedRun]:
    common = {k: v for k, v in source["model_common"].items() if k not in ("note", "d_ff_ratio")}
    out = []
    for run in source["runs"]:
        shape = source["models"][run["model"]]
        model = {**common, "d_model": shape["d_model"], "n_heads": shape["n_heads"], "seq_len": run["seq_len"],
                 "d_ff": source["model_common"]["d_ff_ratio"] * shape["d_model"]}
        recompute = "full" if run["activation_checkpointing"] else "none"
        label = (f"{run['model']} T{run['seq_len']} x{run['n_gpus']} mb{run['micro_batch_size']}"
                 f"{' ckpt' if run['activation_checkpointing'] else ''}")
        out.append(PublishedRun("llm_foundry_mpt_h100", label, run,
                                {recompute: _spec(source, model, shape["layers"], run, recompute, gpu)}))
    return out


def _torchtitan(source: dict, gpu: str | dict) -> list[PublishedRun]:
    preset = source["model"]["preset"]
    out = []
    for run in source["runs"]:
        model = {"preset": preset, "seq_len": run["seq_len"]}
        layers = load_preset(preset).layers
        # op-level selective checkpointing lies between costsim's none and full
        specs = {r: _spec(source, model, layers, run, r, gpu) for r in ("none", "full")}
        label = f"{preset} T{run['seq_len']} x{run['n_gpus']} mb{run['micro_batch_size']} sel-op"
        out.append(PublishedRun("torchtitan_llama3_h100", label, run, specs))
    return out


def run_layout(run: dict) -> dict:
    """A row's parallel layout as the spec's training fields."""
    v = run.get("virtual_stages", 1)
    return {"tensor_parallel": run["tensor_parallel"], "pipeline_parallel": run["pipeline_parallel"],
            "context_parallel": run.get("context_parallel", 1),
            "sequence_parallel": run.get("sequence_parallel", False), "virtual_stages": v,
            "pipeline_schedule": "interleaved" if v > 1 else "1f1b"}


def _layouts(name: str):
    def build(source: dict, gpu: str | dict) -> list[PublishedRun]:
        out = []
        for run in source["runs"]:
            shape = source["models"][run["model"]]
            model = ({k: v for k, v in shape.items() if k not in ("layers", "note", "trainer_overrides",
                                                                   "sequence_parallel")}
                     | {"seq_len": run["seq_len"]})
            layers = run.get("layers", shape["layers"] if "layers" in shape else load_preset(shape["preset"]).layers)
            # selective (core-attention) recompute: none here, recompute_attention in the trainer_overrides
            recompute = "full" if run.get("activation_checkpointing") == "full" else "none"
            layout = run_layout(run)
            if "sequence_parallel" not in run and "sequence_parallel" in shape:  # the model's recipe says it
                layout["sequence_parallel"] = shape["sequence_parallel"]
            v = layout["virtual_stages"]
            cp = layout["context_parallel"]
            label = (f"{run['model']} x{run['n_gpus']} tp{layout['tensor_parallel']} pp{layout['pipeline_parallel']}"
                     f"{f' v{v}' if v > 1 else ''}{f' cp{cp}' if cp > 1 else ''} mb{run['micro_batch_size']} "
                     f"gbs{run['global_batch_size']}")
            out.append(PublishedRun(name, label, run, {recompute: _spec(source, model, layers, run, recompute, gpu,
                                                                         layout, shape.get("trainer_overrides"))}))
        return out
    return build


_BUILDERS = {"llm_foundry_mpt_h100": _llm_foundry, "torchtitan_llama3_h100": _torchtitan,
             **{name: _layouts(name) for name in LAYOUT_SOURCES}}


def published_runs(sources: tuple[str, ...] = SOURCES) -> list[PublishedRun]:
    """Every costable run of ``sources`` (default the data-parallel ones; ``LAYOUT_SOURCES``
    for tensor / pipeline parallelism)."""
    runs = []
    for name in sources:
        source = load_source(name)
        runs += _BUILDERS[name](source, _gpu(source["gpu"]))
    return runs


def predict(spec: ScheduleSpec, trainer_profile: str | None = None) -> Prediction:
    """costsim's peak memory, fit and throughput for a one-stage spec, under its own trainer
    profile or ``trainer_profile`` (to compare profiles on the same run)."""
    if trainer_profile is not None:
        spec = spec.model_copy(update={"training": spec.training.model_copy(
            update={"trainer_profile": trainer_profile, "trainer_overrides": {}})})
    hw, t = spec.hardware, spec.training
    gpu = hw.resolved_gpu()
    profile = profile_for(hw.gpu if isinstance(hw.gpu, str) else None, hw.calibration)
    costs = estimate_many(stage_shape(spec), batch_size=t.batch_size, gpu=gpu, profile=profile,
                          precision=t.precision, n_gpus=hw.n_gpus, parallelism=t.parallelism,
                          trainer=t.trainer(), layout=spec_layout(spec))
    reserved = float(costs.peak_memory_bytes[0])
    return Prediction(
        peak_reserved_gib=reserved / GIB, peak_allocated_gib=float(costs.peak_allocated_bytes[0]) / GIB,
        fits_card=bool(fits_within(reserved, gpu.memory_bytes)),
        fits_headroom=bool(fits_within(reserved, usable_memory_bytes(gpu.memory_bytes))),
        tokens_per_s_per_gpu=t.batch_size * spec.model.seq_len / float(costs.step_time_s[0]) / hw.n_gpus,
    )
