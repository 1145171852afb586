"""``python -m costsim.fit``: fit the loss model to real runs.

Every validation loss of every run (the shipped growth corpus, or a store's complete
runs) is a data point; the model predicts each from the run's spec and the steps it
really ran. The law's scale parameters are fitted on full-training runs first, then
everything together by least squares (with ``--law-from-full-training``, as the shipped
profile is fitted, everything but the scaling law, which keeps the first pass's values); a
bootstrap over runs gives the parameters' uncertainty. Leave-one-schedule-out
cross-validation (``costsim.heldout``) gives the error on schedules the fit never saw, which
becomes the profile's ``residual_std``.

The fitted law's scale parameters (E, A, B, alpha, beta, d0, bcrit) belong to the data
it was fitted on (tokenizer, model family); the growth parameters are dimensionless and
are what ``--transfer-to`` carries over to another law (by default the published
Chinchilla one).
"""

from __future__ import annotations

import argparse
import math
import os
import typing
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from costsim.corpus import RunData, baseline_for, batch_partner, dataset_path, load_runs
from costsim.engine import along_schedule, estimate
from costsim.errors import CostsimError, cli_errors
from costsim.growth import JUMP_OPERATORS, OPERATORS
from costsim.loss import (
    LATE_BETA_MAX,
    LAW_INTERACTION_MAX,
    LR_LIMIT_DOMAIN,
    LR_LIMIT_WIDTH_REACH,
    NOISE_EXPONENT_MAX,
    SMALL_BATCH_EXPONENT_MAX,
    STARTUP_WIDTH_REFERENCE,
    STRUCTURES,
    LossParams,
    LossProfile,
    load_loss_profile,
    lr_band,
    lr_limit,
    seed_std_in,
    seed_table,
    trajectory,
)
from costsim.paths import output_file
from costsim.spec import ScheduleSpec

# Weak priors keep parameters the data cannot see (an operator no run used) at a
# sensible value instead of wandering; their weight is tiny next to real points.
PRIOR_WEIGHT = 0.02
JUMP_PRIOR = 0.1
DEFAULT_STRUCTURE = "fading"
SEED_SHARES = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)  # where a profile's seed noise is measured along a run
STARTUP_START = 1e4  # ideal tokens: where a fit of the start-up delay begins
# the start-up's fit is not convex in (time, shape): from a short time and a steep shape
# least squares stops at a step at the very start. The law's pass starts from each of
# these (ideal tokens per layer, shape) and keeps the best on full training.
STARTUP_STARTS = ((1e4, 1.0), (1e5, 1.0), (1e6, 1.0), (1e5, 3.0), (1e6, 3.0))
# Points are weighed by how well a model could predict them at all: as 1 / sqrt(seed noise
# at their share of the run^2 + MODEL_STD^2).
# Early points of a run from scratch differ by 0.10-0.15 nats between seeds (when the deeper
# blocks come into use); weighed like the late ones, the few-step large-batch runs' early
# points pulled the batch terms away from every run's end. MODEL_STD is the model's own
# held-out error (model_std of the profile fitted before the weights, on 59 runs: 0.036 nats).
MODEL_STD = 0.036
# The questions a profile answers are differences: growth against full training of the same
# size, and (for a search) one batch against another for the same model. A growth run and
# its same-seed baseline share their held-out batches, so they share that seed's offset, as
# do full training at two batches on one seed; their gap, fitted as residuals of its own at
# this weight next to the points', is free of it and weighs what the user asks about (0:
# points only).
PAIRED_WEIGHT = 1.0
# the value a term takes when a fit holds it: the one that switches it off (or makes it
# what it was before it was fitted). The fit CLI's --no-shape ... --sgd-batches and
# the benchmark's variants hold these.
HELD_VALUES = {"shape_exponent": 0.0, "lag_size_slope": 0.0, "startup_tokens": 0.0, "startup_depth_exponent": 1.0,
               "startup_shape": 1.0, "startup_width_exponent": 0.0, "small_batch_exponent": 0.0,
               "law_interaction": 1.0, "width_lag_scale": 1.0, "data_break_tokens": 0.0, "late_beta": 0.0,
               "data_break_size_exponent": 0.0}
# Terms a fit leaves at their held value unless it starts away from it (``opt_in_held``):
# added after profiles and documented fits that never had them, whose commands keep meaning
# what they meant.
OPT_IN = ("law_interaction", "width_lag_scale", "data_break_tokens", "late_beta", "data_break_size_exponent")
INTERACTION_START = 2.0  # where --fit-interaction starts law_interaction
WIDTH_LAG_SCALE_START = 2.0  # where --fit-width-lag-scale starts width_lag_scale
# where --fit-data-break starts the law's break: near the best of a grid of law-only fits, on
# the 97-run corpus's full training (rms 0.0553, best 0.0550) and on the check runs' (0.0371,
# best 0.0365) alike (benchmarks/law_shape.py --forms; docs/loss-model.md)
DATA_BREAK_START = (3e6, 0.9)
# where --fit-data-break-size starts the break's size exponent: about Kaplan et al.'s knee
# (N^0.74), rounded towards none. The corpus's full training takes it below 0
# (docs/loss-model.md, "The law from full training alone")
DATA_BREAK_SIZE_START = 0.5
# In ``hold``: the scaling law's terms (``SCALING_LAW``) keep what the first pass fitted on
# full training alone, and the pass over every run moves only the rest. Without it the
# growth runs also move the law, and with a broken data term they moved it off what the long
# full-training runs say (alpha 0.112 -> 0.098, B 27 -> 20: docs/loss-model.md, "The law
# from full training alone").
LAW_FROM_FULL_TRAINING = "<law from full training>"
# what it keeps: the scaling law's own terms. The start-up, batch, noise and annealing terms are
# fitted on full training first too, but growth reads them (a grown model carries the start-up),
# so the growth runs still inform them.
SCALING_LAW = ("E", "A", "alpha", "B", "beta", "d0", "data_break_tokens", "late_beta", "data_break_size_exponent",
               "law_interaction", "shape_exponent")


def _masks(coords) -> tuple[np.ndarray, np.ndarray]:
    """(the law's coordinates, fitted on full training first; the scaling law's among them)."""
    return np.array([c.law for c in coords]), np.array([c.field in SCALING_LAW for c in coords])


def opt_in_held(start: LossParams, hold: tuple[str, ...]) -> tuple[str, ...]:
    """``hold`` plus every ``OPT_IN`` term ``start`` has at its held value."""
    return hold + tuple(f for f in OPT_IN if f not in hold and getattr(start, f) == HELD_VALUES[f])


def holding(start: LossParams, fields: tuple[str, ...]) -> LossParams:
    """``start`` with ``fields`` at their held values (``HELD_VALUES``)."""
    return start.model_copy(update={field: HELD_VALUES[field] for field in fields})


