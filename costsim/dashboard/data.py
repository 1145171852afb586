"""Plain typed data for the dashboard pages, read from the store and from spec files.

Everything a page shows is computed here, as frozen dataclasses of numbers and
strings, so that tests check values without parsing figures; ``draw`` only turns
these objects into plotly figures. Each page's data says why it is empty
(``why_empty``) and what it had to leave out (``notes``), because an empty chart
that does not say "run python -m validate.run first" helps nobody.

A schedule comes from one of two places: a stored run (its ``runs.spec_json``) or a
spec file given on the command line. A schedule with one stage is the baseline
(the full model trained from the start); more stages is growth.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from costsim.calibration import MeasuredStep, measured_step, relative_errors, shape_of
from costsim.engine import ScheduleEstimate, estimate, steps_per_stage
from costsim.errors import CostsimError
from costsim.flops import micro_batch_flops
from costsim.hardware import load_gpu, preset_for_device
from costsim.memory import saved_activation_bytes
from costsim.planner import ScheduleSummary
from costsim.profile import profile_for
from costsim.spec import HardwareSpec, ScheduleSpec, parse_spec
from costsim.store import Store

if TYPE_CHECKING:
    from costsim.dashboard.checks import CheckData
    from costsim.loss import LossProfile

EXAMPLE_SPEC = "examples/tiny_three_stage.yaml"

# --- schedules: stored runs and spec files ------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A schedule to show: a stored run's spec (``run_id`` set) or a spec file's."""

    label: str
    spec: ScheduleSpec
    run_id: str | None = None
    status: str | None = None  # the run's effective status (run_summary); None for a spec file
    device: str | None = None  # where the run trained; None for a spec file

    @property
    def role(self) -> Literal["baseline", "growth"]:
        """One stage trains the full model from the start: the baseline growth is compared to."""
        return "baseline" if len(self.spec.stages) == 1 else "growth"


@dataclass(frozen=True)
class Selection:
    """The schedules every page draws, and why some selected runs could not be used."""

    db: str
    schedules: tuple[Schedule, ...]
    notes: tuple[str, ...] = ()

    @property
    def runs(self) -> tuple[Schedule, ...]:
        return tuple(s for s in self.schedules if s.run_id is not None)

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(s.run_id for s in self.runs if s.run_id is not None)

    def no_runs_hint(self) -> str:
        return f"no runs stored yet in {self.db} — run python -m validate.run {EXAMPLE_SPEC} --db {self.db}"

    def no_schedules_hint(self) -> str:
        return f"{self.no_runs_hint()}, or pass --spec plan.yaml"


def gpu_label(hardware: HardwareSpec) -> str:
    """Where a spec's time and cost are estimated: its GPU preset ("h200", "8× h200"), or
    an inline GPU's name. Preset names, not product names, so memory sizes in product
    names ("141GB") do not stand beside the pages' GiB."""
    gpu = hardware.gpu if isinstance(hardware.gpu, str) else hardware.gpu.name
    return gpu if hardware.n_gpus == 1 else f"{hardware.n_gpus}× {gpu}"


def device_label(device: str | None) -> str:
    """Where a run trained, as a GPU preset when one matches (so it can be compared with a
    spec's ``gpu_label``), else the device name as stored ("cpu")."""
    if not device:
        return "unknown device"
    return preset_for_device(device) or device


def store_exists(store: Store) -> bool:
    """Whether anything was ever written; reading a store that does not exist would create it."""
    return store.path.exists() or store.spool_dir.exists()


