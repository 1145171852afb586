"""The loss model's answer for one spec, as a user reads it: a curve with its interval
(``estimate --json``'s ``loss`` object) and a one-line note when the prediction lies far
outside what the profile was fitted on."""

from __future__ import annotations

from pydantic import BaseModel

from costsim.loss import LossProfile, predict_curve, profile_for_spec
from costsim.spec import ScheduleSpec

DOMAIN_FACTOR = 10.0
# The model reads the LR relative to its peak, so a run at another peak LR than the fit's is
# outside it however near its size: at d192 a quarter of the corpus's LR changed what growth
# saves from 0.74 to 0.30 of full training's compute (docs/loss-model.md, "Held out wider")
PEAK_LR_FACTOR = 2.0


class LossPoint(BaseModel):
    stage: int
    tokens: float  # cumulative
    flops_counted: float  # cumulative
    loss: float
    lower: float
    upper: float


class LossReport(BaseModel):
    profile: str
    interval: float
    points: list[LossPoint]
    final: LossPoint
    domain_note: str | None = None


def domain_warning(profile: LossProfile, *, non_embedding_params: float, tokens: float,
                   flops_counted: float | None = None, peak_lr: float | None = None) -> str | None:
    """One line when a prediction lies more than DOMAIN_FACTOR beyond the fitted range of
    sizes, tokens or FLOPs, or its peak LR more than PEAK_LR_FACTOR from the fitted ones."""
    values = {"non_embedding_params": non_embedding_params, "tokens": tokens, "flops_counted": flops_counted,
              "peak_lr": peak_lr}
    outside = []
    for key, value in values.items():
        if value is None or value <= 0 or key not in profile.domain:
            continue
        lo, hi = profile.domain[key]
        factor = PEAK_LR_FACTOR if key == "peak_lr" else DOMAIN_FACTOR
        if value > hi * factor or value < lo / factor:
            times = value / hi if value > hi else lo / value
            outside.append(f"{key.replace('_', ' ')} {value:.3g} is {times:.{1 if key == 'peak_lr' else 0}f}x "
                           f"{'above' if value > hi else 'below'} its fitted range {lo:.3g}-{hi:.3g}")
    if not outside:
        return None
    note = f"note: loss profile {profile.name!r} extrapolates here: " + "; ".join(outside)
    if any(part.startswith("peak lr") for part in outside):
        note += " (it reads the LR relative to its peak; how much growth saves depends on the peak: docs/loss-model.md)"
    return note


def spec_domain_warning(spec: ScheduleSpec, profile: LossProfile, steps: list[int] | None = None) -> str | None:
    from costsim.engine import estimate

    result = estimate(spec)
    tokens = result.total.tokens if steps is None else sum(
        n * spec.training.batch_size * spec.model.seq_len for n in steps)
    return domain_warning(profile, non_embedding_params=max(s.params_non_embedding for s in result.stages),
                          tokens=tokens, flops_counted=result.total.flops_counted if steps is None else None,
                          peak_lr=spec.training.lr_schedule.lr)


def loss_report(spec: ScheduleSpec, profile: LossProfile | None = None, points_per_stage: int = 64) -> LossReport:
    profile = profile or profile_for_spec(spec)
    curve = predict_curve(spec, profile, points_per_stage=points_per_stage)
    points = [LossPoint(stage=int(st), tokens=float(t), flops_counted=float(f), loss=float(v), lower=float(lo),
                        upper=float(hi))
              for st, t, f, v, lo, hi in zip(curve.stage, curve.tokens, curve.x_flops, curve.loss, curve.lower,
                                             curve.upper)]
    return LossReport(profile=profile.name, interval=profile.interval, points=points, final=points[-1],
                      domain_note=spec_domain_warning(spec, profile))