@dataclass(frozen=True)
class Coordinate:
    """One entry of the vector least squares moves: a LossParams field (``jumps.OP`` for
    an operator's jump, ``lags.OP`` for its lag), its bounds, and how it is fitted."""

    field: str
    lower: float
    upper: float
    log: bool = False  # fitted as log(value): scale constants span decades
    prior: float | None = None  # pulled weakly towards this (None: towards the start value)
    regularised: bool = False  # has a weak prior (growth parameters few runs constrain)
    law: bool = False  # fitted on full training alone in the first pass

    def get(self, p: LossParams) -> float:
        group, _, key = self.field.partition(".")
        if key:
            value = getattr(p, group).get(key, self.prior if self.prior is not None else 0.0)
        else:
            value = getattr(p, self.field)
        return float(np.log(max(value, 1e-300))) if self.log else float(value)


LOG_ZERO = math.log(1e-300)  # what Coordinate.get gives a log field at 0


COMMON = (
    Coordinate("E", 0.0, 10.0, law=True),
    Coordinate("A", -5.0, 25.0, log=True, law=True),
    Coordinate("alpha", 0.02, 2.0, law=True),
    Coordinate("B", -5.0, 25.0, log=True, law=True),
    Coordinate("beta", 0.02, 2.0, law=True),
    Coordinate("d0", 0.0, math.log(1e12), log=True, law=True),
    Coordinate("data_break_tokens", math.log(1e4), math.log(1e10), log=True, law=True),
    Coordinate("late_beta", 0.02, LATE_BETA_MAX, law=True),
    Coordinate("data_break_size_exponent", -1.0, 2.0, law=True),
    Coordinate("law_interaction", 1.0, LAW_INTERACTION_MAX, prior=1.0, regularised=True, law=True),
    Coordinate("shape_exponent", -1.0, 1.0, prior=0.0, regularised=True, law=True),
    Coordinate("bcrit", math.log(1e2), math.log(1e14), log=True, regularised=True, law=True),
    Coordinate("bcrit_exponent", 0.0, 10.0, prior=1 / 0.21, regularised=True, law=True),
    Coordinate("small_batch_exponent", 0.0, SMALL_BATCH_EXPONENT_MAX, prior=0.0, regularised=True, law=True),
    Coordinate("anneal", 0.0, 1.0, regularised=True, law=True),
    Coordinate("noise_tokens", math.log(1e-3), math.log(1e7), log=True, law=True),
    Coordinate("noise_exponent", 0.0, NOISE_EXPONENT_MAX, prior=0.0, regularised=True, law=True),
    Coordinate("startup_tokens", math.log(1e-3), math.log(1e12), log=True, prior=1e4, regularised=True, law=True),
    Coordinate("startup_depth_exponent", 0.0, 3.0, prior=1.0, regularised=True, law=True),
    Coordinate("startup_shape", 0.25, 6.0, prior=1.0, regularised=True, law=True),
    Coordinate("startup_width_exponent", -3.0, 3.0, prior=0.0, regularised=True, law=True),
    Coordinate("frozen_exponent", 0.0, 4.0, regularised=True),
    Coordinate("reset_jump", 0.0, 2.0, regularised=True),
    *(Coordinate(f"jumps.{op}", 0.0, 5.0, prior=JUMP_PRIOR, regularised=True) for op in JUMP_OPERATORS),
    *(Coordinate(f"bumps.{event}", 0.0, 5.0, prior=0.0, regularised=True)
      for event in ("unfreeze", "reset", *OPERATORS)),
    Coordinate("transient_steps", 0.0, math.log(1e5), log=True, regularised=True),
)


def coordinates(structure: str) -> tuple[Coordinate, ...]:
    """The fitted vector for a growth structure: the common part plus what it adds."""
    s = STRUCTURES[structure]
    extra = []
    if "lags" in s.fitted:
        lo, hi = s.lag_bounds
        extra += [Coordinate(f"lags.{op}", lo, hi, prior=0.0, regularised=True) for op in OPERATORS]
        extra.append(Coordinate("lag_size_slope", -1.0, 1.0, prior=0.0, regularised=True))
    if "lag_tokens" in s.fitted:
        extra.append(Coordinate("lag_tokens", math.log(1e-3), math.log(1e3), log=True, regularised=True))
        extra.append(Coordinate("width_lag_scale", math.log(1e-2), math.log(1e2), log=True, prior=1.0,
                                regularised=True))
    return COMMON + tuple(extra)


def to_params(x: np.ndarray, structure: str, base: LossParams | None = None) -> LossParams:
    values: dict = base.model_dump() if base is not None else {}
    values["structure"] = structure
    for group in ("jumps", "lags", "bumps"):
        values.setdefault(group, {})
    for c, v in zip(coordinates(structure), x, strict=True):
        # a log coordinate at Coordinate.get's floor is a value of 0 (a term switched off), not 1e-300
        value = (0.0 if v <= LOG_ZERO else float(np.exp(v))) if c.log else float(v)
        group, _, key = c.field.partition(".")
        if key:
            values[group] = {**values[group], key: value}
        else:
            values[c.field] = value
    return LossParams(**values)


def to_vector(p: LossParams, structure: str | None = None) -> np.ndarray:
    return np.array([c.get(p) for c in coordinates(structure or p.structure)])


def _bounds(coords):
    return np.array([c.lower for c in coords]), np.array([c.upper for c in coords])


def run_residuals(p: LossParams, runs: list[RunData]) -> list[np.ndarray]:
    return [trajectory(p, run.plans, at_tokens=run.tokens, after_boundary=True)[1] - run.loss for run in runs]