def _read(store: Store, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Rows of ``sql``, or none when there is no store yet (without creating one)."""
    return store.query(sql, params) if store_exists(store) else []


def select(store: Store, run_ids: Sequence[str] | None = None,
           specs: Mapping[str, ScheduleSpec] | None = None) -> Selection:
    """Stored runs (all of them when ``run_ids`` is None) followed by the given specs (label -> spec).

    An unknown run id is the user's mistake and raises ``CostsimError``; a stored spec
    that no longer parses (the spec format moved on) is left out with a note, so one old
    run does not take the whole dashboard down.
    """
    rows = _read(store, "SELECT run_id, status, device, spec_json FROM run_summary ORDER BY started_at, run_id")
    by_id = {row["run_id"]: row for row in rows}
    if run_ids is not None:
        unknown = [run_id for run_id in run_ids if run_id not in by_id]
        if unknown:
            stored = ", ".join(by_id) if by_id else "none"
            raise CostsimError(
                f"run {unknown[0]!r} is not in {store.path} (stored runs: {stored}); "
                f"python -m validate.run --list --db {store.path} lists them"
            )
        rows = [by_id[run_id] for run_id in dict.fromkeys(run_ids)]
    schedules: list[Schedule] = []
    notes: list[str] = []
    for row in rows:
        try:
            spec = parse_spec(json.loads(row["spec_json"]))
        except (CostsimError, json.JSONDecodeError) as exc:
            notes.append(f"run {row['run_id']}: its stored spec no longer parses ({exc}); left out")
            continue
        name = f" · {spec.name}" if spec.name else ""
        status = "" if row["status"] == "complete" else f" ({row['status']})"
        schedules.append(Schedule(label=f"{row['run_id']}{name}{status}", spec=spec, run_id=row["run_id"],
                                  status=row["status"], device=row["device"]))
    schedules += [Schedule(label=label, spec=spec) for label, spec in (specs or {}).items()]
    return Selection(db=str(store.path), schedules=tuple(schedules), notes=tuple(notes))


def _rows_of(store: Store, sql: str, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of ``sql``, which must filter ``run_id IN (SELECT unnest(?))``; none for no runs."""
    return _read(store, sql, [list(run_ids)]) if run_ids else []


def _rows_by_run(store: Store, sql: str, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Rows of ``sql`` (which must filter ``run_id IN (SELECT unnest(?))``) grouped by run."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _rows_of(store, sql, run_ids):
        grouped[row["run_id"]].append(row)
    return grouped


# --- 1. schedule timeline --------------------------------------------------------------


@dataclass(frozen=True)
class TimelineStage:
    """One stage as a span of cumulative tokens, with its depth, width and what trains."""

    index: int
    name: str | None
    start_tokens: float
    end_tokens: float
    layers: int
    d_model: int
    train: str
    n_trainable_blocks: int
    freeze_embeddings: bool
    pending: bool  # a run's stage not recorded yet: its tokens are the spec's plan, not what ran

    @property
    def frozen(self) -> bool:
        """Some active blocks get no gradient (train: new or top:K below the depth)."""
        return self.n_trainable_blocks < self.layers


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happened at a step: growth, an optimizer reset."""

    step: int
    tokens: float
    kind: str
    detail: str | None


@dataclass(frozen=True)
class Timeline:
    label: str
    role: Literal["baseline", "growth"]
    stages: tuple[TimelineStage, ...]
    events: tuple[TimelineEvent, ...]


@dataclass(frozen=True)
class TimelineData:
    timelines: tuple[Timeline, ...]
    why_empty: str | None
    notes: tuple[str, ...] = ()


def _spec_events(spec: ScheduleSpec) -> list[TimelineEvent]:
    """The growth a spec implies at each stage boundary, named as the trainer logs it."""
    events = []
    step = 0
    tokens = 0.0
    steps = steps_per_stage(spec)
    for i, stage in enumerate(spec.stages):
        if i:
            previous = spec.stages[i - 1]
            depth_op, width_op = spec.growth_operators(i)
            old_width, new_width = spec.stage_width(previous)[0], spec.stage_width(stage)[0]
            if new_width != old_width:
                events.append(TimelineEvent(step, tokens, "grow_width", f"{old_width}->{new_width} by {width_op}"))
            if stage.layers > previous.layers:
                detail = f"{previous.layers}->{stage.layers} by {depth_op}"
                events.append(TimelineEvent(step, tokens, "grow_depth", detail))
        step += steps[i]
        tokens += stage.tokens
    return events


def _timeline(schedule: Schedule, recorded_tokens: Mapping[int, float], events: list[TimelineEvent]) -> Timeline:
    spec = schedule.spec

    def pending(index: int) -> bool:
        return schedule.run_id is not None and index not in recorded_tokens

    stages = []
    start = 0.0
    for i, stage in enumerate(spec.stages):
        tokens = recorded_tokens.get(i, stage.tokens)
        stages.append(TimelineStage(
            index=i, name=stage.name, start_tokens=start, end_tokens=start + tokens, layers=stage.layers,
            d_model=spec.stage_width(stage)[0], train=stage.train, n_trainable_blocks=spec.n_trainable_blocks(i),
            freeze_embeddings=stage.freeze_embeddings, pending=pending(i),
        ))
        start += tokens
    return Timeline(label=schedule.label, role=schedule.role, stages=tuple(stages), events=tuple(events))


def timeline_data(store: Store, selection: Selection) -> TimelineData:
    """Active layers and width against cumulative tokens, stage by stage.

    A run's stage spans are the tokens it recorded for each finished stage (they differ
    from the spec under ``--max-steps`` or ``--tiny``), the spec's for stages not yet
    trained; its events are the ones it logged. A spec file's events are the growth its
    stages imply.
    """
    recorded = _rows_by_run(store, "SELECT run_id, stage_index, tokens FROM stages "
                                   "WHERE run_id IN (SELECT unnest(?)) ORDER BY stage_index", selection.run_ids)
    logged = _rows_by_run(store, "SELECT run_id, step, kind, detail FROM events "
                                 "WHERE run_id IN (SELECT unnest(?)) ORDER BY step, kind", selection.run_ids)
    timelines = []
    for schedule in selection.schedules:
        if schedule.run_id is None:
            timelines.append(_timeline(schedule, {}, _spec_events(schedule.spec)))
            continue
        tokens_per_step = schedule.spec.training.batch_size * schedule.spec.model.seq_len
        events = [TimelineEvent(row["step"], float(row["step"] * tokens_per_step), row["kind"], row["detail"])
                  for row in logged[schedule.run_id]]
        stage_tokens = {row["stage_index"]: row["tokens"] for row in recorded[schedule.run_id]}
        timelines.append(_timeline(schedule, stage_tokens, events))
    why_empty = None if timelines else selection.no_schedules_hint()
    return TimelineData(timelines=tuple(timelines), why_empty=why_empty, notes=selection.notes)


# --- 2. loss -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LossSeries:
    """A validation-loss curve against counted FLOPs and wall time.

    ``lower``/``upper`` bound a predicted curve's interval (None when it has none, and
    always for measured curves). ``vocab_size`` tells the tokenizer (256: byte-level;
    losses of different vocabularies are not comparable). ``time_on`` is the device
    ``x_time_s`` is on: where a run trained (measured), the spec's GPU (predicted).
    """

    label: str
    x_flops: tuple[float, ...]
    x_time_s: tuple[float, ...]
    loss: tuple[float, ...]
    lower: tuple[float, ...] | None
    upper: tuple[float, ...] | None
    kind: Literal["measured", "predicted"]
    vocab_size: int
    time_on: str
    role: Literal["baseline", "growth"] = "growth"
    schedule: str = ""  # the schedule's label, shared by its measured and predicted curves; default ``label``

    def __post_init__(self) -> None:
        lengths = {len(self.x_flops), len(self.x_time_s), len(self.loss),
                   *(len(bound) for bound in (self.lower, self.upper) if bound is not None)}
        if len(lengths) > 1:
            raise ValueError(f"loss series {self.label!r}: x_flops, x_time_s, loss, lower and upper differ in length")

    @property
    def key(self) -> str:
        """Which schedule the curve belongs to: one colour per key on the page."""
        return self.schedule or self.label


@dataclass(frozen=True)
class LossData:
    series: tuple[LossSeries, ...]
    why_empty: str | None
    notes: tuple[str, ...] = ()

    def measured(self) -> tuple[LossSeries, ...]:
        return tuple(s for s in self.series if s.kind == "measured")

    def predicted(self) -> tuple[LossSeries, ...]:
        return tuple(s for s in self.series if s.kind == "predicted")

    def vocab_sizes(self) -> tuple[int, ...]:
        """The tokenizers on the page, smallest vocabulary first: one figure each."""
        return tuple(sorted({s.vocab_size for s in self.series}))

    def for_vocab(self, vocab_size: int) -> tuple[LossSeries, ...]:
        return tuple(s for s in self.series if s.vocab_size == vocab_size)


def _floats(values: Iterable[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def predicted_loss_series(spec: ScheduleSpec, label: str = "", role: Literal["baseline", "growth"] = "growth",
                          steps: Sequence[int] | None = None,
                          profile: LossProfile | None = None) -> list[LossSeries] | None:
    """Predicted validation-loss curves for ``spec``, or None when costsim has no loss model.

    Asks ``costsim.loss.predict_curve(spec, steps=..., profile=...)``, which returns one
    curve (or a list) with sequences ``x_flops`` (counted FLOPs so far), ``x_time_s``
    (predicted time on the spec's hardware), ``loss``, ``lower``/``upper`` (the
    prediction interval, or None) and a ``label`` (the loss profile). ``steps`` are the
    optimizer steps a run really took per stage, so that its prediction covers the same
    tokens; ``profile`` is a loss profile to use instead of the spec's default one.
    Only a missing module or function means "no predictions"; an error inside the
    model is a bug and is raised.
    """
    try:
        from costsim.loss import predict_curve
    except ImportError as exc:
        if exc.name != "costsim.loss":  # the loss model exists but one of its own imports failed
            raise
        return None
    options: dict[str, Any] = {} if steps is None else {"steps": list(steps)}
    if profile is not None:
        options["profile"] = profile
    result = predict_curve(spec, **options)
    curves = list(result) if isinstance(result, (list, tuple)) else [result]
    return [
        LossSeries(
            label=f"{label} predicted" + (f" ({curve.label})" if getattr(curve, "label", None) else ""), schedule=label,
            x_flops=_floats(curve.x_flops), x_time_s=_floats(curve.x_time_s), loss=_floats(curve.loss),
            lower=_floats(getattr(curve, "lower", None)), upper=_floats(getattr(curve, "upper", None)),
            kind="predicted", vocab_size=spec.model.vocab_size, time_on=gpu_label(spec.hardware), role=role,
        )
        for curve in curves
    ]


@dataclass(frozen=True)
class Predictions:
    """Predicted loss curves by schedule label; ``note`` says why there are none, or how to read them."""

    by_label: Mapping[str, tuple[LossSeries, ...]]
    note: str | None = None


def loss_predictions(store: Store, selection: Selection) -> Predictions:
    """Ask the loss model once per schedule; the loss and calibration pages share the answer.

    A run that recorded every stage is predicted at the steps it took (``--max-steps``
    and ``--tokens-scale`` change them), so predicted and measured end at the same tokens.
    """
    recorded = _rows_by_run(store, "SELECT run_id, steps FROM stages WHERE run_id IN (SELECT unnest(?)) "
                                   "ORDER BY stage_index", selection.run_ids)
    by_label: dict[str, tuple[LossSeries, ...]] = {}
    for schedule in selection.schedules:
        steps = [row["steps"] for row in recorded[schedule.run_id]] if schedule.run_id else []
        series = predicted_loss_series(schedule.spec, schedule.label, schedule.role,
                                       steps if len(steps) == len(schedule.spec.stages) else None)
        if series is None:
            return Predictions({}, "no predicted curves: costsim.loss.predict_curve does not exist yet "
                                   "(measurements only)")
        by_label[schedule.label] = tuple(series)
    note = ("predicted time is on each spec's hardware (hardware.gpu), measured time on the device the run trained "
            "on; they share a time axis only where that is the same device" if selection.runs and by_label else None)
    return Predictions(by_label, note)


def loss_data(store: Store, selection: Selection, predictions: Predictions) -> LossData:
    """Measured validation loss per run (from ``evals``) and predicted curves where costsim has a loss model."""
    evals = _rows_by_run(store, "SELECT run_id, flops_counted, wall_time_s, val_loss FROM evals "
                                "WHERE run_id IN (SELECT unnest(?)) ORDER BY step", selection.run_ids)
    series = [
        LossSeries(label=schedule.label, x_flops=tuple(r["flops_counted"] for r in evals[schedule.run_id]),
                   x_time_s=tuple(r["wall_time_s"] for r in evals[schedule.run_id]),
                   loss=tuple(r["val_loss"] for r in evals[schedule.run_id]), lower=None, upper=None,
                   kind="measured", vocab_size=schedule.spec.model.vocab_size,
                   time_on=device_label(schedule.device), role=schedule.role)
        for schedule in selection.runs if evals[schedule.run_id]
    ]
    series += [s for curves in predictions.by_label.values() for s in curves]
    notes = selection.notes + ((predictions.note,) if predictions.note else ())
    if series:
        why_empty = None
    elif selection.runs:
        why_empty = ("the selected runs have no evaluations yet (validate.run evaluates every --eval-every steps "
                     "and at the end)")
    else:
        why_empty = selection.no_runs_hint()
    return LossData(series=tuple(series), why_empty=why_empty, notes=notes)


# --- 3. cost breakdown -------------------------------------------------------------------


@dataclass(frozen=True)
class CostBreakdown:
    """costsim's per-stage estimate of one schedule, on the GPU its spec names."""

    label: str
    role: Literal["baseline", "growth"]
    estimate: ScheduleEstimate
    gpu_memory_bytes: float  # one GPU's memory: the line a stage's peak must stay under
    gpu: str  # the spec's GPU preset ("h200", "8× h200"; gpu_label), for labels


