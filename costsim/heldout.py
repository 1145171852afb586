"""How well the loss model predicts runs it never saw.

For a growth run and the full-training run of the same final size (same seed where one
exists), on the counted-FLOPs axis:

- **compute-to-match ratio**: the FLOPs the schedule needs to reach the loss full
  training had at ``MATCH_AT`` of its FLOPs, over those FLOPs (< 1: growing saves
  compute); None when the schedule never gets there (then ``ratio_floor`` says it is
  at least its final FLOPs over those);
- **crossover**: the FLOPs after which the schedule stays behind full training at equal
  FLOPs (None: never ahead, or ahead to the end);
- **rms** over the curve and the share of measured points inside the 90% interval.

The same numbers are computed on the measured curves and on the predicted ones.
``cross_validate`` refits without each growth schedule in turn (all its seeds;
leave-one-schedule-out) and predicts it; ``size_holdout`` refits without every run of the largest final size.

Each is scored per run and per schedule: a schedule repeated over seeds is measured on its
seeds' mean curve against the mean of their baselines (each seed has its own), because one
seed's ratio moves by more than the targets at the smaller sizes (``ratio_seed_noise``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from costsim.corpus import RunData, baseline_for
from costsim.fit import (
    PAIRED_WEIGHT,
    SeedNoise,
    cumulative_flops,
    domain_of,
    fit_params,
    flops_to_reach,
    gap_at_equal_flops,
    run_residuals,
    without_seed_noise,
)
from costsim.loss import LossParams, LossProfile, efolds_outside, predict, trajectory

MATCH_AT = 0.5


@dataclass(frozen=True)
class CurveComparison:
    ratio: float | None
    ratio_floor: float | None  # when not reached: at least this
    crossover_flops: float | None
    crossover_kind: str  # "crosses", "never ahead", "ahead throughout"
    end_gap: float = 0.0  # loss minus full training's at the last common FLOPs (> 0: behind)
    # FLOPs around the crossing where the gap is within the noise of 0: the data cannot place
    # the crossing more precisely than this (None: no noise given, or no crossing)
    crossover_band: tuple[float, float] | None = None


def _monotone(loss: np.ndarray) -> np.ndarray:
    return np.minimum.accumulate(loss)


def compare_curves(flops: np.ndarray, loss: np.ndarray, base_flops: np.ndarray, base_loss: np.ndarray,
                   match_at: float = MATCH_AT, noise: float = 0.0) -> CurveComparison:
    """Compute-to-match and crossover of a curve against a full-training curve; with
    ``noise`` (nats, of the gap) also the band of FLOPs the crossing could lie in."""
    base_best = _monotone(base_loss)
    at = match_at * base_flops[-1]
    target = float(np.interp(at, base_flops, base_best))
    reached = flops_to_reach(target, flops, _monotone(loss))
    ratio = None if reached is None else reached / at
    floor = None if reached is not None else float(flops[-1]) / at
    inside, diff = gap_at_equal_flops(flops, loss, base_flops, base_loss)
    x = flops[inside]
    end = float(diff[-1]) if len(diff) else 0.0
    if not len(diff) or np.all(diff >= 0):
        return CurveComparison(ratio, floor, None, "never ahead", end)
    if diff[-1] < 0:
        return CurveComparison(ratio, floor, None, "ahead throughout", end)
    last_ahead = int(np.flatnonzero(diff < 0)[-1])
    x0, x1, d0, d1 = x[last_ahead], x[last_ahead + 1], diff[last_ahead], diff[last_ahead + 1]
    cross = float(x0 + (x1 - x0) * (-d0) / (d1 - d0))
    return CurveComparison(ratio, floor, cross, "crosses", end, _band(x, diff, last_ahead, cross, noise))


def _band(x: np.ndarray, diff: np.ndarray, last_ahead: int, cross: float, noise: float) -> tuple[float, float] | None:
    """The run of points on either side of the crossing whose gap is within ``noise`` of 0."""
    if noise <= 0:
        return None
    lo, hi = last_ahead + 1, last_ahead
    while lo > 0 and abs(diff[lo - 1]) <= noise:
        lo -= 1
    while hi + 1 < len(diff) and abs(diff[hi + 1]) <= noise:
        hi += 1
    return (float(min(x[lo], cross)) if lo <= last_ahead else cross,
            float(max(x[hi], cross)) if hi > last_ahead else cross)


def baseline_prefix(run: RunData, base: RunData) -> np.ndarray:
    """The baseline's points up to the run's token count, when that is the same run cut
    short: under a constant learning rate a longer baseline's prefix is full training
    for the run's tokens (a decaying schedule would have annealed sooner, so it is kept whole)."""
    if base.spec.training.lr_schedule.kind != "constant":
        return np.ones(len(base.tokens), dtype=bool)
    kept = base.tokens <= run.tokens[-1] * (1 + 1e-9)
    return kept if kept.sum() >= 2 else np.ones(len(base.tokens), dtype=bool)