def gap_at_equal_flops(flops: np.ndarray, values: np.ndarray, base_flops: np.ndarray, base_values: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """A run's values minus its baseline's at the same counted FLOPs (the baseline
    interpolated), on the run's points within the baseline's FLOPs: (those points, gap)."""
    inside = flops <= base_flops[-1] * (1 + 1e-9)
    return inside, values[inside] - np.interp(flops[inside], base_flops, base_values)


@dataclass(frozen=True)
class GapPair:
    """A run and its same-seed partner (a growth run and full training of its size, or full
    training at two batches), on the counted-FLOPs axis."""

    run: int  # index of the growth run (or full training at another batch) among the fitted runs
    base: int  # index of its baseline (or partner)
    flops: np.ndarray
    base_flops: np.ndarray


def gap_pairs(runs: list[RunData]) -> list[GapPair]:
    """Every growth run among ``runs`` whose baseline (``baseline_for``) is of its seed, and
    every full-training run at a batch its shape was not mostly trained at with its
    same-seed partner at that batch (``batch_partner``), that overlap on two or more points."""
    index = {id(r): i for i, r in enumerate(runs)}
    pairs = []
    for i, run in enumerate(runs):
        base = batch_partner(run, runs) if run.is_full_training else baseline_for(run, runs)
        if base is None or base.seed != run.seed:
            continue
        flops = cumulative_flops(run.spec, run.steps, run.tokens)
        base_flops = cumulative_flops(base.spec, base.steps, base.tokens)
        if gap_at_equal_flops(flops, run.loss, base_flops, base.loss)[0].sum() >= 2:
            pairs.append(GapPair(i, index[id(base)], flops, base_flops))
    return pairs


def gap_residuals(residuals: list[np.ndarray], pairs: list[GapPair]) -> list[np.ndarray]:
    """Predicted minus measured gap of each pair at equal FLOPs, from the runs' point
    residuals (interpolation is linear, so the baseline's residual interpolates alone)."""
    return [gap_at_equal_flops(p.flops, residuals[p.run], p.base_flops, residuals[p.base])[1] for p in pairs]


def point_weights(runs: list[RunData]) -> list[np.ndarray]:
    """Each point's weight in a fit (``MODEL_STD``), from the seed noise measured on the runs'
    repeated schedules at the point's share of its run, for full training and growth apart."""
    noise = SeedNoise.of(runs)
    weights = [MODEL_STD / np.sqrt(noise.std_at(run) ** 2 + MODEL_STD**2) for run in runs]
    # normalised to a mean square of 1: the points as a whole keep their weight against the
    # gaps and the priors, only their balance changes
    scale = np.sqrt(np.mean(np.concatenate(weights) ** 2)) if weights else 1.0
    return [w / scale for w in weights]


def _solve(runs: list[RunData], start: LossParams, structure: str, free: np.ndarray, max_nfev: int,
           paired_weight: float = PAIRED_WEIGHT) -> LossParams:
    coords = coordinates(structure)
    pairs = gap_pairs(runs) if paired_weight > 0 else []
    weights = point_weights(runs)
    lower, upper = _bounds(coords)
    x0 = to_vector(start, structure)  # held values stay exact (an opt-in term held at its bound is still held)
    x0[free] = np.clip(x0[free], lower[free] + 1e-9, upper[free] - 1e-9)
    prior = np.array([x if c.prior is None else (math.log(max(c.prior, 1e-300)) if c.log else c.prior)
                      for c, x in zip(coords, x0, strict=True)])
    regularised = np.array([c.regularised for c in coords]) & free

    def residuals(xf: np.ndarray) -> np.ndarray:
        x = x0.copy()
        x[free] = xf
        p = to_params(x, structure, start)
        points = run_residuals(p, runs)
        parts = [w * r for w, r in zip(weights, points, strict=True)]
        parts += [paired_weight * gap for gap in gap_residuals(points, pairs)]
        parts.append(PRIOR_WEIGHT * (x[regularised] - prior[regularised]))
        return np.concatenate(parts)

    result = least_squares(residuals, x0[free], bounds=(lower[free], upper[free]), x_scale="jac",
                           max_nfev=max_nfev)
    x = x0.copy()
    x[free] = result.x
    return to_params(x, structure, start)


def fit_params(runs: list[RunData], start: LossParams, structure: str | None = None,
               max_nfev: int = 200, hold: tuple[str, ...] = (), paired_weight: float = PAIRED_WEIGHT
               ) -> tuple[LossParams, float]:
    """Least squares: the law on full-training runs, then every coordinate on all runs and
    growth runs' gaps to their baselines (``paired_weight``; those named in ``hold`` stay
    at their start values). Returns the parameters and the rms error over the runs' points
    (nats)."""
    structure = structure or start.structure
    coords = coordinates(structure)
    hold = opt_in_held(start, hold)
    aspects = [plan.aspect for run in runs for plan in run.plans if plan.aspect > 0]
    if aspects:  # the shape effect is known only over the shapes fitted on
        start = start.model_copy(update={"aspect_range": (min(aspects), max(aspects))})
    if start.startup_tokens <= 0 and "startup_tokens" not in hold:
        start = start.model_copy(update={"startup_tokens": STARTUP_START})  # from 0 no gradient would move it
    free = np.array([c.field not in hold for c in coords])
    law_mask, scaling_law = _masks(coords)
    full = [r for r in runs if r.is_full_training]
    starts = [start]
    if full and "startup_tokens" not in hold and start.startup_form == "capacity":
        shape_free = "startup_shape" not in hold
        starts = [start.model_copy(update={"startup_tokens": t, **({"startup_shape": k} if shape_free else {})})
                  for t, k in STARTUP_STARTS if shape_free or k == 1.0]
    # an opt-in term held off stays exactly off (a log coordinate's bound would turn a break at 0
    # tokens into one at 1e4); every other coordinate starts inside its bounds, as it always has
    switched_off = np.array([c.field in OPT_IN and c.field in hold for c in coords])
    lower, upper = _bounds(coords)
    starts = [to_params(np.where(switched_off, to_vector(s, structure), np.clip(to_vector(s, structure), lower, upper)),
                        structure, s) for s in starts]
    if full:
        fits = [_solve(full, s, structure, free & law_mask, max_nfev) for s in starts]
        start = min(fits, key=lambda p: float(np.mean(np.concatenate(run_residuals(p, full)) ** 2)))
    else:
        start = starts[0]
    if LAW_FROM_FULL_TRAINING in hold and full:
        free = free & ~scaling_law
    best = _solve(runs, start, structure, free, max_nfev, paired_weight)
    residual = np.concatenate(run_residuals(best, runs))
    return best, float(np.sqrt(np.mean(residual**2)))


def bootstrap(runs: list[RunData], best: LossParams, n: int, seed: int, max_nfev: int = 60,
              hold: tuple[str, ...] = (), jobs: int = 1, paired_weight: float = PAIRED_WEIGHT) -> list[LossParams]:
    """Refits on runs resampled with replacement (every resample keeps the full-training
    runs' sizes represented: baselines are resampled among themselves). The resamples are
    drawn here, so ``jobs`` changes the time, not the samples."""
    rng = np.random.default_rng(seed)
    full = [r for r in runs if r.is_full_training]
    grown = [r for r in runs if not r.is_full_training]
    resamples = []
    for _ in range(n):
        picked = [full[i] for i in rng.integers(0, len(full), len(full))]
        if grown:
            picked += [grown[i] for i in rng.integers(0, len(grown), len(grown))]
        resamples.append(picked)
    hold = opt_in_held(best, hold)
    coords = coordinates(best.structure)
    free = np.array([c.field not in hold for c in coords])
    refit = partial(_solve, start=best, structure=best.structure, free=free, max_nfev=max_nfev,
                    paired_weight=paired_weight)
    if LAW_FROM_FULL_TRAINING in hold:  # both passes again: the law's uncertainty from full training's
        law_mask, scaling_law = _masks(coords)
        refit = partial(_refit_law_first, best=best, free=free, law_mask=law_mask, scaling_law=scaling_law,
                        max_nfev=max_nfev, paired_weight=paired_weight)
    if jobs > 1 and n > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, n)) as pool:
            return list(pool.map(refit, resamples))
    return list(map(refit, resamples))


def _refit_law_first(runs: list[RunData], best: LossParams, free: np.ndarray, law_mask: np.ndarray,
                     scaling_law: np.ndarray, max_nfev: int, paired_weight: float) -> LossParams:
    """One bootstrap refit with the law from full training alone: the law's coordinates on the
    resample's full-training runs, then the rest on all of it, the scaling law held."""
    full = [r for r in runs if r.is_full_training]
    law = _solve(full, best, best.structure, free & law_mask, max_nfev)
    return _solve(runs, law, best.structure, free & ~scaling_law, max_nfev, paired_weight)


# --- what a profile knows about its data --------------------------------------------------

LR_LIMIT_FIELDS = ("lr_limit", "lr_limit_spread", "lr_limit_widths", "lr_limit_width_exponent",
                   "lr_limit_depth_exponent", "lr_slow_share", "lr_slow_tokens", "lr_slow_grown")