@dataclass(frozen=True)
class CostData:
    breakdowns: tuple[CostBreakdown, ...]
    why_empty: str | None
    notes: tuple[str, ...] = ()


def cost_data(selection: Selection) -> CostData:
    """FLOPs, time, memory and money per stage of every selected schedule (``costsim.estimate``)."""
    breakdowns = tuple(
        CostBreakdown(label=s.label, role=s.role, estimate=estimate(s.spec),
                      gpu_memory_bytes=s.spec.hardware.resolved_gpu().memory_bytes, gpu=gpu_label(s.spec.hardware))
        for s in selection.schedules
    )
    return CostData(breakdowns=breakdowns, why_empty=None if breakdowns else selection.no_schedules_hint(),
                    notes=selection.notes)


# --- 4. calibration ----------------------------------------------------------------------

Quantity = Literal["flops_counted", "memory", "step_time", "val_loss"]


@dataclass(frozen=True)
class CalibrationPoint:
    """One prediction next to what was measured."""

    quantity: Quantity
    source: Literal["run stage", "cost measurement", "run eval"]
    label: str
    device: str
    predicted: float
    measured: float
    detail: str  # what exactly was compared, e.g. "saved activations (CPU)"

    @property
    def relative_error(self) -> float:
        """Signed, as ``costsim.calibration.relative_errors`` reports it: predicted/measured - 1."""
        return self.predicted / self.measured - 1


