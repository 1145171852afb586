"""The loss model's answer for one spec, as a user reads it: a curve with its interval
(``estimate --json``'s ``loss`` object) and a one-line note when the prediction lies far
outside what the profile was fitted on."""

from __future__ import annotations

from pydantic import BaseModel

from costsim.loss import LossProfile, predict_curve, profile_for_spec
from costsim.spec import ScheduleSpec

DOMAIN_FACTOR = 10.0


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
                   flops_counted: float | None = None) -> str | None:
    """One line when a prediction lies more than DOMAIN_FACTOR beyond the fitted range."""
    values = {"non_embedding_params": non_embedding_params, "tokens": tokens, "flops_counted": flops_counted}
    outside = []
    for key, value in values.items():
        if value is None or key not in profile.domain:
            continue
        lo, hi = profile.domain[key]
        if value > hi * DOMAIN_FACTOR or value < lo / DOMAIN_FACTOR:
            factor = value / hi if value > hi else lo / value
            outside.append(f"{key.replace('_', ' ')} {value:.3g} is {factor:.0f}x "
                           f"{'above' if value > hi else 'below'} its fitted range {lo:.3g}-{hi:.3g}")
    if not outside:
        return None
    return f"note: loss profile {profile.name!r} extrapolates here: " + "; ".join(outside)


def spec_domain_warning(spec: ScheduleSpec, profile: LossProfile, steps: list[int] | None = None) -> str | None:
    from costsim.engine import estimate

    result = estimate(spec)
    tokens = result.total.tokens if steps is None else sum(
        n * spec.training.batch_size * spec.model.seq_len for n in steps)
    return domain_warning(profile, non_embedding_params=max(s.params_non_embedding for s in result.stages),
                          tokens=tokens, flops_counted=result.total.flops_counted if steps is None else None)


def loss_report(spec: ScheduleSpec, profile: LossProfile | None = None, points_per_stage: int = 64) -> LossReport:
    profile = profile or profile_for_spec(spec)
    curve = predict_curve(spec, profile, points_per_stage=points_per_stage)
    points = [LossPoint(stage=int(st), tokens=float(t), flops_counted=float(f), loss=float(v), lower=float(lo),
                        upper=float(hi))
              for st, t, f, v, lo, hi in zip(curve.stage, curve.tokens, curve.x_flops, curve.loss, curve.lower,
                                             curve.upper)]
    return LossReport(profile=profile.name, interval=profile.interval, points=points, final=points[-1],
                      domain_note=spec_domain_warning(spec, profile))