@dataclass
class RunScore:
    run: str
    family: str
    final_measured: float
    final_predicted: float
    rms: float
    coverage: float | None
    measured: CurveComparison | None = None
    predicted: CurveComparison | None = None
    n_points: int = 0
    seeds: int = 1  # runs averaged into the measured curve (a schedule's score)

    @property
    def sign_right(self) -> bool | None:
        if self.measured is None or self.predicted is None:
            return None
        return _side(self.measured) == _side(self.predicted)


def _side(c: CurveComparison) -> int:
    """-1: growing saves compute at the match point, +1: costs more."""
    if c.ratio is None:
        return 1
    return -1 if c.ratio < 1 else 1


def score_run(run: RunData, base: RunData | None, params: LossParams, profile: LossProfile | None = None) -> RunScore:
    """Measured against predicted for one run (and its baseline's curves, for the ratios)."""
    predicted = trajectory(params, run.plans, at_tokens=run.tokens, after_boundary=True)[1]
    coverage = None
    if profile is not None:
        curve = predict(profile.model_copy(update={"params": params}), run.plans, at_tokens=run.tokens,
                        after_boundary=True)
        coverage = float(np.mean((run.loss >= curve.lower) & (run.loss <= curve.upper)))
    score = RunScore(run=run.name, family=run.family, final_measured=float(run.loss[-1]),
                     final_predicted=float(predicted[-1]), rms=float(np.sqrt(np.mean((predicted - run.loss) ** 2))),
                     coverage=coverage, n_points=len(run.loss))
    if base is not None and not run.is_full_training:
        flops = cumulative_flops(run.spec, run.steps, run.tokens)
        base_flops = cumulative_flops(base.spec, base.steps, base.tokens)
        base_predicted = trajectory(params, base.plans, at_tokens=base.tokens)[1]
        kept = baseline_prefix(run, base)
        gap_noise = np.sqrt(2) * profile.seed_std if profile is not None else 0.0  # two runs' noise
        score.measured = measured_comparison(run, base, gap_noise)
        score.predicted = compare_curves(flops, predicted, base_flops[kept], base_predicted[kept])
    return score


def measured_comparison(run: RunData, base: RunData, noise: float = 0.0) -> CurveComparison:
    """The run's measured curve against its baseline's (``compare_curves``)."""
    kept = baseline_prefix(run, base)
    return compare_curves(cumulative_flops(run.spec, run.steps, run.tokens), run.loss,
                          cumulative_flops(base.spec, base.steps, base.tokens)[kept], base.loss[kept], noise=noise)


def seed_mean_curve(runs: list[RunData], keep=None) -> tuple[np.ndarray, np.ndarray]:
    """Counted FLOPs and the mean loss of repeats of one schedule, on the first run's
    evaluation points up to where the shortest ends (repeats share their points)."""
    first = runs[0]
    kept = np.ones(len(first.tokens), dtype=bool) if keep is None else keep
    tokens = first.tokens[kept]
    tokens = tokens[tokens <= min(r.tokens[-1] for r in runs) * (1 + 1e-9)]
    loss = np.mean([np.interp(tokens, r.tokens, r.loss) for r in runs], axis=0)
    return cumulative_flops(first.spec, first.steps, tokens), loss


@dataclass(frozen=True)
class ScheduleCurves:
    """A growth schedule's seeds averaged against the mean of their own baselines, on
    counted FLOPs, measured and predicted (the prediction is the same for every seed)."""
    run: RunData  # the first seed with a baseline: the schedule's spec and plans
    seeds: int
    flops: np.ndarray
    loss: np.ndarray
    predicted: np.ndarray
    base_flops: np.ndarray
    base_loss: np.ndarray
    base_predicted: np.ndarray


def schedule_curves(held: list[RunData], runs: list[RunData], params: LossParams) -> ScheduleCurves | None:
    """``held``'s seeds that have a baseline in ``runs``, as seed-mean curves; None when none has."""
    pairs = [(r, baseline_for(r, runs)) for r in held]
    pairs = [(r, b) for r, b in pairs if b is not None]
    if not pairs:
        return None
    run, base = pairs[0]
    kept = baseline_prefix(run, base)
    flops, loss = seed_mean_curve([r for r, _ in pairs])
    base_flops, base_loss = seed_mean_curve([b for _, b in pairs], kept)
    predicted = trajectory(params, run.plans, at_tokens=run.tokens[:len(flops)], after_boundary=True)[1]
    base_predicted = trajectory(params, base.plans, at_tokens=base.tokens[kept][:len(base_flops)])[1]
    return ScheduleCurves(run, len(pairs), flops, loss, predicted, base_flops, base_loss, base_predicted)