@dataclass(frozen=True)
class StoredCalibration:
    """A fitted cost profile from the ``calibrations`` table and its held-out errors."""

    profile_name: str
    device: str
    created_at: datetime
    holdout: tuple[tuple[str, float, float, str], ...]  # (quantity, median |err|, worst |err|, worst case)


@dataclass(frozen=True)
class CalibrationData:
    points: tuple[CalibrationPoint, ...]
    profiles: tuple[StoredCalibration, ...]
    why_empty: str | None
    notes: tuple[str, ...] = ()

    def quantities(self) -> tuple[Quantity, ...]:
        return tuple(dict.fromkeys(p.quantity for p in self.points))


def _memory_basis(device: str) -> str:
    """What the stored memory numbers mean: a CPU has no allocator peak, so the trainer
    and the sweep compare the exactly countable saved activations instead."""
    return "saved activations (CPU)" if device == "cpu" else "peak allocated"


def _stage_points(store: Store, selection: Selection) -> tuple[list[CalibrationPoint], list[str]]:
    """Each stored stage's measurements next to the predictions the trainer stored beside them."""
    rows = _rows_by_run(store, "SELECT * FROM stages WHERE run_id IN (SELECT unnest(?)) ORDER BY stage_index",
                        selection.run_ids)
    points: list[CalibrationPoint] = []
    untimed = 0
    for schedule in selection.runs:
        device = schedule.device or ""
        for row in rows[schedule.run_id]:
            where = f"{row['run_id']} stage {row['stage_index']}"
            points.append(CalibrationPoint("flops_counted", "run stage", where, device,
                                           row["flops_counted_predicted_per_step"], row["flops_counted_per_step"],
                                           "counted FLOPs per step"))
            if row["peak_memory_bytes"] and row["peak_memory_predicted_bytes"] is not None:
                points.append(CalibrationPoint("memory", "run stage", where, device, row["peak_memory_predicted_bytes"],
                                               row["peak_memory_bytes"], _memory_basis(device)))
            if row.get("peak_reserved_bytes") and row.get("peak_reserved_predicted_bytes") is not None:
                points.append(CalibrationPoint("memory", "run stage", where, device,
                                               row["peak_reserved_predicted_bytes"], row["peak_reserved_bytes"],
                                               "peak reserved"))
            if row["step_time_predicted_s"] is None:
                untimed += 1
            else:
                points.append(CalibrationPoint("step_time", "run stage", where, device, row["step_time_predicted_s"],
                                               row["step_time_s"], "median step time"))
    if not untimed:
        return points, []
    return points, [f"{untimed} run stage(s) have no predicted step time (runs on a CPU have no calibrated profile)"]