# A run started slow when at SLOW_AT tokens it has the loss its LR-blind curve reaches with under
# SLOW_EFFICIENCY of them: every run at the corpus's LR is above, every run above a limit far under
# (0.43-0.62), a gap the seed noise does not cross (at 2e-3 the lowest was 0.74)
SLOW_AT = 1.64e6
SLOW_EFFICIENCY = 0.65
# (log limit at d64 with one layer, width exponent, depth exponent, log spread): a limit of 1/width
# through d96 L6 at 3e-3 (slow at 4e-3, not at 2e-3), a band of about 1.4x either way
LR_LIMIT_START = (math.log(3e-3 * 1.5 * 6**0.5), 1.0, 0.5, math.log(0.2))
LR_SPREAD_MIN = 0.02  # a band of 2% in LR: runs cut apart cleanly say only that it is narrow
# (slow share, log recovery tokens): half the pace lost, recovering over about a start-up's length;
# bounds wide of anything physical
LR_SLOW_START = (0.5, math.log(2e6))
LR_SLOW_BOUNDS = ((0.0, math.log(1e3)), (1.0, math.log(1e8)))


@dataclass(frozen=True)
class LRLimitFit:
    params: LossParams
    runs: list[str]  # the full-training runs the limit was fitted on
    slow_runs: list[str]  # those that started slow: the slow start's share and recovery were fitted on them
    rms_before: float  # nats, over their points, with no LR limit
    rms_after: float
    grown_runs: list[str] = field(default_factory=list)  # the growth runs lr_slow_grown was fitted on


def lr_limit_runs(runs: list[RunData], fitted_lr: float, min_width: int = 0) -> list[RunData]:
    """The runs an LR limit is fitted on: full training at the fitted peak LR or above it, of
    d_model ``min_width`` or more, long enough to tell a slow start (``started_slow``). A peak
    below the fitted one trains slower for another reason (each step moves the weights less),
    which the limit does not describe."""
    return [r for r in runs if r.is_full_training and not r.holdout and r.final_shape[0] >= min_width
            and r.spec.training.lr_schedule.lr >= fitted_lr * (1 - 1e-9) and r.tokens[-1] >= 0.95 * SLOW_AT]


def token_efficiency(run: RunData, params: LossParams, at: float, loss: np.ndarray | None = None) -> float | None:
    """Of a full-training run (or of ``loss``, a curve at its evaluations): the tokens the
    profile's LR-blind curve for it needs to reach its loss at ``at`` tokens, over those tokens
    (1 on the curve, 0.5 a run that needs twice the tokens; None past the run's end). A slow
    start above the LR limit shows as about 0.5 at 1.64M tokens."""
    if run.tokens[-1] < 0.95 * at:
        return None
    first = run.plans[0]
    longer = replace(first, tokens=4 * first.tokens, steps=4 * first.n_steps,  # a slow run gets there later
                     lr=np.concatenate([first.lr, np.full(3 * len(first.lr), first.lr[-1])]))
    grid = np.linspace(first.tokens / 400, 4 * first.tokens, 1600)
    curve = trajectory(params.model_copy(update={"lr_limit": 0.0}), [longer], at_tokens=grid)[1]
    best = np.minimum.accumulate(run.loss if loss is None else loss)
    i = int(np.argmin(abs(run.tokens - at)))
    need = flops_to_reach(float(best[i]), grid, np.minimum.accumulate(curve))
    return None if need is None else need / float(run.tokens[i])


def started_slow(run: RunData, params: LossParams) -> bool:
    """Whether a full-training run started slow: under SLOW_EFFICIENCY of its LR-blind curve's
    pace at SLOW_AT tokens (``token_efficiency``)."""
    efficiency = token_efficiency(run, params, SLOW_AT)
    return efficiency is not None and efficiency < SLOW_EFFICIENCY


def fit_lr_limit(runs: list[RunData], params: LossParams, fitted_lr: float,
                 width_exponent: float | None = 1.0, min_width: int = 0) -> LRLimitFit:
    """The LR limit, fitted apart from the law (the corpus the law is fitted on has one peak LR,
    so the main fit cannot see it), in three steps on full-training runs at several peak LRs:

    1. where: which runs started slow (``started_slow``), and by maximum likelihood the limit
       (where half of all seeds start slow) and the band where the seed decides, a probit in
       log LR; ``width_exponent`` holds the limit's width exponent (default 1, Adam's: an
       update's size in a wider layer; None fits it), ``min_width`` leaves narrower models out;
    2. how much: the share of the pace a slow start loses and its recovery, by least squares
       on the curves of the runs that started slow, the law held;
    3. growth: the share of a slow start a grown model above its new shape's limit pays
       (``lr_slow_grown``), on such growth runs, all else held.

    Points weighed as in the main fit (their seed noise)."""
    from scipy.optimize import minimize
    from scipy.stats import norm

    chosen = lr_limit_runs(runs, fitted_lr, min_width)
    if len({r.spec.training.lr_schedule.lr for r in chosen}) < 2:
        raise CostsimError("fitting an LR limit needs full training at two or more peak LRs at or above the "
                           f"profile's ({fitted_lr:g}); train them (python -m studies.growth_corpus --set lr-sweep)")
    slow = np.array([started_slow(r, params) for r in chosen])
    if slow.all() or not slow.any():
        raise CostsimError(f"fitting an LR limit needs runs that started slow and runs that did not; all {len(chosen)} "
                           f"{'did' if slow.all() else 'did not'}: add peak LRs {'under' if slow.all() else 'above'} "
                           "these (python -m studies.growth_corpus --set lr-sweep)")
    log_width = np.log([r.final_shape[0] / STARTUP_WIDTH_REFERENCE for r in chosen])
    log_depth = np.log([float(r.plans[0].layers) for r in chosen])
    log_peak = np.log([r.spec.training.lr_schedule.lr for r in chosen])

    def unpack(x: np.ndarray) -> tuple[float, float, float, float]:
        log_limit, depth, log_spread = x[0], x[-2], x[-1]
        width = x[1] if width_exponent is None else width_exponent
        return log_limit, width, depth, max(math.exp(log_spread), LR_SPREAD_MIN)

    def negative_log_likelihood(x: np.ndarray) -> float:
        log_limit, width, depth, spread = unpack(x)
        z = (log_peak - (log_limit - width * log_width - depth * log_depth)) / spread
        return -float(np.sum(np.where(slow, norm.logcdf(z), norm.logcdf(-z))))

    start = np.array(LR_LIMIT_START if width_exponent is None else [LR_LIMIT_START[i] for i in (0, 2, 3)])
    best = min((minimize(negative_log_likelihood, start + np.eye(len(start))[0] * math.log(scale),
                         method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-9})
                for scale in (0.5, 1.0, 2.0)), key=lambda r: r.fun)  # from three limits: the likelihood is flat
    log_limit, width, depth, spread = unpack(best.x)
    widths = [float(r.final_shape[0]) for r in chosen]
    located = params.model_copy(update={"lr_limit": math.exp(log_limit), "lr_limit_spread": spread,
                                        "lr_limit_width_exponent": width, "lr_limit_depth_exponent": depth,
                                        "lr_limit_widths": (min(widths), max(widths) * LR_LIMIT_WIDTH_REACH)})

    slow_runs = [r for r, s in zip(chosen, slow, strict=True) if s]
    weights = point_weights(slow_runs)

    def with_slow_start(x: np.ndarray, q: LossParams = located) -> LossParams:
        return q.model_copy(update={"lr_slow_share": float(x[0]), "lr_slow_tokens": math.exp(x[1])})

    def slow_residuals(x: np.ndarray) -> np.ndarray:
        # each run's observed outcome, not the likelier one: a limit this low makes every one of them slow
        q = with_slow_start(x, located.model_copy(update={"lr_limit": 1e-12}))
        return np.concatenate([w * r for w, r in zip(weights, run_residuals(q, slow_runs), strict=True)])

    solved = least_squares(slow_residuals, LR_SLOW_START, bounds=LR_SLOW_BOUNDS, x_scale="jac", max_nfev=200)
    fitted = with_slow_start(solved.x)
    off = params.model_copy(update={"lr_limit": 0.0})

    def rms(p: LossParams) -> float:
        return float(np.sqrt(np.mean(np.concatenate(run_residuals(p, chosen)) ** 2)))

    grown = grown_lr_runs(runs, fitted, fitted_lr, min_width)
    if grown:  # then the share a grown model pays, on growth runs whose grown shape is above its limit
        growth_weights = point_weights(grown)

        def growth_residuals(g: np.ndarray) -> np.ndarray:
            q = fitted.model_copy(update={"lr_slow_grown": float(g[0])})
            return np.concatenate([w * r for w, r in zip(growth_weights, run_residuals(q, grown), strict=True)])

        share = least_squares(growth_residuals, [0.5], bounds=([0.0], [1.0]), max_nfev=50).x[0]
        fitted = fitted.model_copy(update={"lr_slow_grown": float(share)})
    return LRLimitFit(fitted, [r.name for r in chosen], [r.name for r in slow_runs], rms(off), rms(fitted),
                      [r.name for r in grown])


