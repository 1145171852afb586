"""What every export format shares: the plan in whole steps, the format registry, and
small readers for the files a format writes."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from costsim.engine import steps_per_stage
from costsim.errors import CostsimError
from costsim.spec import ScheduleSpec

MANIFEST = "costsim_export.json"
README = "README.txt"
MANIFEST_VERSION = 1
# spec precision -> what the trainers call it (nanoGPT's dtype; transformers' bf16 flag is its == "bfloat16")
DTYPES = {"bf16-mixed": "bfloat16", "fp32": "float32"}


class ExportError(CostsimError):
    """The plan cannot be written in the asked format, or a folder cannot be read back."""


# --- the plan as trainers run it ------------------------------------------------------


@dataclass(frozen=True)
class StagePlan:
    """One stage in whole optimizer steps, its shape, and what changes before it."""

    index: int
    name: str | None
    layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    first_step: int  # global step the stage starts at
    steps: int
    tokens: int  # steps x batch x seq_len: what the trainer runs
    planned_tokens: float  # what the spec asked for
    depth_growth: str | None  # operator applied before the stage, when it deepens
    width_growth: str | None  # ... when it widens
    train: str
    n_trainable: int
    freeze_embeddings: bool
    reset_optimizer: bool

    @property
    def end_step(self) -> int:
        """Global steps done when the stage ends."""
        return self.first_step + self.steps

    @property
    def grows(self) -> bool:
        return bool(self.depth_growth or self.width_growth)

    @property
    def label(self) -> str:
        return f"stage {self.index}" + (f" {self.name!r}" if self.name else "")


def tokens_per_step(spec: ScheduleSpec) -> int:
    return spec.training.batch_size * spec.model.seq_len


def plan_stages(spec: ScheduleSpec) -> list[StagePlan]:
    steps = steps_per_stage(spec)  # costsim.estimate's rounding, so the export runs what was costed
    out: list[StagePlan] = []
    first = 0
    for i, (stage, n) in enumerate(zip(spec.stages, steps)):
        d_model, n_heads, d_ff = width = spec.stage_width(stage)
        previous = spec.stages[i - 1] if i else None
        depth_op, width_op = spec.growth_operators(i)
        out.append(StagePlan(
            index=i, name=stage.name, layers=stage.layers, d_model=d_model, n_heads=n_heads,
            n_kv_heads=spec.stage_kv_heads(stage), d_ff=d_ff, first_step=first, steps=n,
            tokens=n * tokens_per_step(spec), planned_tokens=stage.tokens,
            depth_growth=depth_op if previous and stage.layers > previous.layers else None,
            width_growth=width_op if previous and width != spec.stage_width(previous) else None,
            train=stage.train, n_trainable=spec.n_trainable_blocks(i), freeze_embeddings=stage.freeze_embeddings,
            reset_optimizer=stage.reset_optimizer,
        ))
        first += n
    return out


# --- formats: one registered class each -------------------------------------------------


class ExportFormat(ABC):
    name: ClassVar[str]
    trainer: ClassVar[str]  # as README.txt names it
    keeps_optimizer: ClassVar[bool]  # whether a stage resumes the previous stage's optimizer state

    @abstractmethod
    def refusals(self, spec: ScheduleSpec, stages: list[StagePlan]) -> list[str]:
        """What in the plan this trainer's files cannot express (empty: all of it)."""

    @abstractmethod
    def files(self, spec: ScheduleSpec, stages: list[StagePlan]) -> dict[str, str]:
        """Relative path -> text of every trainer file."""

    @abstractmethod
    def command(self, spec: ScheduleSpec, stage: StagePlan) -> str:
        """The shell command that trains ``stage`` (paths under $EXPORT)."""

    @abstractmethod
    def growth_target(self, spec: ScheduleSpec, stage: StagePlan) -> str:
        """Where the steps before ``stage`` (growth, freezing) act, and what they must leave there."""

    @abstractmethod
    def notes(self, spec: ScheduleSpec, stages: list[StagePlan]) -> list[str]:
        """Where running the files differs from the plan, each a sentence."""

    @abstractmethod
    def read(self, directory: Path, plan: dict) -> dict:
        """The spec fields the trainer files hold, as spec data. ``plan`` is the manifest's
        rest of the spec (the GPU count, whether the schedule restarts per stage)."""


FORMATS: dict[str, ExportFormat] = {}


def register(cls: type[ExportFormat]) -> type[ExportFormat]:
    FORMATS[cls.name] = cls()
    return cls


def format_named(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ExportError(f"--to {name!r}: unknown format; choose one of {', '.join(FORMATS)}")
    return FORMATS[name]


def schedule_restarts(spec: ScheduleSpec) -> bool:
    """Whether each stage runs the LR schedule on its own (one stage always does)."""
    return spec.training.lr_reset_per_stage or len(spec.stages) == 1


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ExportError(f"{path}: cannot read it ({exc.strerror}); is this a costsim export folder?") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data


def need(values: dict, key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    """``values[key]`` of type ``kind``, or a one-line error naming the file (bool is no int here)."""
    value = values.get(key)
    if value is None or not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise ExportError(f"{where}: {key} is missing or not a {_names(kind)}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _tuple(kind))