def _measurement_points(store: Store) -> tuple[list[CalibrationPoint], list[str]]:
    """Each cost measurement against costsim's prediction for its shape.

    Counted FLOPs (per micro-batch) on every device; on a GPU that costsim has a preset
    for, step time and peak allocated memory through ``relative_errors`` with the
    profile costsim would use there; on the CPU the saved activations.
    """
    rows = _read(store, "SELECT * FROM cost_measurements ORDER BY device, name")
    if not rows:
        return [], []
    cases = [measured_step(row) for row in rows]
    flops = micro_batch_flops(shape_of(cases)).counted
    points = [CalibrationPoint("flops_counted", "cost measurement", c.name, row["device"], float(f),
                               row["counted_flops"], "counted FLOPs per micro-batch")
              for c, row, f in zip(cases, rows, flops)]
    cpu = [(c, row) for c, row in zip(cases, rows) if row["device"] == "cpu" and row["saved_activation_bytes"]]
    if cpu:
        predicted = saved_activation_bytes(shape_of([c for c, _ in cpu]))
        points += [CalibrationPoint("memory", "cost measurement", c.name, "cpu", float(p),
                                    row["saved_activation_bytes"], _memory_basis("cpu"))
                   for (c, row), p in zip(cpu, predicted)]
    notes = []
    by_device: dict[str, list[tuple[MeasuredStep, Mapping[str, Any]]]] = defaultdict(list)
    for c, row in zip(cases, rows):
        if row["device"] != "cpu":
            by_device[row["device"]].append((c, row))
    for device, group in by_device.items():
        preset = preset_for_device(device)
        if preset is None:
            notes.append(f"{len(group)} measurement(s) on {device!r}: no GPU preset matches, "
                         "so only FLOPs are compared")
            continue
        profile = profile_for(preset, None)
        errors = relative_errors([c for c, _ in group], profile, load_gpu(preset))
        for (c, row), time_error, memory_error in zip(group, errors["step_time"], errors["peak_allocated"]):
            detail = f"profile {profile.name} on {preset}"
            points.append(CalibrationPoint("step_time", "cost measurement", c.name, device,
                                           row["step_time_s"] * (1 + time_error), row["step_time_s"], detail))
            points.append(CalibrationPoint("memory", "cost measurement", c.name, device,
                                           row["peak_alloc_bytes"] * (1 + memory_error), row["peak_alloc_bytes"],
                                           f"peak allocated, {detail}"))
    return points, notes