def grown_lr_runs(runs: list[RunData], params: LossParams, fitted_lr: float, min_width: int = 0) -> list[RunData]:
    """Growth runs at the fitted peak LR or above whose final shape is at or above its LR limit
    (a slow start the likelier outcome): what the share a grown model pays is fitted on."""
    return [r for r in runs if not r.is_full_training and not r.holdout and r.final_shape[0] >= min_width
            and r.spec.training.lr_schedule.lr >= fitted_lr * (1 - 1e-9)
            and r.plans[-1].peak_lr >= float(lr_limit(params, r.plans[-1].layers, r.plans[-1].aspect))]


def with_lr_limit(profile: LossProfile, fit: LRLimitFit, peaks: list[float], source: str,
                  slow_start: bool = True) -> LossProfile:
    """``profile`` with an LR limit fitted on its point fit, carried to every bootstrap sample
    (the limit is fitted once, with the law held); ``peaks`` the peak LRs it was fitted on.
    Predictions at or above a shape's limit include the slow start, a grown model paying its
    fitted share, and where the seed decides their intervals cover both outcomes
    (docs/loss-model.md, "The LR limit"); without ``slow_start`` the limit is only known (notes
    read it), predictions stay LR-blind and the fitted slow start is kept in the report."""
    values = {name: getattr(fit.params, name) for name in LR_LIMIT_FIELDS}
    slow = {name: values[name] for name in ("lr_slow_share", "lr_slow_tokens", "lr_slow_grown")}
    if not slow_start:
        values |= {"lr_slow_share": 0.0, "lr_slow_tokens": 0.0, "lr_slow_grown": 0.0}
    return profile.model_copy(update={
        "params": profile.params.model_copy(update=values),
        "samples": [s.model_copy(update=values) for s in profile.samples],
        "domain": {**profile.domain, LR_LIMIT_DOMAIN: [min(peaks), max(peaks)]},
        "report": {**profile.report, "lr_limit_from": source, "lr_limit_runs": len(fit.runs),
                   "lr_limit_slow_runs": len(fit.slow_runs), "lr_limit_grown_runs": len(fit.grown_runs),
                   "lr_limit_rms": [fit.rms_before, fit.rms_after], "lr_slow_start_fitted": slow,
                   "lr_slow_start_applied": slow_start}})


def cumulative_flops(spec: ScheduleSpec, steps: list[int], tokens: np.ndarray) -> np.ndarray:
    return along_schedule(spec, steps, tokens, [s.flops_counted_per_step for s in estimate(spec).stages])


def flops_to_reach(target: float, flops: np.ndarray, loss: np.ndarray) -> float | None:
    """Counted FLOPs at which the curve first reaches ``target`` (linear interpolation)."""
    below = np.flatnonzero(loss <= target)
    if not len(below):
        return None
    i = below[0]
    if i == 0:
        return float(flops[0])
    f0, f1, l0, l1 = flops[i - 1], flops[i], loss[i - 1], loss[i]
    return float(f0 + (f1 - f0) * (l0 - target) / (l0 - l1))


def domain_of(runs: list[RunData]) -> dict[str, list[float]]:
    """The range of sizes, tokens, FLOPs, depths and peak LRs the runs cover."""
    from costsim.engine import stage_shape
    from costsim.flops import parameter_counts

    sizes = [float(n) for r in runs for n in parameter_counts(stage_shape(r.spec)).non_embedding]
    tokens = [float(t) for r in runs for t in (r.tokens[0], r.tokens[-1])]
    flops = [float(f) for r in runs for f in cumulative_flops(r.spec, r.steps, r.tokens[[0, -1]])]
    depths = [float(stage.layers) for r in runs for stage in r.spec.stages]
    peaks = [float(r.spec.training.lr_schedule.lr) for r in runs]
    return {"non_embedding_params": [min(sizes), max(sizes)], "tokens": [min(tokens), max(tokens)],
            "flops_counted": [min(flops), max(flops)], "layers": [min(depths), max(depths)],
            "peak_lr": [min(peaks), max(peaks)]}


def seed_noise(runs: list[RunData], at: float = 1.0) -> tuple[float, int]:
    """Standard deviation of the loss between seeds of the same schedule at a share ``at``
    of its tokens (1: the final loss), and how many schedules were repeated (the mean of
    the schedules' variances)."""
    by_schedule: dict[str, list[RunData]] = {}
    for r in runs:
        by_schedule.setdefault(r.schedule, []).append(r)
    groups = [v for v in by_schedule.values() if len(v) > 1]
    if not groups:
        return 0.0, 0

    def losses_at(repeats: list[RunData]) -> list[float]:
        point = at * min(r.tokens[-1] for r in repeats)  # repeats share their tokens; the shortest bounds it
        return [float(np.interp(point, r.tokens, r.loss)) for r in repeats]

    var = np.mean([np.var(losses_at(v), ddof=1) for v in groups])
    return float(np.sqrt(var)), len(groups)


def seed_noise_along(runs: list[RunData]) -> list[tuple[float, float]]:
    """``seed_noise`` at ``SEED_SHARES`` of a run (empty when no schedule was repeated)."""
    if not seed_noise(runs)[1]:
        return []
    return [(share, seed_noise(runs, share)[0]) for share in SEED_SHARES]


