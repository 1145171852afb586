"""Hugging Face transformers: per stage a config.json and the TrainingArguments of one run.

The model family is costsim/models.py's (``FAMILIES``): its config keys write the files
and ``from_hf_config`` reads them back, the same reading a spec's ``hf_config`` gets.
Each run starts its scheduler and optimizer afresh, so a schedule that runs across
stages is expressible only as a constant rate.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from costsim.export.base import (
    DTYPES,
    ExportError,
    ExportFormat,
    StagePlan,
    need,
    read_json,
    register,
    schedule_restarts,
)
from costsim.lr import ConstantLR, CosineLR, WarmupStableDecayLR, wsd_decay_steps
from costsim.models import FAMILIES, from_hf_config
from costsim.spec import ScheduleSpec

# The transformers families an export writes: costsim/models.py's FAMILIES holds each one's
# config keys and design (and reads the files back); here, the class to build and the
# settings that make it the plan's block (no dropout, exact GELU, no sliding window).
HF_WRITERS: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2": ("GPT2LMHeadModel", {"activation_function": "gelu", "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                                 "attn_pdrop": 0.0}),
    "llama": ("LlamaForCausalLM", {"hidden_act": "silu", "attention_dropout": 0.0}),
    "qwen2": ("Qwen2ForCausalLM", {"hidden_act": "silu", "attention_dropout": 0.0, "use_sliding_window": False}),
}
DESIGN = ("norm", "positions", "bias", "qkv_bias")  # what a family fixes and a plan may set otherwise
# one scheduler name per costsim schedule kind (constant: with or without warmup)
HF_SCHEDULERS = {"cosine": "cosine_with_min_lr", "wsd": "warmup_stable_decay"}


def _hf_family(spec: ScheduleSpec) -> str | None:
    """The family that builds the plan's MLP and attention, closest in the rest (first on a
    tie); None when none can."""
    m = spec.model
    grouped = m.n_kv_heads not in (None, m.n_heads)
    able = [name for name in HF_WRITERS if FAMILIES[name].mlp == m.mlp
            and (not grouped or "n_kv_heads" in FAMILIES[name].keys)]
    return max(able, key=lambda name: sum(getattr(FAMILIES[name], f) == getattr(m, f) for f in DESIGN),
               default=None)


def _hf_config(spec: ScheduleSpec, stage: StagePlan) -> dict:
    name = _hf_family(spec)
    architecture, settings = HF_WRITERS[name]
    m = spec.model
    shape = {"layers": stage.layers, "d_model": stage.d_model, "n_heads": stage.n_heads,
             "n_kv_heads": stage.n_kv_heads, "d_ff": stage.d_ff, "vocab_size": m.vocab_size, "seq_len": m.seq_len}
    # special tokens are the tokenizer's, which the plan does not name (GPT-2's 50256 is past a small vocabulary)
    return {"architectures": [architecture], "model_type": name, **settings,
            **{key: shape[ours] for ours, key in FAMILIES[name].keys.items()},
            "tie_word_embeddings": m.tied_embeddings, "bos_token_id": None, "eos_token_id": None}


def _hf_run_schedule(spec: ScheduleSpec, stage: StagePlan) -> dict:
    """The LR fields of one transformers run. Each run starts its scheduler at 0, so a
    stage runs the whole schedule over its own steps when the plan restarts it; else
    (a constant rate, see refusals) the first stage holds the warmup."""
    schedule = spec.training.lr_schedule
    restarts = schedule_restarts(spec)
    warmup = schedule.warmup_steps if restarts or stage.index == 0 else 0
    kwargs: dict[str, Any] = {}
    if isinstance(schedule, CosineLR):
        kwargs = {"min_lr_rate": schedule.min_lr_ratio}
    elif isinstance(schedule, WarmupStableDecayLR):
        kwargs = {"num_decay_steps": wsd_decay_steps(schedule, stage.steps), "min_lr_ratio": schedule.min_lr_ratio,
                  "decay_type": "linear"}
    kind = HF_SCHEDULERS.get(schedule.kind, "constant_with_warmup" if warmup else "constant")
    return {"learning_rate": schedule.lr, "lr_scheduler_type": kind, "lr_scheduler_kwargs": kwargs,
            "warmup_steps": warmup}


def _hf_schedule(args: dict, where: Path) -> dict:
    """costsim's schedule from the first stage's run (it holds the warmup either way)."""
    kinds = {v: k for k, v in HF_SCHEDULERS.items()} | {"constant": "constant", "constant_with_warmup": "constant"}
    name = need(args, "lr_scheduler_type", str, where)
    if name not in kinds:
        raise ExportError(f"{where}: lr_scheduler_type {name!r} is not one costsim plans ({', '.join(kinds)})")
    kwargs = args.get("lr_scheduler_kwargs") or {}
    schedule = {"kind": kinds[name], "lr": need(args, "learning_rate", float, where),
                "warmup_steps": need(args, "warmup_steps", int, where)}
    ratio = kwargs.get("min_lr_rate", kwargs.get("min_lr_ratio"))
    if ratio is not None:
        schedule["min_lr_ratio"] = ratio
    return schedule  # a wsd's decay_fraction: the manifest's (the files hold whole decay steps)


def _flags(args: dict) -> str:
    """TrainingArguments as command-line flags (HfArgumentParser's form)."""
    parts = []
    for key, value in args.items():
        if isinstance(value, dict):
            if not value:
                continue
            value = json.dumps(value)
        parts.append(f"--{key} {shlex.quote(str(value))}")
    return " ".join(parts)


@register
class HuggingFace(ExportFormat):
    name = "hf"
    trainer = "Hugging Face transformers' Trainer (e.g. examples/pytorch/language-modeling/run_clm.py)"
    keeps_optimizer = False  # every run builds a fresh AdamW

    def refusals(self, spec: ScheduleSpec, stages: list[StagePlan]) -> list[str]:
        m, t = spec.model, spec.training
        schedule = t.lr_schedule
        found = [(_hf_family(spec) is None,
                  f"a {m.mlp} MLP with grouped key/value heads (no family costsim writes has both: "
                  f"{', '.join(f'{n} {FAMILIES[n].mlp}' for n in HF_WRITERS)})")]
        if not schedule_restarts(spec):
            found += [
                (not isinstance(schedule, ConstantLR),
                 f"a {schedule.kind} LR schedule across stages (each transformers run restarts its scheduler; "
                 "training.lr_reset_per_stage: true restarts it in the plan too)"),
                (isinstance(schedule, ConstantLR) and schedule.warmup_steps > stages[0].steps,
                 f"a warmup of {schedule.warmup_steps} steps past stage 0's {stages[0].steps} (each run restarts "
                 "its scheduler)"),
            ]
        if isinstance(schedule, WarmupStableDecayLR):
            short = [s.index for s in stages if schedule.warmup_steps + wsd_decay_steps(schedule, s.steps) > s.steps]
            found.append((bool(short), f"wsd warmup and decay longer than stages {short}"))
        return [text for bad, text in found if bad]

    @staticmethod
    def _dir(index: int) -> str:
        return f"stage_{index:02d}"

    def training_args(self, spec: ScheduleSpec, stage: StagePlan) -> dict:
        t = spec.training
        return {
            "output_dir": f"{self._dir(stage.index)}/trained",
            "per_device_train_batch_size": t.micro_batch_size,
            "gradient_accumulation_steps": t.batch_size // (t.micro_batch_size * spec.hardware.n_gpus),
            "max_steps": stage.steps, **_hf_run_schedule(spec, stage),
            "optim": "adamw_torch", "weight_decay": t.weight_decay, "adam_beta1": t.beta1, "adam_beta2": t.beta2,
            "adam_epsilon": t.eps, "max_grad_norm": t.grad_clip or 0.0, "bf16": DTYPES[t.precision] == "bfloat16",
            "gradient_checkpointing": t.recompute == "full", "seed": t.seed,
        }

    def files(self, spec: ScheduleSpec, stages: list[StagePlan]) -> dict[str, str]:
        out = {}
        for s in stages:
            out[f"{self._dir(s.index)}/config.json"] = json.dumps(_hf_config(spec, s), indent=2) + "\n"
            out[f"{self._dir(s.index)}/training_args.json"] = json.dumps(self.training_args(spec, s), indent=2) + "\n"
        return out

    def command(self, spec: ScheduleSpec, stage: StagePlan) -> str:
        n = spec.hardware.n_gpus
        launch = "python" if n == 1 else f"torchrun --nproc_per_node={n}"
        here = f"$EXPORT/{self._dir(stage.index)}"
        model = f'--config_name "{here}"' if stage.index == 0 else f'--model_name_or_path "{self._start(stage)}"'
        args = self.training_args(spec, stage)
        del args["output_dir"]  # relative to the export folder in the JSON; here under $EXPORT, which the shell expands
        return (f'{launch} run_clm.py {model} --tokenizer_name "$TOKENIZER" --dataset_name "$DATASET" '
                f'--block_size {spec.model.seq_len} --do_train --output_dir "{here}/trained" {_flags(args)}')

    def _start(self, stage: StagePlan) -> str:
        """The model a later stage's run loads: the grown one, else the last stage's as it ended."""
        if stage.grows:
            return f"$EXPORT/{self._dir(stage.index)}/init"
        return f"$EXPORT/{self._dir(stage.index - 1)}/trained"

    def growth_target(self, spec: ScheduleSpec, stage: StagePlan) -> str:
        if stage.grows:
            return (f"on $EXPORT/{self._dir(stage.index - 1)}/trained, saved with save_pretrained to "
                    f"{self._start(stage)} (its config: {self._dir(stage.index)}/config.json)")
        return f"in the training script, which has no freezing (patch run_clm.py), on {self._start(stage)}"

    def notes(self, spec: ScheduleSpec, stages: list[StagePlan]) -> list[str]:
        m, t = spec.model, spec.training
        name = _hf_family(spec)
        family = FAMILIES[name]
        notes = ["Set TOKENIZER and DATASET (run_clm.py's --tokenizer_name, --dataset_name); the vocabulary "
                 f"is {m.vocab_size} (run_clm.py enlarges the embedding if the tokenizer has more)."]
        differs = [f"{f} {getattr(family, f)} (the plan: {getattr(m, f)})" for f in DESIGN
                   if getattr(family, f) != getattr(m, f)]
        if differs:
            notes.append(f"transformers' {HF_WRITERS[name][0]} has {', '.join(differs)}: a few parameters apart, "
                         "no counted FLOPs (costsim counts matmuls).")
        if any(not s.reset_optimizer for s in stages[1:]):
            notes.append("Each run starts a fresh AdamW: where the plan keeps the optimizer state across a boundary "
                         "(reset_optimizer false), this export cannot, unless your script carries optimizer.pt over.")
        if t.parallelism != "ddp":
            notes.append(f"The plan shards with {t.parallelism}: pass run_clm.py a DeepSpeed ZeRO config "
                         "(--deepspeed) or FSDP settings of that stage.")
        if t.lr_schedule.warmup_steps:
            notes.append("transformers warms up as lr x step/warmup_steps, costsim as lr x (step+1)/warmup_steps: "
                         "one step apart.")
        if isinstance(t.lr_schedule, WarmupStableDecayLR):
            notes.append("warmup_stable_decay with decay_type needs a recent transformers; its decay starts one "
                         "step before costsim's, and its warmup starts at min_lr_ratio x lr.")
        return notes

    def read(self, directory: Path, plan: dict) -> dict:
        n_stages = len(plan.get("stages", []))
        n_gpus = plan.get("hardware", {}).get("n_gpus", 1)
        runs = [(directory / self._dir(i) / "config.json", directory / self._dir(i) / "training_args.json")
                for i in range(n_stages)]
        # costsim/models.py maps a transformers config onto costsim's model: the same reading a spec's hf_config gets
        models = [from_hf_config(config_path) for config_path, _ in runs]
        args_path, args = runs[-1][1], read_json(runs[-1][1])
        micro = need(args, "per_device_train_batch_size", int, args_path)
        batch = micro * need(args, "gradient_accumulation_steps", int, args_path) * n_gpus
        grad_clip = need(args, "max_grad_norm", (int, float), args_path)
        first_path = runs[0][1]
        return {
            "model": models[-1].model.model_dump(mode="json", exclude_none=True),
            "training": {"micro_batch_size": micro, "batch_size": batch,
                         "precision": "bf16-mixed" if need(args, "bf16", bool, args_path) else "fp32",
                         "recompute": "full" if need(args, "gradient_checkpointing", bool, args_path) else "none",
                         "lr_schedule": _hf_schedule(read_json(first_path), first_path),
                         "weight_decay": need(args, "weight_decay", (int, float), args_path),
                         "beta1": need(args, "adam_beta1", float, args_path),
                         "beta2": need(args, "adam_beta2", float, args_path),
                         "eps": need(args, "adam_epsilon", float, args_path),
                         "grad_clip": float(grad_clip) if grad_clip else None,
                         "seed": need(args, "seed", int, args_path)},
            "stages": [{"layers": e.layers, "d_model": e.model.d_model, "n_heads": e.model.n_heads,
                        "d_ff": e.model.d_ff or 4 * e.model.d_model,
                        "tokens": need(read_json(path), "max_steps", int, path) * batch * e.model.seq_len}
                       for e, (_, path) in zip(models, runs)],
        }