def score_schedule(held: list[RunData], runs: list[RunData], params: LossParams, seed_std: float = 0.0
                   ) -> RunScore | None:
    """One growth schedule over its seeds: the mean measured curve against the mean of the
    seeds' own baselines, and the prediction against the predicted baseline. None when no
    seed has a baseline. ``seed_std``: one run's seed noise, for the band the measured
    crossing could lie in."""
    curves = schedule_curves(held, runs, params)
    if curves is None:
        return None
    run, flops, loss, predicted = curves.run, curves.flops, curves.loss, curves.predicted
    base_flops, base_loss, base_predicted = curves.base_flops, curves.base_loss, curves.base_predicted
    return RunScore(run=run.schedule, family=run.family, final_measured=float(loss[-1]),
                    final_predicted=float(predicted[-1]), rms=float(np.sqrt(np.mean((predicted - loss) ** 2))),
                    coverage=None, measured=compare_curves(flops, loss, base_flops, base_loss,
                                                           noise=np.sqrt(2 / curves.seeds) * seed_std),
                    predicted=compare_curves(flops, predicted, base_flops, base_predicted), n_points=len(loss),
                    seeds=curves.seeds)


def score_schedules(held: list[RunData], runs: list[RunData], params: LossParams, seed_std: float = 0.0
                    ) -> list[RunScore]:
    """``score_schedule`` for every growth schedule among ``held``."""
    groups: dict[str, list[RunData]] = {}
    for r in held:
        if not r.is_full_training:
            groups.setdefault(r.schedule, []).append(r)
    scores = (score_schedule(sorted(g, key=lambda r: r.seed), runs, params, seed_std) for g in groups.values())
    return [s for s in scores if s is not None]


def ratio_seed_noise(runs: list[RunData]) -> tuple[float, int]:
    """Seed-to-seed standard deviation of one run's measured compute-to-match ratio (each
    seed against its own baseline), pooled over the growth schedules repeated with seeds,
    and how many there were. Measured, not derived from the final loss's noise: at the
    smaller sizes the match point falls while the deeper blocks of a from-scratch model are
    still coming into use, and when they do varies with the seed far more than the final loss."""
    ratios: dict[str, list[float]] = {}
    for r in runs:
        base = None if r.is_full_training else baseline_for(r, runs)
        if base is None:
            continue
        c = measured_comparison(r, base)
        if c.ratio is not None:
            ratios.setdefault(r.schedule, []).append(c.ratio)
    groups = [v for v in ratios.values() if len(v) > 1]
    if not groups:
        return 0.0, 0
    pooled = sum(np.var(v, ddof=1) * (len(v) - 1) for v in groups) / sum(len(v) - 1 for v in groups)
    return float(np.sqrt(pooled)), len(groups)


@dataclass
class CrossValidation:
    structure: str
    scores: list[RunScore] = field(default_factory=list)
    schedule_scores: list[RunScore] = field(default_factory=list)  # one per schedule, seeds averaged
    fold_rms: dict[str, float] = field(default_factory=dict)  # schedule -> rms of its held-out points
    fold_seed_var: dict[str, float] = field(default_factory=dict)  # schedule -> seed variance in those points

    @property
    def rms(self) -> float:
        errors = [s.rms**2 * s.n_points for s in self.scores]
        return float(np.sqrt(sum(errors) / max(sum(s.n_points for s in self.scores), 1)))

    @property
    def model_rms(self) -> float:
        """The held-out error without the seed noise the held-out points carry."""
        return model_error_of(list(self.fold_rms.values()), list(self.fold_seed_var.values()))

    def summary(self) -> dict:
        return {"structure": self.structure, "rms_nats": self.rms,
                "runs": [{**asdict(s), "sign_right": s.sign_right} for s in self.scores]}


def growth_schedules(runs: list[RunData]) -> list[str]:
    return sorted({r.schedule for r in runs if not r.is_full_training})


def _fit_without(runs: list[RunData], schedule: str, start: LossParams, structure: str, max_nfev: int,
                 hold: tuple[str, ...], paired_weight: float) -> LossParams:
    return fit_params([r for r in runs if r.schedule != schedule], start, structure, max_nfev=max_nfev,
                      hold=hold, paired_weight=paired_weight)[0]