@dataclass(frozen=True)
class SeedNoise:
    """Seed-to-seed noise measured on repeated schedules: of the final loss, and along a
    run (``SEED_SHARES``) for growth runs and for full training apart, since a model
    trained from scratch at its full depth leaves its early plateau at a time that varies
    with the seed far more than a growth run's shallow start does."""

    final: float = 0.0
    along: list[tuple[float, float]] = field(default_factory=list)  # growth runs
    along_scratch: list[tuple[float, float]] = field(default_factory=list)  # full training
    repeated: int = 0  # schedules repeated

    @classmethod
    def of(cls, runs: list[RunData]) -> SeedNoise:
        final, repeated = seed_noise(runs)
        return cls(final, seed_noise_along([r for r in runs if not r.is_full_training]),
                   seed_noise_along([r for r in runs if r.is_full_training]), repeated)

    def profile_fields(self) -> dict:
        return {"seed_std": self.final, "seed_std_along": self.along, "seed_std_along_scratch": self.along_scratch}

    def std_at(self, run: RunData) -> np.ndarray:
        """The seed noise at each of the run's measured points (at its share of the run; full
        training's table for full training)."""
        return seed_std_in(seed_table(self.along, self.along_scratch, run.is_full_training), self.final,
                           run.tokens / run.tokens[-1])

    def variance_in(self, runs: list[RunData]) -> float:
        """The mean seed variance over the runs' measured points (each at its share of its
        run): how much of a residual measured on these runs is seed noise rather than the
        model's error."""
        variances = [self.std_at(r) ** 2 for r in runs]
        return float(np.mean(np.concatenate(variances))) if variances else self.final**2


def without_seed_noise(residual: float, seed_variance: float) -> float:
    """The model's own error: a residual's rms with the seed noise it holds taken out
    (the two are independent, so their variances add)."""
    return float(np.sqrt(max(residual**2 - seed_variance, 0.0)))


def fit_profile(runs: list[RunData], *, name: str, start: LossParams, structure: str = DEFAULT_STRUCTURE,
                n_bootstrap: int = 20, seed: int = 0, source: str = "", residual_std: float | None = None,
                extrapolation_growth: float = 0.0, report: dict | None = None, hold: tuple[str, ...] = (),
                jobs: int = 1, paired_weight: float = PAIRED_WEIGHT) -> LossProfile:
    """A profile fitted on the non-held-out runs. ``residual_std`` should be the
    held-out (cross-validated) error; without it the in-sample rms is used."""
    fit_runs = [r for r in runs if not r.holdout]
    if len({r.final_shape for r in fit_runs if r.is_full_training}) < 3:
        raise CostsimError("fitting needs full-training runs at 3 or more model sizes among the non-held-out "
                           "runs; train more (python -m studies.growth_corpus)")
    best, rms = fit_params(fit_runs, start, structure, hold=hold, paired_weight=paired_weight)
    samples = bootstrap(fit_runs, best, n_bootstrap, seed, hold=hold, jobs=jobs, paired_weight=paired_weight)
    profile = LossProfile(name=name, params=best, samples=samples, source=source,
                          report={"n_fit_runs": len(fit_runs), "n_points": int(sum(len(r.loss) for r in fit_runs)),
                                  "rms_nats_in_sample": rms})
    return calibrated(profile, runs, residual_std=rms if residual_std is None else residual_std,
                      extrapolation_growth=extrapolation_growth, report=report)


def calibrated(profile: LossProfile, runs: list[RunData], *, residual_std: float, extrapolation_growth: float,
               report: dict | None = None) -> LossProfile:
    """``profile`` with everything but its parameters measured on the non-held-out runs:
    seed noise, the model's own error (``residual_std`` without the seed noise the growth
    runs it was measured on hold), its growth outside the domain, the domain itself."""
    fit_runs = [r for r in runs if not r.holdout]
    vocab = {r.spec.model.vocab_size for r in fit_runs}
    lrs = {r.spec.training.lr_schedule.lr for r in fit_runs}
    noise = SeedNoise.of(fit_runs)
    growth_runs = [r for r in fit_runs if not r.is_full_training]
    return LossProfile.model_validate({**profile.model_dump(), **noise.profile_fields(),
        "residual_std": residual_std,
        "model_std": without_seed_noise(residual_std, noise.variance_in(growth_runs)),
        "extrapolation_growth": extrapolation_growth,
        "growth_rel_std": relative_error(fit_runs, profile.params, residual_std),
        "vocab_size": vocab.pop() if len(vocab) == 1 else None,
        "lr": lrs.pop() if len(lrs) == 1 else None,
        # an LR limit, fitted apart on runs at several peak LRs, keeps the peaks it was fitted on
        "domain": {**domain_of(fit_runs), **{k: v for k, v in profile.domain.items() if k == LR_LIMIT_DOMAIN}},
        "report": {**profile.report, "seed_repeats": noise.repeated, **(report or {})}})


def relative_error(runs: list[RunData], params: LossParams, residual_std: float) -> float:
    """The held-out error as a share of the reducible loss the growth runs measured (the
    median over their points): the form in which it transfers to another law's scale."""
    reducible = np.concatenate([r.loss - params.E for r in runs if not r.is_full_training] or [np.ones(1)])
    return float(residual_std / max(np.median(reducible), 1e-9))


# the structure's choices (not fitted numbers) the fit CLI can start from, with their help
CHOICES = {
    "startup_growth": "what growth does to the start-up: 'escape' ends it, 'inherit' continues it from the share in "
    "use, 'depth_escapes' ends it for depth growth and continues it for width growth, 'carry' continues it from the "
    "old model's share in use (the shipped profile's)",
    "lag_clock": "the growth deficit's unit of time: 'tokens_seen' (equivalent tokens at growth, the shipped "
    "profile's) or 'parameters' (tokens per parameter of the grown model)",
    "frozen_form": "a frozen phase's efficiency in its trainable share: 'power' (the shipped profile's) or "
    "'saturating' (the same at half, linear as the share goes to 0)",
    "frozen_clock": "how a frozen phase advances the growth deficit's clock: 'ideal' (its discounted tokens) or "
    "'trained' (the tokens its trainable blocks see: the shipped profile's)",
}
DIMENSIONLESS = ("structure", "anneal", "frozen_exponent", "frozen_form", "frozen_clock", "bumps", "transient_steps",
                 "jumps", "reset_jump", "lags", "lag_tokens", "lag_clock", "lag_size_slope", "lag_reference_params",
                 "width_lag_scale")


