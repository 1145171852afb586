"""The Check page's data: each stored check of the search's answer
(``studies.check_recommendation``), its outcomes, pairwise verdicts and curves.

Typed like the other pages' data (costsim/dashboard/data.py), whose loss series and
store readers it builds on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from costsim.dashboard.data import (
    LossSeries,
    Schedule,
    _read,
    _rows_by_run,
    _rows_of,
    device_label,
    predicted_loss_series,
)
from costsim.errors import CostsimError
from costsim.spec import parse_spec
from costsim.store import Store

if TYPE_CHECKING:
    from costsim.loss import LossProfile


@dataclass(frozen=True)
class CheckOutcome:
    """One schedule of a check: its predicted final loss and what its seeds measured
    (``report_json``'s ``outcomes``, as ``studies.check_recommendation`` judged them)."""

    role: str  # "best", "full training", "runner-up" or "study"
    name: str
    flops_counted: float
    predicted: float
    lower: float
    upper: float
    measured: tuple[float, ...]  # final validation loss per seed
    run_ids: tuple[str, ...]
    mean: float
    spread: float  # standard deviation over seeds; 0 with one seed
    inside: int  # seeds whose final loss fell inside lower..upper


@dataclass(frozen=True)
class CheckPair:
    """Two schedules of a check compared: gaps are b − a, a gap within ``noise`` (twice the
    standard error of the difference of means) is a tie."""

    a: str
    b: str
    predicted_gap: float
    measured_gap: float
    noise: float
    # "tie": the search called the pair one (its gap's interval spans 0), and the pair agrees
    # when the measured gap lies inside that interval
    predicted: Literal["a better", "b better", "tie"]
    measured: Literal["a better", "b better", "tie"]
    agree: bool

    def says(self, which: str) -> str:
        """A verdict ("a better", "tie") in the roles' names: "best better", "tie"."""
        return {"a better": f"{self.a} better", "b better": f"{self.b} better"}.get(which, which)

    def ahead_of(self, role: str) -> str | None:
        """The other schedule of this pair, if it measured better than ``role`` beyond seed noise
        (``studies.check_recommendation`` calls a recommendation so beaten contradicted)."""
        if role == self.a and self.measured == "b better":
            return self.b
        if role == self.b and self.measured == "a better":
            return self.a
        return None


@dataclass(frozen=True)
class Check:
    """A stored check (``checks``): the report and the curves of the runs it names."""

    check_id: str
    created_at: datetime
    budget: float  # counted FLOPs per schedule
    loss_profile: str
    interval: float | None  # the profile's interval coverage; None when it cannot be loaded here
    recommendation: str  # "grow" or "full training"
    verdict: str  # "confirmed", "tie" or "contradicted"
    outcomes: tuple[CheckOutcome, ...]
    pairs: tuple[CheckPair, ...]
    curves: tuple[LossSeries, ...]  # measured: one per seed (label "<role> seed <n>"); predicted: one per role

    def roles(self) -> tuple[str, ...]:
        return tuple(o.role for o in self.outcomes)

    @property
    def verdict_words(self) -> str:
        """The verdict and why, in a sentence."""
        recommended = self.recommended()
        if self.verdict == "confirmed":
            return (f"confirmed: every measured gap beyond seed noise has the predicted sign (or, where the search "
                    f"called the pair a tie, lies inside the gap's predicted interval), the search's "
                    f"recommendation ({self.recommendation}) agrees with what was measured, and the recommended "
                    f"schedule ({recommended.role}) measured {recommended.mean:.4f} nats, inside its interval.")
        if self.verdict == "tie":
            return (f"tie: the search recommended {self.recommendation}, but the runs cannot tell best and full "
                    "training apart beyond seed noise.")
        wrong = [p for p in self.pairs if not p.agree]
        if wrong:
            because = "; ".join(f"{p.says(p.measured)} beyond seed noise, where {p.says(p.predicted)} was predicted"
                                + (" and the measured gap lies outside its interval" if p.predicted == "tie" else "")
                                for p in wrong)
        elif not recommended.lower <= recommended.mean <= recommended.upper:
            because = (f"the recommended schedule ({recommended.role}) measured {recommended.mean:.4f} nats, "
                       f"outside its interval [{recommended.lower:.4f}, {recommended.upper:.4f}]")
        elif beaten := [p for p in self.pairs if p.ahead_of(recommended.role)]:
            because = "; ".join(f"{p.says(p.measured)} beyond seed noise ({abs(p.measured_gap):.4f} nats), where "
                                f"{abs(p.predicted_gap):.4f} was predicted" for p in beaten)
        else:
            because = f"the search recommended {self.recommendation}, the runs measured the other way"
        return f"{self.verdict}: {because}."

    def recommended(self) -> CheckOutcome:
        """The schedule the search recommended: its best one to grow, else full training."""
        by_role = {o.role: o for o in self.outcomes}
        if self.recommendation == "grow" or "full training" not in by_role:
            return by_role.get("best", self.outcomes[0])
        return by_role["full training"]


@dataclass(frozen=True)
class CheckData:
    checks: tuple[Check, ...]
    why_empty: str | None
    notes: tuple[str, ...] = ()


def _check_report(report: Mapping[str, Any]) -> tuple[tuple[CheckOutcome, ...], tuple[CheckPair, ...]]:
    outcomes = tuple(
        CheckOutcome(role=o["role"], name=o["name"], flops_counted=float(o["flops_counted"]),
                     predicted=float(o["predicted"]), lower=float(o["lower"]), upper=float(o["upper"]),
                     measured=tuple(float(m) for m in o["measured"]), run_ids=tuple(o["run_ids"]),
                     mean=float(o["mean"]), spread=float(o["spread"]), inside=int(o["inside"]))
        for o in report["outcomes"])
    pairs = tuple(
        CheckPair(a=p["a"], b=p["b"], predicted_gap=float(p["predicted_gap"]), measured_gap=float(p["measured_gap"]),
                  noise=float(p["noise"]), predicted=p["predicted"], measured=p["measured"], agree=bool(p["agree"]))
        for p in report["pairs"])
    if not outcomes:
        raise ValueError("no outcomes")
    return outcomes, pairs


def _loss_profile(name: str) -> tuple[LossProfile | None, str | None]:
    """The loss profile a check names, or None and why not (not shipped here, or no loss model)."""
    try:
        from costsim.loss import load_loss_profile
    except ImportError as exc:
        if exc.name != "costsim.loss":
            raise
        return None, "no predicted curves: costsim.loss does not exist (measurements only)"
    try:
        return load_loss_profile(name), None
    except CostsimError as exc:
        return None, f"loss profile {name!r} cannot be loaded here ({exc}); measured curves only"


def _check_curves(check_id: str, outcomes: Sequence[CheckOutcome], profile: LossProfile | None,
                  runs: Mapping[str, Mapping[str, Any]], evals: Mapping[str, list[dict[str, Any]]],
                  steps: Mapping[str, list[dict[str, Any]]], notes: list[str]) -> list[LossSeries]:
    """Each seed's measured curve, then each role's predicted one, predicted at the steps its
    first stored run took (the seeds share a schedule)."""
    measured: list[LossSeries] = []
    predicted: list[LossSeries] = []
    for outcome in outcomes:
        stored = [run_id for run_id in outcome.run_ids if run_id in runs]
        if len(stored) < len(outcome.run_ids):
            missing = ", ".join(r for r in outcome.run_ids if r not in runs)
            notes.append(f"check {check_id}: {outcome.role} run(s) {missing} are not in this store; "
                         "their curves are left out")
        specs = {}
        for run_id in stored:
            try:
                specs[run_id] = parse_spec(json.loads(runs[run_id]["spec_json"]))
            except (CostsimError, json.JSONDecodeError) as exc:
                notes.append(f"check {check_id}: run {run_id}'s stored spec no longer parses ({exc}); left out")
        for run_id, spec in specs.items():
            rows = evals[run_id]
            measured.append(LossSeries(
                label=f"{outcome.role} seed {runs[run_id]['seed']}", schedule=outcome.role,
                x_flops=tuple(r["flops_counted"] for r in rows), x_time_s=tuple(r["wall_time_s"] for r in rows),
                loss=tuple(r["val_loss"] for r in rows), lower=None, upper=None, kind="measured",
                vocab_size=spec.model.vocab_size, time_on=device_label(runs[run_id]["device"]),
                role=Schedule(outcome.role, spec).role))
        if profile is not None and specs:
            run_id, spec = next(iter(specs.items()))
            taken = [row["steps"] for row in steps[run_id]]
            predicted += predicted_loss_series(spec, outcome.role, Schedule(outcome.role, spec).role,
                                               taken if len(taken) == len(spec.stages) else None, profile) or []
    return measured + predicted


def check_data(store: Store) -> CheckData:
    """Every stored check, oldest first: its report, and the measured and predicted curves of
    the runs it names (``run_ids`` in its outcomes), predicted with the loss profile it
    used. A report that cannot be read is left out with a note."""
    rows = _read(store, "SELECT * FROM checks ORDER BY created_at, check_id")
    parsed, notes = [], []
    for row in rows:
        try:
            report = json.loads(row["report_json"])
            parsed.append((row, *_check_report(report)))
        except (ValueError, KeyError, TypeError) as exc:
            notes.append(f"check {row['check_id']}: its stored report cannot be read ({exc!r}); left out")
    run_ids = sorted({run_id for _, outcomes, _ in parsed for o in outcomes for run_id in o.run_ids})
    runs = {row["run_id"]: row for row in _rows_of(store, "SELECT run_id, seed, device, spec_json FROM run_summary "
                                                           "WHERE run_id IN (SELECT unnest(?))", run_ids)}
    evals = _rows_by_run(store, "SELECT run_id, flops_counted, wall_time_s, val_loss FROM evals "
                                "WHERE run_id IN (SELECT unnest(?)) ORDER BY step", run_ids)
    steps = _rows_by_run(store, "SELECT run_id, steps FROM stages WHERE run_id IN (SELECT unnest(?)) "
                                "ORDER BY stage_index", run_ids)
    checks = []
    for row, outcomes, pairs in parsed:
        profile, why = _loss_profile(row["loss_profile"])
        if why:
            notes.append(f"check {row['check_id']}: {why}")
        checks.append(Check(
            check_id=row["check_id"], created_at=row["created_at"], budget=row["budget"],
            loss_profile=row["loss_profile"], interval=profile.interval if profile else None,
            recommendation=row["recommendation"], verdict=row["verdict"], outcomes=outcomes, pairs=pairs,
            curves=tuple(_check_curves(row["check_id"], outcomes, profile, runs, evals, steps, notes))))
    why_empty = None if checks else (
        f"no checks stored yet in {store.path} — run python -m studies.check_recommendation --budget 4e12 "
        f"--db {store.path}")
    return CheckData(checks=tuple(checks), why_empty=why_empty, notes=tuple(notes))