def _loss_points(store: Store, selection: Selection, predictions: Predictions) -> list[CalibrationPoint]:
    """Measured validation losses against the predicted curve at the same counted FLOPs
    (interpolated; only inside the predicted range)."""
    evals = _rows_by_run(store, "SELECT run_id, step, flops_counted, val_loss FROM evals "
                                "WHERE run_id IN (SELECT unnest(?)) ORDER BY step", selection.run_ids)
    points = []
    for schedule in selection.runs:
        for curve in predictions.by_label.get(schedule.label, ())[:1]:  # the first curve is the schedule's own
            x, y = np.asarray(curve.x_flops), np.asarray(curve.loss)
            for row in evals[schedule.run_id]:
                if x.size and x[0] <= row["flops_counted"] <= x[-1]:
                    points.append(CalibrationPoint(
                        "val_loss", "run eval", f"{schedule.run_id} step {row['step']}", schedule.device or "",
                        float(np.interp(row["flops_counted"], x, y)), row["val_loss"], "validation loss"))
    return points


def _stored_calibrations(store: Store) -> list[StoredCalibration]:
    """Stored profiles with the held-out summary ``fit_profile`` writes (tolerating missing parts)."""
    profiles = []
    for row in _read(store, "SELECT profile_name, device, created_at, holdout_report_json FROM calibrations "
                            "ORDER BY created_at"):
        report = json.loads(row["holdout_report_json"]) if row["holdout_report_json"] else {}
        holdout = report.get("holdout", {}) if isinstance(report, dict) else {}
        profiles.append(StoredCalibration(
            profile_name=row["profile_name"], device=row["device"], created_at=row["created_at"],
            holdout=tuple(
                (key, value.get("median_abs_rel_error", math.nan), value.get("worst_abs_rel_error", math.nan),
                 str(value.get("worst_case", "")))
                for key, value in holdout.items() if isinstance(value, dict)
            ),
        ))
    return profiles


