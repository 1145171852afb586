"""An export folder: the trainer files, README.txt (the commands and growth steps per
stage) and the manifest; ``load_exported`` reads a folder back into a spec."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costsim.export.base import (
    FORMATS,
    MANIFEST,
    MANIFEST_VERSION,
    README,
    ExportError,
    ExportFormat,
    StagePlan,
    format_named,
    plan_stages,
    read_json,
    tokens_per_step,
)
from costsim.growth import OPERATORS
from costsim.spec import ScheduleSpec, parse_spec


def _growth_lines(fmt: ExportFormat, previous: StagePlan, s: StagePlan) -> list[str]:
    lines = []
    if s.depth_growth:
        lines.append(f"grow depth {previous.layers} -> {s.layers} blocks by {s.depth_growth}: "
                     f"{OPERATORS[s.depth_growth].summary}")
    if s.width_growth:
        lines.append(f"grow width d_model {previous.d_model} -> {s.d_model}, heads {previous.n_heads} -> "
                     f"{s.n_heads}, d_ff {previous.d_ff} -> {s.d_ff} by {s.width_growth}: "
                     f"{OPERATORS[s.width_growth].summary}")
    if s.grows and not s.reset_optimizer and fmt.keeps_optimizer:
        lines.append("keep the optimizer state; new parameters start with zero moments")
    return lines


def _policy_lines(previous: StagePlan | None, s: StagePlan) -> list[str]:
    """Which parameters train, said where it changes (a stage after a frozen one unfreezes)."""
    frozen = s.layers - s.n_trainable
    lines = []
    if frozen:
        lines.append(f"train: {s.train} = freeze the bottom {frozen} blocks (requires_grad False), train the top "
                     f"{s.n_trainable}")
    elif previous and previous.n_trainable < previous.layers:
        lines.append(f"unfreeze: all {s.layers} blocks train")
    if s.freeze_embeddings:
        lines.append("freeze the token and position embeddings")
    elif previous and previous.freeze_embeddings:
        lines.append("unfreeze the embeddings")
    if s.reset_optimizer:
        lines.append("start a fresh AdamW state (reset_optimizer)")
    return lines


def _shape(s: StagePlan) -> str:
    kv = f" ({s.n_kv_heads} key/value)" if s.n_kv_heads != s.n_heads else ""
    return f"{s.layers} layers, d_model {s.d_model}, {s.n_heads} heads{kv}, d_ff {s.d_ff}"


def rounding_notes(spec: ScheduleSpec, stages: list[StagePlan]) -> list[str]:
    per_step = tokens_per_step(spec)
    return [f"{s.label}: {s.planned_tokens:g} tokens is not a whole number of {per_step:,}-token steps; exported as "
            f"{s.steps:,} steps ({s.tokens:,} tokens), as costsim.estimate costs it"
            for s in stages if s.planned_tokens != s.tokens]


def _readme(fmt: ExportFormat, spec: ScheduleSpec, stages: list[StagePlan], directory: Path, notes: list[str]) -> str:
    per_step = tokens_per_step(spec)
    out = [
        f"costsim export of {repr(spec.name) if spec.name else 'a plan'} for {fmt.trainer}",
        f"{len(stages)} stage{'s' if len(stages) > 1 else ''}, {stages[-1].end_step:,} optimizer steps of "
        f"{spec.training.batch_size} sequences x {spec.model.seq_len} tokens ({per_step:,} tokens a step), "
        f"{sum(s.tokens for s in stages):,} tokens in all, on {spec.hardware.n_gpus} GPU(s).",
        "",
        "Neither the trainer nor this export grows a model, freezes blocks or carries an optimizer across a "
        "growth: the steps listed between stages are yours to apply to the checkpoint (costsim's own trainer, "
        "python -m validate.run PLAN, does all of them; validate/model.py implements every growth operator).",
        "",
        f"EXPORT={shlex.quote(str(directory.resolve()))}",
        "",
    ]
    for s in stages:
        out.append(f"{s.label}: {_shape(s)}")
        previous = stages[s.index - 1] if s.index else None
        between = (_growth_lines(fmt, previous, s) if previous else []) + _policy_lines(previous, s)
        if between and s.index:
            out.append(f"  before it, {fmt.growth_target(spec, s)}:")
        elif between:
            out.append("  while it trains:")
        out += [f"    - {line}" for line in between]
        out.append(f"  steps {s.first_step:,} to {s.end_step - 1:,} ({s.steps:,} steps, {s.tokens:,} tokens)")
        out.append(f"  run: {fmt.command(spec, s)}")
        out.append("")
    if notes:
        out += ["Notes:", *[f"  - {n}" for n in notes]]
    return "\n".join(out) + "\n"


# --- writing and reading a folder ---------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    files: list[str]  # relative to directory
    notes: list[str]


def layout_notes(spec: ScheduleSpec) -> list[str]:
    """Neither trainer's files hold a tensor/pipeline layout; the plan's is kept in the
    manifest, and the user must set it in the trainer."""
    layouts = [spec.stage_parallel(i) for i in range(len(spec.stages))]
    if all(layout == (1, 1) for layout in layouts):
        return []
    if len(set(layouts)) == 1:
        (tp, pp), = set(layouts)
        return [f"The plan splits each model {tp}-way by tensor and {pp}-way by pipeline parallelism, which these "
                "files do not express: set it in your trainer (its memory and time were costed with it)."]
    per_stage = ", ".join(f"stage {i}: {tp} x {pp}" for i, (tp, pp) in enumerate(layouts))
    return [f"The plan changes its tensor x pipeline split from stage to stage ({per_stage}), which these files do "
            "not express: set each stage's in your trainer (its memory and time were costed with them)."]


def export_plan(spec: ScheduleSpec, to: str, out: str | os.PathLike[str], force: bool = False) -> ExportResult:
    """Write ``spec`` as format ``to``'s files into folder ``out`` (created; an existing
    non-empty one only with ``force``)."""
    fmt = format_named(to)
    stages = plan_stages(spec)
    problems = fmt.refusals(spec, stages)
    if problems:
        others = [f.name for f in FORMATS.values() if f is not fmt and not f.refusals(spec, stages)]
        hint = f"; use --to {others[0]}" if others else "; no format costsim exports can"
        raise ExportError(f"{fmt.name} cannot express this plan: {'; '.join(problems)}{hint}")
    directory = _prepare(Path(out), force)
    notes = rounding_notes(spec, stages) + layout_notes(spec) + fmt.notes(spec, stages)
    files = fmt.files(spec, stages)
    files[README] = _readme(fmt, spec, stages, directory, notes)
    for name, text in files.items():
        (directory / name).parent.mkdir(exist_ok=True)
        (directory / name).write_text(text)
    data = spec.model_dump(mode="json", exclude_none=True)
    rest = _subtract(data, fmt.read(directory, data))  # what the trainer files do not hold
    names = sorted(files) + [MANIFEST]
    manifest = {"costsim_export": MANIFEST_VERSION, "format": fmt.name, "files": names, "notes": notes,
                "not_in_trainer_files": rest}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return ExportResult(directory, names, notes)


def load_exported(directory: str | os.PathLike[str], to: str | None = None) -> ScheduleSpec:
    """The spec an export folder realises: the trainer files' fields, the manifest's rest."""
    directory = Path(directory)
    manifest = read_json(directory / MANIFEST)
    if manifest.get("costsim_export") != MANIFEST_VERSION:
        raise ExportError(f"{directory / MANIFEST}: not a costsim export (version {MANIFEST_VERSION})")
    name = manifest.get("format")
    fmt = format_named(str(name))
    if to is not None and to != fmt.name:
        raise ExportError(f"{directory}: holds a {fmt.name} export, not {to}")
    rest = manifest.get("not_in_trainer_files")
    if not isinstance(rest, dict):
        raise ExportError(f"{directory / MANIFEST}: not_in_trainer_files is missing")
    return parse_spec(_merge(rest, fmt.read(directory, rest)))


def _subtract(full: Any, carried: Any) -> Any:
    """``full`` without what ``carried`` holds (dicts by key, lists by position)."""
    if isinstance(full, dict) and isinstance(carried, dict):
        out = {}
        for key, value in full.items():
            if key not in carried:
                out[key] = value
            elif isinstance(value, (dict, list)) and (rest := _subtract(value, carried[key])) not in ({}, None):
                out[key] = rest
        return out
    if isinstance(full, list) and isinstance(carried, list) and len(full) == len(carried):
        return [_subtract(a, b) for a, b in zip(full, carried)]  # stages keep their positions, even when empty
    return None


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base[k], v) if k in base else v for k, v in over.items()}}
    if isinstance(base, list) and isinstance(over, list) and len(base) == len(over):
        return [_merge(a, b) for a, b in zip(base, over)]
    return over


def _prepare(directory: Path, force: bool) -> Path:
    """The output folder, created or (with ``force``) cleared of a previous export's files."""
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"--out {directory}: is a file; give a folder")
    if directory.is_dir() and any(directory.iterdir()):
        if not force:
            raise ExportError(f"--out {directory}: the folder is not empty; pick another or pass --force")
        _remove_previous(directory)
    elif not directory.exists():
        if not directory.parent.is_dir():
            raise ExportError(f"--out {directory}: folder {directory.parent} does not exist; create it first")
        directory.mkdir()
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ExportError(f"--out {directory}: the folder is not writable; pick another")
    return directory


def _remove_previous(directory: Path) -> None:
    """Files a previous export listed, so no stale stage outlives a shorter plan; nothing else."""
    try:
        names = json.loads((directory / MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return
    root = directory.resolve()
    for name in names if isinstance(names, list) else []:
        path = (directory / str(name)).resolve()
        if root in path.parents and path.is_file():
            path.unlink()
            if path.parent != root and not any(path.parent.iterdir()):
                path.parent.rmdir()