def transfer(fitted: LossProfile, law: LossProfile, name: str) -> LossProfile:
    """Carry the dimensionless growth/annealing parameters (and their bootstrap spread)
    onto another law's scale parameters (the law keeps its own batch and offset terms)."""

    def move(p: LossParams) -> LossParams:
        return law.params.model_copy(update={k: getattr(p, k) for k in DIMENSIONLESS})

    return LossProfile(name=name, params=move(fitted.params), samples=[move(s) for s in fitted.samples],
                       residual_std=law.residual_std, seed_std=law.seed_std, law_rel_std=law.law_rel_std,
                       growth_rel_std=fitted.growth_rel_std,
                       source=f"{law.source}; growth and annealing parameters fitted on {fitted.name}",
                       domain=law.domain, vocab_size=law.vocab_size,
                       report={"growth_fitted_on": fitted.name, "fit_report": fitted.report})


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costsim.fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    shipped = ", ".join(sorted(path.stem for path in dataset_path().parent.glob("*.json")))
    parser.add_argument("--data", default=None, help="runs: a DuckDB store (*.duckdb), a corpus file or a shipped "
                        f"dataset's name ({shipped}), several comma-separated (default: the shipped growth corpus)")
    parser.add_argument("--name", default="fitted", help="profile name")
    parser.add_argument("--structure", default=DEFAULT_STRUCTURE, choices=sorted(STRUCTURES),
                        help=f"growth structure (default {DEFAULT_STRUCTURE}, the lowest leave-one-schedule-out rms; "
                        "the shipped profile is lingering with --lag-tokens 2, whose final gap is less biased: "
                        "docs/loss-model.md)")
    parser.add_argument("--no-shape", action="store_true", help="hold the law's shape term at 0 (capacity in N "
                        "alone): profiles before the 97-run corpus did; the shipped one fits it (docs/loss-model.md)")
    parser.add_argument("--flat-lags", action="store_true", help="hold the lags' size slope at 0 (one lag "
                        "at every size)")
    parser.add_argument("--linear-startup", action="store_true", help="hold the from-scratch start-up's depth "
                        "exponent at 1 (start-up time proportional to depth): shipped profiles did until the depth "
                        "exponent was registered against it at 12 and 16 layers (docs/loss-model.md)")
    parser.add_argument("--no-startup", action="store_true", help="no from-scratch start-up term (as before it "
                        "existed)")
    parser.add_argument("--exponential-startup", action="store_true", help="hold the start-up's shape at 1 "
                        "(exponential, as before the shape was fitted)")
    parser.add_argument("--width-free-startup", action="store_true", help="hold the start-up's width exponent "
                        "at 0 (start-up time independent of d_model)")
    parser.add_argument("--lag-tokens", type=float, default=None, metavar="X",
                        help="hold the growth deficit's time scale at X units of --lag-clock (equivalent tokens "
                        "at growth by default) instead of fitting it (the shipped profile holds it at 2; "
                        "docs/loss-model.md, \"A deficit that fades faster\", compares held values)")
    parser.add_argument("--fit-interaction", action="store_true", help="fit the law's capacity-data interaction "
                        f"(law_interaction, from {INTERACTION_START:g}) instead of adding the two terms (1)")
    parser.add_argument("--fit-data-break", action="store_true", help="fit a break in the law's data term "
                        "(data_break_tokens, late_beta, from {:g} tokens and {:g}): a smoothly broken power law "
                        "instead of one".format(*DATA_BREAK_START))
    parser.add_argument("--data-break", metavar="TOKENS,LATE_BETA", default=None,
                        help="hold the law's data term broken at TOKENS with late exponent LATE_BETA (not fitted)")
    parser.add_argument("--law-from-full-training", action="store_true", help="keep the law's terms as fitted on "
                        "full-training runs alone and fit only the growth terms on every run (by default the growth "
                        "runs move the law too)")
    parser.add_argument("--fit-data-break-size", action="store_true", help="with a break (--data-break or "
                        "--fit-data-break): fit how its place moves with the model's size (data_break_size_exponent, "
                        f"from {DATA_BREAK_SIZE_START:g}) instead of one place for every model (0); a fit from a "
                        "profile that already has one, as the shipped one does, fits it without this flag")
    parser.add_argument("--fit-width-lag-scale", action="store_true", help="fit width growth's own deficit time "
                        f"scale (width_lag_scale, from {WIDTH_LAG_SCALE_START:g}) instead of one time scale for "
                        "every operator (1)")
    parser.add_argument("--sgd-batches", action="store_true", help="hold the small-batch exponent at 0 (every "
                        "batch under the critical batch spends its tokens alike, as before it was fitted)")
    for choice, help_text in CHOICES.items():  # the LossParams choices a fit starts from (default: the shipped ones)
        parser.add_argument(f"--{choice.replace('_', '-')}", default=None, help=help_text,
                            choices=typing.get_args(LossParams.model_fields[choice].annotation))
    parser.add_argument("--holdout-marker", default="[holdout]", help="runs whose spec name contains this are held out")
    parser.add_argument("--bootstrap", type=int, default=20, help="bootstrap refits for the intervals")
    parser.add_argument("--cv", action="store_true", help="also run leave-one-schedule-out cross-validation and "
                        "use its error as the profile's residual (slow: one refit per growth schedule)")
    parser.add_argument("--residual-std", type=float, help="held-out error to use instead (nats; the cv rms "
                        "benchmarks/loss_accuracy.py printed for this structure)")
    parser.add_argument("--extrapolation-growth", type=float, default=None,
                        help="relative growth of the model's error per e-fold outside the fitted sizes and depths "
                        "(the size hold-out's figure benchmarks/loss_accuracy.py printed; default 0, or the "
                        "recalibrated profile's)")
    parser.add_argument("--recalibrate", metavar="PROFILE",
                        help="keep this profile's fitted parameters and bootstrap samples and measure only the rest "
                        "again on the runs (seed noise, the model's own error, its growth, the domain): seconds, "
                        "not a refit")
    parser.add_argument("--lr-limit", metavar="PROFILE",
                        help="keep this profile and fit only its LR limit (the peak LR above which a model from "
                        "scratch starts slow) on the full-training runs of --data at its peak LR and above, the "
                        "law held: seconds, not a refit (--data lr_sweep,growth_corpus)")
    parser.add_argument("--lr-width-exponent", default="1", metavar="A",
                        help="with --lr-limit: hold the limit's width exponent at A (the limit falls as "
                        "d_model^-A; default 1, Adam's in the standard parametrisation), or 'free' to fit it")
    parser.add_argument("--lr-min-width", type=int, default=0, metavar="D",
                        help="with --lr-limit: fit on models of d_model D or more (d32 took 8x the corpus's LR "
                        "without a slow start, far above where wider models' limit puts it)")
    parser.add_argument("--lr-limit-only", action="store_true",
                        help="with --lr-limit: record the limit (notes name it) but leave predictions LR-blind, "
                        "the fitted slow start kept in the profile's report")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the bootstrap and --cv "
                        "(default: CPUs)")
    parser.add_argument("--paired-weight", type=float, default=PAIRED_WEIGHT,
                        help="weight of growth runs' gaps to their same-seed baselines next to the points "
                        f"(default {PAIRED_WEIGHT:g}; 0: points only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="profile JSON path to write")
    parser.add_argument("--transfer-to", default="", help="also write this law with the fitted growth parameters")
    parser.add_argument("--transfer-name", default="chinchilla", help="name of that transferred profile")
    args = parser.parse_args(argv)
    out = output_file(args.out, "--out")
    runs = load_runs(args.data, args.holdout_marker)
    start = load_loss_profile("stdlib-bytes").params if any(r.spec.model.vocab_size == 256 for r in runs) \
        else load_loss_profile("chinchilla-published").params
    flags = {"no_shape": "shape_exponent", "flat_lags": "lag_size_slope", "no_startup": "startup_tokens",
             "linear_startup": "startup_depth_exponent", "exponential_startup": "startup_shape",
             "width_free_startup": "startup_width_exponent", "sgd_batches": "small_batch_exponent"}
    hold = tuple(field for flag, field in flags.items() if getattr(args, flag))
    start = holding(start, hold)
    start = start.model_copy(update={choice: getattr(args, choice) for choice in CHOICES if getattr(args, choice)})
    if args.fit_interaction and start.law_interaction == HELD_VALUES["law_interaction"]:
        start = start.model_copy(update={"law_interaction": INTERACTION_START})
    if args.fit_data_break and start.data_break_tokens == HELD_VALUES["data_break_tokens"]:
        start = start.model_copy(update=dict(zip(("data_break_tokens", "late_beta"), DATA_BREAK_START)))
    if args.data_break is not None:
        try:
            tokens, late = (float(v) for v in args.data_break.split(","))
        except ValueError:
            raise CostsimError(f"--data-break {args.data_break}: give TOKENS,LATE_BETA, e.g. 3e6,0.9") from None
        if not (0 < tokens < math.inf and 0 < late <= LATE_BETA_MAX) or args.fit_data_break:
            raise CostsimError(f"--data-break {args.data_break}: TOKENS must be positive and LATE_BETA in (0, "
                               f"{LATE_BETA_MAX:g}], and not with --fit-data-break")
        start = start.model_copy(update={"data_break_tokens": tokens, "late_beta": late})
        hold += ("data_break_tokens", "late_beta")
    if args.fit_data_break_size:
        if start.data_break_tokens == HELD_VALUES["data_break_tokens"]:
            raise CostsimError("--fit-data-break-size moves a break: give one too (--data-break TOKENS,LATE_BETA or "
                               "--fit-data-break)")
        if start.data_break_size_exponent == HELD_VALUES["data_break_size_exponent"]:
            start = start.model_copy(update={"data_break_size_exponent": DATA_BREAK_SIZE_START})
    if args.law_from_full_training:
        hold += (LAW_FROM_FULL_TRAINING,)
    if args.fit_width_lag_scale and start.width_lag_scale == HELD_VALUES["width_lag_scale"]:
        start = start.model_copy(update={"width_lag_scale": WIDTH_LAG_SCALE_START})
    if args.lag_tokens is not None:
        if not 0 < args.lag_tokens < math.inf:
            raise CostsimError(f"--lag-tokens must be a positive finite number, got {args.lag_tokens}")
        start = start.model_copy(update={"lag_tokens": args.lag_tokens})
        hold += ("lag_tokens",)
    residual, report = args.residual_std, {}
    if residual is not None and not residual >= 0:
        raise CostsimError(f"--residual-std must be a non-negative number, got {residual}")
    if residual is not None:
        report = {"residual_std_from": "leave-one-schedule-out rms of benchmarks/loss_accuracy.py"}
    if not args.paired_weight >= 0:
        raise CostsimError(f"--paired-weight must be a non-negative number, got {args.paired_weight}")
    growth = args.extrapolation_growth
    if growth is not None and not growth >= 0:
        raise CostsimError(f"--extrapolation-growth must be a non-negative number, got {growth}")
    if args.lr_limit:
        old = load_loss_profile(args.lr_limit)
        if old.lr is None:
            raise CostsimError(f"--lr-limit {args.lr_limit}: the profile records no peak LR (fitted on runs at "
                               "several); fit the law on runs at one peak LR first")
        if args.lr_width_exponent == "free":
            width_exponent = None
        else:
            try:
                width_exponent = float(args.lr_width_exponent)
                assert width_exponent >= 0
            except (ValueError, AssertionError):
                raise CostsimError(f"--lr-width-exponent {args.lr_width_exponent!r}: give a number >= 0 or 'free'") \
                    from None
        fit = fit_lr_limit(runs, old.params, old.lr, width_exponent, args.lr_min_width)
        peaks = [r.spec.training.lr_schedule.lr for r in runs if r.name in set(fit.runs)]
        options = "" if args.lr_width_exponent == "1" else f" --lr-width-exponent {args.lr_width_exponent}"
        options += f" --lr-min-width {args.lr_min_width}" if args.lr_min_width else ""
        options += " --lr-limit-only" if args.lr_limit_only else ""
        profile = with_lr_limit(old, fit, peaks, f"python -m costsim.fit --lr-limit {args.lr_limit} --data "
                                f"{args.data or 'growth_corpus'}{options}", not args.lr_limit_only)
        profile = profile.model_copy(update={"name": args.name if args.name != "fitted" else old.name})
        out.write_text(profile.model_dump_json(indent=1) + "\n")
        q = fit.params
        print(f"fitted an LR limit on {len(fit.runs)} full-training runs ({len(fit.slow_runs)} started slow) and "
              f"{len(fit.grown_runs)} growth runs above it: limit {q.lr_limit:.3g} x (d_model/64)^-"
              f"{q.lr_limit_width_exponent:.2f} x layers^-{q.lr_limit_depth_exponent:.2f}, where half of all seeds "
              f"start slow, the seed deciding within {lr_band(q):.2f}x of it; a slow start loses "
              f"{q.lr_slow_share:.2f} of the pace, recovered over {q.lr_slow_tokens:.3g} ideal tokens, and a grown "
              f"model pays {q.lr_slow_grown:.2f} of it; rms {fit.rms_before:.4f} -> {fit.rms_after:.4f} nats "
              f"({'not in' if args.lr_limit_only else 'applied to'} predictions); wrote {out}")
        return 0
    if args.recalibrate:
        old = load_loss_profile(args.recalibrate)
        profile = calibrated(old, runs, residual_std=old.residual_std if residual is None else residual,
                             extrapolation_growth=old.extrapolation_growth if growth is None else growth,
                             report=report)
        return _write(profile, out, args)
    if args.cv:
        from costsim.heldout import cross_validate

        kept = [r for r in runs if not r.holdout]
        cv = cross_validate(kept, start, args.structure, noise=SeedNoise.of(kept), jobs=max(1, args.jobs),
                            hold=hold, paired_weight=args.paired_weight)
        residual, report = cv.rms, {"cross_validation": cv.summary()}
    profile = fit_profile(runs, name=args.name, start=start, structure=args.structure, n_bootstrap=args.bootstrap,
                          seed=args.seed, source=f"python -m costsim.fit --data {args.data or 'growth_corpus'}",
                          residual_std=residual, extrapolation_growth=growth or 0.0, report=report, hold=hold,
                          jobs=max(1, args.jobs), paired_weight=args.paired_weight)
    return _write(profile, out, args)


def _write(profile: LossProfile, out: Path, args: argparse.Namespace) -> int:
    out.write_text(profile.model_dump_json(indent=1) + "\n")
    print(f"{'recalibrated' if args.recalibrate else 'fitted'} {profile.name} ({profile.params.structure}) on "
          f"{profile.report['n_fit_runs']} runs, {profile.report['n_points']} points: rms "
          f"{profile.report['rms_nats_in_sample']:.4f} nats in sample, {profile.residual_std:.4f} residual, "
          f"{profile.model_std:.4f} without seed noise; wrote {out}")
    if args.transfer_to:
        moved = transfer(profile, load_loss_profile(args.transfer_to), args.transfer_name)
        target = out.with_name(f"{moved.name}.json")
        target.write_text(moved.model_dump_json(indent=1) + "\n")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