def calibration_data(store: Store, selection: Selection, predictions: Predictions) -> CalibrationData:
    """Predicted against measured counted FLOPs, memory, step time and (with a loss model) validation loss."""
    stage_points, stage_notes = _stage_points(store, selection)
    measurement_points, measurement_notes = _measurement_points(store)
    points = tuple(stage_points + measurement_points + _loss_points(store, selection, predictions))
    points = tuple(p for p in points if p.measured)  # a zero measurement has no relative error
    profiles = tuple(_stored_calibrations(store))
    why_empty = None if points or profiles else (
        f"nothing to compare yet in {selection.db}: no run stages (python -m validate.run {EXAMPLE_SPEC} "
        f"--db {selection.db}) and no cost measurements (python -m validate.measure --db {selection.db})"
    )
    return CalibrationData(points=points, profiles=profiles, why_empty=why_empty,
                           notes=selection.notes + tuple(stage_notes + measurement_notes))


# --- 5. search ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    number: int
    state: str
    params: Mapping[str, Any]
    values: tuple[float, ...] | None  # None: the trial did not finish

    @property
    def infeasible(self) -> bool:
        """Finished with a non-finite objective: how costsim.search marks a candidate that
        cannot be built in a multi-objective study (its constraints are not stored)."""
        return self.values is not None and not all(math.isfinite(v) for v in self.values)

    @property
    def complete(self) -> bool:
        return self.state.upper() == "COMPLETE" and self.values is not None and not self.infeasible


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished search reported (``search_results``): its budget, the best
    schedule, and how it compares with full training and the paper's schedule."""

    created_at: datetime
    budget: Mapping[str, float]
    best_spec: ScheduleSpec
    best_timeline: Timeline
    comparison: tuple[tuple[str, ScheduleSummary], ...]  # (which schedule, its loss and costs), best first


@dataclass(frozen=True)
class Study:
    """One Optuna study. Objectives are minimised: ``search_trials`` records no directions,
    and costsim.search minimises every objective it offers (loss, time, cost)."""

    name: str
    objectives: tuple[str, ...]
    trials: tuple[Trial, ...]
    outcome: SearchOutcome | None = None

    def complete(self) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if t.complete)

    def best_so_far(self, objective: int = 0) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """(trial numbers, lowest value of ``objective`` up to each) over the complete trials."""
        trials = self.complete()
        values = np.minimum.accumulate([t.values[objective] for t in trials]) if trials else np.array([])
        return tuple(t.number for t in trials), tuple(float(v) for v in values)

    def best(self) -> tuple[Trial, ...]:
        """The best trial (one objective) or the Pareto front (several), by trial number."""
        trials = self.complete()
        if len(self.objectives) == 1:
            return (min(trials, key=lambda t: t.values[0]),) if trials else ()
        return tuple(t for t in trials if not any(_dominates(other.values, t.values) for other in trials))


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (minimising)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


@dataclass(frozen=True)
class SearchData:
    studies: tuple[Study, ...]
    why_empty: str | None
    notes: tuple[str, ...] = ()