def cross_validate(runs: list[RunData], start: LossParams, structure: str, *, noise: SeedNoise | None = None,
                   schedules: list[str] | None = None, max_nfev: int = 200, jobs: int = 1,
                   hold: tuple[str, ...] = (), paired_weight: float = PAIRED_WEIGHT) -> CrossValidation:
    """Leave-one-schedule-out: for each growth schedule, fit on every other run and score
    the schedule's runs (all seeds). Intervals: the model's own error, taken from the *other*
    folds (so coverage is not fitted to itself) without their points' seed noise, plus the
    seed ``noise`` measured on repeated schedules."""
    noise = noise or SeedNoise()
    cv = CrossValidation(structure)
    schedules = schedules or growth_schedules(runs)
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            fitted = list(pool.map(_fit_without, *zip(*[(runs, s, start, structure, max_nfev, hold, paired_weight)
                                                         for s in schedules])))
    else:
        fitted = [_fit_without(runs, s, start, structure, max_nfev, hold, paired_weight) for s in schedules]
    fits: dict[str, tuple[LossParams, list[RunData]]] = {}
    for schedule, params in zip(schedules, fitted):
        held = [r for r in runs if r.schedule == schedule]
        fits[schedule] = (params, held)
        errors = np.concatenate(run_residuals(params, held))
        cv.fold_rms[schedule] = float(np.sqrt(np.mean(errors**2)))
        cv.fold_seed_var[schedule] = noise.variance_in(held)
    for schedule, (params, held) in fits.items():
        others = [v for k, v in cv.fold_rms.items() if k != schedule]
        residual = float(np.sqrt(np.mean(np.square(others)))) if others else 0.0
        model = model_error_of(others, [v for k, v in cv.fold_seed_var.items() if k != schedule])
        profile = LossProfile(name=f"cv-{schedule}", params=params, residual_std=residual, model_std=model,
                              **noise.profile_fields())
        for run in held:
            cv.scores.append(score_run(run, baseline_for(run, runs), params, profile))
        cv.schedule_scores += score_schedules(held, runs, params, noise.final)
    return cv


def model_error_of(fold_rms: list[float], fold_seed_var: list[float]) -> float:
    """The model's own error over folds: their mean squared error less their mean seed variance."""
    if not fold_rms:
        return 0.0
    return without_seed_noise(float(np.sqrt(np.mean(np.square(fold_rms)))), float(np.mean(fold_seed_var)))


@dataclass
class SizeHoldout:
    """Fit without the largest final size, predict it."""

    scores: list[RunScore]  # per run
    schedule_scores: list[RunScore]  # per schedule, seeds averaged
    shape: tuple  # the held-out final shape
    model_rms: float  # the held-out error without the held-out points' seed noise
    efolds: float  # how far the held-out size lies outside the fitted domain (sizes and depths)

    def extrapolation_growth(self, inside: float) -> float:
        """The model error's relative growth per e-fold outside the domain, against its
        error ``inside`` it (leave-one-schedule-out's): 0 where it did not grow."""
        if inside <= 0 or self.efolds <= 0:
            return 0.0
        return max(0.0, (self.model_rms / inside - 1) / self.efolds)


def size_holdout(runs: list[RunData], start: LossParams, structure: str, *, noise: SeedNoise | None = None,
                 residual_std: float = 0.0, model_std: float | None = None, max_nfev: int = 200,
                 hold: tuple[str, ...] = (), paired_weight: float = PAIRED_WEIGHT) -> SizeHoldout:
    """Fit on every run whose final model is smaller than the largest, predict the largest's
    runs. Intervals: ``residual_std`` (or the model's own error ``model_std`` and the seed
    noise), not grown for the distance, since the growth is what this hold-out measures."""
    from costsim.engine import stage_shape
    from costsim.flops import parameter_counts

    def size(r: RunData) -> float:
        return float(parameter_counts(stage_shape(r.spec)).non_embedding[-1])

    largest = max(size(r) for r in runs)
    held = [r for r in runs if size(r) == largest]
    fitted = [r for r in runs if size(r) < largest]
    params, _ = fit_params(fitted, start, structure, max_nfev=max_nfev, hold=hold, paired_weight=paired_weight)
    noise = noise or SeedNoise()
    profile = LossProfile(name="size-holdout", params=params, residual_std=residual_std, model_std=model_std,
                          **noise.profile_fields())
    growth_runs = [r for r in held if not r.is_full_training]
    errors = np.concatenate(run_residuals(params, growth_runs))
    model = without_seed_noise(float(np.sqrt(np.mean(errors**2))), noise.variance_in(growth_runs))
    efolds = efolds_outside(domain_of(fitted), largest, max(stage.layers for stage in held[0].spec.stages))
    return SizeHoldout([score_run(r, baseline_for(r, held), params, profile) for r in held],
                       score_schedules(held, held, params, noise.final), held[0].final_shape, model, efolds)