def _values(text: str | None) -> tuple[tuple[str, ...], tuple[float, ...]] | None:
    """(objective names, values) from ``values_json``: a list of numbers (Optuna's
    ``trial.values``) or an object of named numbers; None when the trial has none.
    Infinity and NaN are kept: they mark an infeasible trial."""
    if text is None:
        return None
    data = json.loads(text)
    if data is None:
        return None
    if isinstance(data, (int, float)):
        data = [data]
    if isinstance(data, dict):
        names, values = tuple(data), tuple(data.values())
    elif isinstance(data, list):
        names, values = tuple(f"objective {i}" for i in range(len(data))), tuple(data)
    else:
        raise ValueError(f"values_json must be a list or an object of numbers, got {text[:60]!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"values_json holds a value that is not a number: {text[:60]!r}")
    return names, tuple(float(v) for v in values)


def _study_trials(name: str, rows: list[dict[str, Any]], notes: list[str]) -> tuple[tuple[str, ...], list[Trial]]:
    """A study's objective names (from its first finished trial) and its readable trials."""
    objectives: tuple[str, ...] | None = None
    trials = []
    for row in rows:
        try:
            parsed = _values(row["values_json"])
            params = json.loads(row["params_json"])
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            notes.append(f"study {name}, trial {row['trial_number']}: {exc}; left out")
            continue
        if parsed is not None:
            objectives = objectives or parsed[0]
            if len(parsed[1]) != len(objectives):
                notes.append(f"study {name}, trial {row['trial_number']}: {len(parsed[1])} objective values, "
                             f"the study has {len(objectives)}; left out")
                continue
        trials.append(Trial(number=row["trial_number"], state=row["state"], params=params,
                            values=parsed[1] if parsed else None))
    return objectives or ("objective 0",), trials


COMPARED = (("baseline", "compute-optimal full training"), ("paper", "the paper's incremental schedule"))


def _outcome(name: str, row: Mapping[str, Any], notes: list[str]) -> SearchOutcome | None:
    """The newest ``search_results`` row of a study, or None (with a note) when it cannot be read."""
    try:
        spec = parse_spec(json.loads(row["best_spec_json"]))
        report = json.loads(row["report_json"])
        budget = {key: value for key, value in json.loads(row["budget_json"]).items() if value is not None}
        best = report["best"]
        comparison = [(f"best {i + 1}" if len(best) > 1 else "best", ScheduleSummary.from_report(summary))
                      for i, summary in enumerate(best)]
        comparison += [(title, ScheduleSummary.from_report(report[key])) for key, title in COMPARED if report.get(key)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        notes.append(f"study {name}: its stored result cannot be read ({exc}); shown without it")
        return None
    timeline = _timeline(Schedule(label=f"{name}: best schedule", spec=spec), {}, _spec_events(spec))
    return SearchOutcome(created_at=row["created_at"], budget=budget, best_spec=spec, best_timeline=timeline,
                         comparison=tuple(comparison))


def search_data(store: Store) -> SearchData:
    """Every study in ``search_trials`` (and ``search_results``): trials in order, the newest row of
    each trial (a resumed search may store a trial again), and the newest reported outcome.

    A trial whose ``values_json`` cannot be read, or whose number of objectives differs
    from the study's, is left out with a note rather than failing the page.
    """
    rows = _read(store, "SELECT study_name, trial_number, state, params_json, values_json FROM search_trials "
                        "QUALIFY row_number() OVER (PARTITION BY study_name, trial_number "
                        "                           ORDER BY created_at DESC) = 1 "
                        "ORDER BY study_name, trial_number")
    results = {row["study_name"]: row for row in _read(
        store, "SELECT * FROM search_results "
               "QUALIFY row_number() OVER (PARTITION BY study_name ORDER BY created_at DESC) = 1")}
    by_study: dict[str, list[dict[str, Any]]] = {name: [] for name in sorted(results)}
    for row in rows:
        by_study.setdefault(row["study_name"], []).append(row)
    studies, notes = [], []
    for name in sorted(by_study):
        objectives, trials = _study_trials(name, by_study[name], notes)
        outcome = _outcome(name, results[name], notes) if name in results else None
        studies.append(Study(name=name, objectives=objectives, trials=tuple(trials), outcome=outcome))
    why_empty = None if studies else (
        f"no search trials stored yet in {store.path} — run python -m costsim.search --budget 1e19 --db {store.path}"
    )
    return SearchData(studies=tuple(studies), why_empty=why_empty, notes=tuple(notes))


# --- everything ------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardData:
    db: str
    timeline: TimelineData
    loss: LossData
    cost: CostData
    calibration: CalibrationData
    search: SearchData
    check: CheckData


def dashboard_data(store: Store, run_ids: Sequence[str] | None = None,
                   specs: Mapping[str, ScheduleSpec] | None = None) -> DashboardData:
    """Every page's data: the runs ``run_ids`` (default all stored) and the specs (label -> spec)."""
    from costsim.dashboard.checks import check_data  # it builds on this module's loss series

    selection = select(store, run_ids, specs)
    predictions = loss_predictions(store, selection)
    return DashboardData(
        db=selection.db,
        timeline=timeline_data(store, selection),
        loss=loss_data(store, selection, predictions),
        cost=cost_data(selection),
        calibration=calibration_data(store, selection, predictions),
        search=search_data(store),
        check=check_data(store),
    )
