"""The LR limit: a model from scratch at a peak LR at or above its shape's limit (where half of all
seeds start slow) is predicted to start slow, all or nothing, a grown model pays a share of it,
and where the seed decides the interval covers both outcomes; the fitter recovers all of it from
curves the model made, and the shipped limit says which held-out runs started slow."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costsim.corpus import RunData, load_runs
from costsim.errors import CostsimError
from costsim.fit import SLOW_AT, fit_lr_limit, lr_limit_runs, started_slow
from costsim.loss import (
    LossParams,
    LossProfile,
    StagePlan,
    full_training_loss,
    load_loss_profile,
    lr_band,
    lr_branches,
    lr_limit,
    lr_slow_lost,
    lr_slow_probability,
    lr_slow_share,
    lr_verdict,
    predict,
    trajectory,
)

LIMITED = LossParams(E=1.0, A=30.0, alpha=0.3, B=60.0, beta=0.3, d0=1e4, startup_tokens=3e5, startup_shape=2.0,
                     startup_growth="carry", lr_limit=8e-3, lr_limit_width_exponent=1.0, lr_limit_depth_exponent=1.5,
                     lr_limit_spread=0.2, lr_slow_share=0.5, lr_slow_tokens=2e5, lags={"stack_copy": 0.1})


def stage(n_params, tokens, *, layers, d_model=96, peak=2e-3, operator="none", steps=400):
    return StagePlan(n_params=n_params, tokens=tokens, trainable_share=1.0, operator=operator, reset_optimizer=False,
                     lr=np.ones(steps), layers=layers, aspect=d_model / layers, peak_lr=peak)


def final(p, plans):
    return trajectory(p, plans, points_per_stage=8)[1]


def test_the_limit_falls_with_width_and_depth():
    assert float(lr_limit(LIMITED, 6, 96 / 6)) == pytest.approx(8e-3 / 1.5 / 6**1.5)
    assert lr_limit(LIMITED, 6, 192 / 6) < lr_limit(LIMITED, 6, 96 / 6) < lr_limit(LIMITED, 3, 96 / 3)
    assert np.isinf(lr_limit(LIMITED.model_copy(update={"lr_limit": 0.0}), 6, 16.0))  # no limit


@settings(max_examples=60, deadline=None)
@given(ideal=st.floats(0, 1e8), peak=st.floats(1e-5, 1.0), layers=st.integers(1, 48), width=st.floats(16, 4096))
def test_a_slow_start_is_all_or_nothing_and_loses_at_most_its_share_of_the_tokens(ideal, peak, layers, width):
    lost = float(lr_slow_lost(LIMITED, layers, ideal, width / layers, peak))
    over = peak / float(lr_limit(LIMITED, layers, width / layers))
    share = float(lr_slow_share(LIMITED, layers, width / layers, peak))
    assert share == (LIMITED.lr_slow_share if over >= 1 else 0.0)  # the likelier outcome, whole
    assert 0.0 <= lost <= share * ideal * (1 + 1e-12) + 1e-9
    chance = float(lr_slow_probability(LIMITED, over))
    assert (chance >= 0.5) == (over >= 1)
    verdict = lr_verdict(LIMITED, over)
    band = lr_band(LIMITED)
    assert verdict == ("slow" if chance >= 0.95 - 1e-9 else "normal" if chance < 0.05 + 1e-9 else "seed decides") \
        or abs(np.log(over)) == pytest.approx(np.log(band), rel=1e-9)  # on an edge either way


def test_the_band_is_as_wide_as_the_seeds_make_it():
    """A sharp limit (no spread) has no band; a wider spread a wider one, each outcome at least
    the interval's tail probability at its edges."""
    sharp = LIMITED.model_copy(update={"lr_limit_spread": 0.0})
    assert lr_band(sharp) == 1.0 and lr_verdict(sharp, 0.999) == "normal" and lr_verdict(sharp, 1.0) == "slow"
    band = lr_band(LIMITED)
    assert band > 1 and float(lr_slow_probability(LIMITED, band)) == pytest.approx(0.95)
    assert float(lr_slow_probability(LIMITED, 1 / band)) == pytest.approx(0.05)
    assert lr_band(LIMITED.model_copy(update={"lr_limit_spread": 0.4})) > band
    pessimistic, optimistic = lr_branches(LIMITED)
    assert pessimistic.lr_limit == pytest.approx(LIMITED.lr_limit / band)
    assert optimistic.lr_limit == pytest.approx(LIMITED.lr_limit * band)


def test_below_the_limit_the_peak_lr_changes_nothing():
    d96_l6 = [stage(666e3, 3.3e6, layers=6)]
    limit = float(lr_limit(LIMITED, 6, 16.0))
    off = final(LIMITED.model_copy(update={"lr_limit": 0.0}), d96_l6)
    assert final(LIMITED, [stage(666e3, 3.3e6, layers=6, peak=0.99 * limit)]) == pytest.approx(off, rel=1e-12)
    assert final(LIMITED, [stage(666e3, 3.3e6, layers=6, peak=0.0)]) == pytest.approx(off, rel=1e-12)  # unknown


def test_at_or_above_the_limit_full_training_starts_slow_the_same_at_any_lr():
    """All or nothing, as in the runs: a slow start costs the same at 1x and 2x the limit."""
    limit = float(lr_limit(LIMITED, 6, 16.0))
    below, *above = [final(LIMITED, [stage(666e3, 3.3e6, layers=6, peak=limit * f)]) for f in (0.5, 1.0, 1.2, 2.0)]
    for curve in above:
        assert curve == pytest.approx(above[0], rel=1e-12)
        assert np.all(curve >= below - 1e-12) and curve[-1] > below[-1]
    # the gap is widest early and narrows as the slow start recovers its pace
    gap = above[0] - below
    assert gap[1] > gap[-1] > 0


def _profile(p: LossParams) -> LossProfile:
    return LossProfile(name="limited", params=p, residual_std=0.01, seed_std=0.01)


@pytest.mark.parametrize("factor", [0.8, 0.95, 1.05, 1.25])
def test_where_the_seed_decides_the_interval_covers_both_outcomes(factor):
    """In the band the point is the likelier outcome and the interval reaches the other one: a
    normal start's loss under a slow point, a slow start's loss under the upper end of a normal
    one. Outside the band the interval is what it would be with a sharp limit."""
    limit = float(lr_limit(LIMITED, 6, 16.0))
    plans = [stage(666e3, 3.3e6, layers=6, peak=limit * factor)]
    curve = predict(_profile(LIMITED), plans, points_per_stage=8)
    normal = final(LIMITED.model_copy(update={"lr_limit": 0.0}), plans)
    slow = final(LIMITED.model_copy(update={"lr_limit": 1e-12}), plans)
    assert np.all(curve.lower <= curve.loss) and np.all(curve.loss <= curve.upper)
    assert curve.loss == pytest.approx(slow if factor >= 1 else normal, rel=1e-12)
    assert np.all(curve.lower <= normal + 1e-12) and np.all(curve.upper >= slow - 1e-12)
    far = [stage(666e3, 3.3e6, layers=6, peak=limit * factor ** 20)]  # outside the band: one outcome
    sharp = _profile(LIMITED.model_copy(update={"lr_limit_spread": 0.0}))
    outside = predict(_profile(LIMITED), far, points_per_stage=8)
    assert outside.upper == pytest.approx(predict(sharp, far, points_per_stage=8).upper, rel=1e-12)


def test_outside_the_widths_it_was_measured_on_the_limit_is_only_named():
    """A slow start is predicted only for widths in ``lr_limit_widths``: the shipped profile's
    are the fit's (d48 to d128) with the widest doubled, so d512 at 3.8x its limit is predicted
    LR-blind, point and interval, and its note says why."""
    from costsim.loss_report import lr_limit_note

    profile = load_loss_profile("stdlib-bytes")
    assert profile.params.lr_limit_widths == (48.0, 256.0)
    blind = profile.model_copy(update={"params": profile.params.model_copy(update={"lr_limit": 0.0}),
                                       "samples": [q.model_copy(update={"lr_limit": 0.0}) for q in profile.samples]})
    for width, inside in ((32, False), (96, True), (256, True), (512, False)):
        layers = 8
        limit = float(lr_limit(profile.params, layers, width / layers))
        plans = [stage(12 * width**2 * layers, 3.3e6, layers=layers, d_model=width, peak=2 * limit)]
        curve, lr_blind = predict(profile, plans, points_per_stage=4), predict(blind, plans, points_per_stage=4)
        assert (curve.loss[-1] > lr_blind.loss[-1]) == inside
        if not inside:
            assert curve.upper == pytest.approx(lr_blind.upper, rel=1e-12)
    run = next(r for r in load_runs("heldout_deep") if r.name == "full d128 L8 seed1")
    wide = run.spec.model_copy(update={"model": run.spec.model.model_copy(update={"d_model": 512, "n_heads": 8})})
    note = lr_limit_note(wide, profile)
    assert "is likely to start slow" in note and "not in this prediction: the limit is predicted on d_model 48 to 256" \
        in note


def test_growth_skips_a_slow_start_its_shallow_source_did_not_have():
    """At a peak the 6-layer model cannot take from scratch but 3 layers can, growing 3 -> 6 is
    predicted as if there were no limit, while full training at 6 is slower."""
    peak = 1.5 * float(lr_limit(LIMITED, 6, 16.0))
    assert peak < float(lr_limit(LIMITED, 3, 32.0))
    grow = [stage(333e3, 1.0e6, layers=3, peak=peak), stage(666e3, 2.3e6, layers=6, peak=peak, operator="stack_copy")]
    off = LIMITED.model_copy(update={"lr_limit": 0.0})
    assert final(LIMITED, grow) == pytest.approx(final(off, grow), rel=1e-12)
    full = [stage(666e3, 3.3e6, layers=6, peak=peak)]
    assert final(LIMITED, full)[-1] > final(off, full)[-1]


def test_a_grown_model_above_its_new_limit_pays_its_share_of_a_slow_start_from_its_growth():
    """lr_slow_grown 0 is growth skipping it, 1 a grown model starting slow as one from scratch
    (on a clock from its growth); between, more of it costs more; the source stage, under its
    limit, is the same in every case."""
    peak = 1.5 * float(lr_limit(LIMITED, 6, 16.0))
    grow = [stage(333e3, 1.0e6, layers=3, peak=peak), stage(666e3, 2.3e6, layers=6, peak=peak, operator="stack_copy")]
    curves = [trajectory(LIMITED.model_copy(update={"lr_slow_grown": g}), grow, points_per_stage=8) for g in
              (0.0, 0.5, 1.0)]
    for (_, lower, stages), (_, higher, _) in zip(curves, curves[1:], strict=False):
        assert lower[stages == 0] == pytest.approx(higher[stages == 0], rel=1e-12)
        assert np.all(higher[stages == 1] >= lower[stages == 1] - 1e-12) and higher[-1] > lower[-1]


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 3000), layers=st.integers(1, 24), factor=st.floats(0.5, 8.0),
       bcrit=st.sampled_from([0.0, 1e5]))
def test_the_planners_full_training_loss_reads_the_limit_as_the_trajectory_does(steps, layers, factor, bcrit):
    p = LIMITED.model_copy(update={"bcrit": bcrit})
    peak = factor * float(lr_limit(p, layers, 96 / layers))
    tokens = steps * 2048.0
    plans = [StagePlan(n_params=5e5, tokens=tokens, trainable_share=1.0, operator="none", reset_optimizer=False,
                       lr=np.ones(steps), batch_tokens=2048.0, layers=layers, aspect=96 / layers, peak_lr=peak)]
    loss = trajectory(p, plans, points_per_stage=1)[1]
    assert loss[-1] == pytest.approx(float(full_training_loss(p, 5e5, tokens, 2048.0, 96 / layers, layers, peak)),
                                     rel=1e-9)


def test_the_fit_recovers_a_known_limit_from_curves_the_model_made():
    """Curves of the LR sweep's specs, made by a known limit (a slow start as long as the runs'):
    the fit tells which started slow, puts the limit between the fastest normal and the slowest
    slow run, and finds the slow start's share, recovery and the grown share again."""
    sweep = load_runs("lr_sweep")
    specs = [r for r in sweep if r.is_full_training][:14] + [r for r in sweep if not r.is_full_training][:3]
    truth = LIMITED.model_copy(update={"lr_limit": 1.2e-2, "lr_limit_width_exponent": 0.8,
                                       "lr_limit_depth_exponent": 0.6, "lr_slow_share": 0.55, "lr_slow_tokens": 5e6,
                                       "lr_slow_grown": 0.4, "startup_tokens": 0.0})
    made = [RunData(r.run_id, r.name, r.spec, r.steps, r.tokens, trajectory(truth, r.plans, at_tokens=r.tokens)[1],
                    family=r.family) for r in specs]
    start = truth.model_copy(update={"lr_limit": 0.0, "lr_slow_share": 0.0, "lr_slow_tokens": 0.0,
                                     "lr_slow_grown": 0.0})
    fit = fit_lr_limit(made, start, 2e-3, width_exponent=0.8)
    fitted = lr_limit_runs(made, 2e-3)
    truly_slow = {r.name for r in fitted if r.plans[0].peak_lr >= float(lr_limit(truth, r.plans[0].layers,
                                                                                r.plans[0].aspect))}
    assert truly_slow and truly_slow != {r.name for r in fitted}
    assert set(fit.slow_runs) == truly_slow == {r.name for r in fitted if started_slow(r, start)}
    for r in fitted:  # the likelier outcome of every fitted run is the one it had
        plan = r.plans[0]
        assert (plan.peak_lr >= float(lr_limit(fit.params, plan.layers, plan.aspect))) == (r.name in truly_slow)
    assert fit.params.lr_slow_share == pytest.approx(0.55, rel=0.02)
    assert fit.params.lr_slow_tokens == pytest.approx(5e6, rel=0.05)
    assert fit.rms_after < 1e-3 < fit.rms_before
    assert len(fit.grown_runs) >= 1 and fit.params.lr_slow_grown == pytest.approx(0.4, abs=0.02)


def test_a_fit_needs_both_outcomes():
    """Curves on their LR-blind law at every peak LR: no run started slow, nothing to fit."""
    never = LIMITED.model_copy(update={"lr_limit": 0.0})
    made = [RunData(r.run_id, r.name, r.spec, r.steps, r.tokens, trajectory(never, r.plans, at_tokens=r.tokens)[1],
                    family=r.family) for r in load_runs("lr_sweep") if r.is_full_training][:12]
    with pytest.raises(CostsimError, match=r"runs that started slow and runs that did not; all \d+ did not"):
        fit_lr_limit(made, never, 2e-3)


def test_the_limit_is_fitted_only_on_full_training_at_the_profiles_peak_or_above():
    runs = load_runs("lr_sweep,heldout_lr96")
    chosen = lr_limit_runs(runs, 2e-3)
    assert chosen and all(r.is_full_training and r.spec.training.lr_schedule.lr >= 2e-3 for r in chosen)
    assert any(r.spec.training.lr_schedule.lr < 2e-3 for r in runs if r.is_full_training)


# --- the shipped limit ------------------------------------------------------------------------

# d160 (heldout_lr160) and the band (heldout_lr_band) have their own registered tests below
HELD_OUT = "heldout_lr96,heldout_wide,heldout_deep,heldout_lr,heldout_larger,heldout_longer"


def _outcomes(runs, params):
    """(run name, share of seeds the limit expects to start slow, started slow) of each
    full-training run at the profile's peak LR or above, long enough to tell."""
    out = []
    for run in runs:
        plan = run.plans[0]
        if run.is_full_training and plan.peak_lr >= 2e-3 and run.tokens[-1] >= 0.95 * SLOW_AT:
            over = plan.peak_lr / float(lr_limit(params, plan.layers, plan.aspect))
            out.append((run.name, float(lr_slow_probability(params, over)), started_slow(run, params)))
    return out


def test_the_shipped_limit_says_which_held_out_runs_started_slow():
    """Fitted on the LR sweep and the corpus (d48 to d128, never the held-out shapes): every
    held-out run the limit expects more likely than not to start slow (d96 L6 at 4e-3, d192 L6
    at 2e-3) did, none it calls normal did, and where the seed decides as many started slow as
    it expected, within their binomial spread: d128 L8 at 2e-3 (40%) on one seed of three."""
    params = load_loss_profile("stdlib-bytes").params
    outcomes = _outcomes(load_runs(HELD_OUT), params)
    likely = [started for _, chance, started in outcomes if chance >= 0.5]
    assert len(likely) == 4 and all(likely)
    assert not any(started for _, chance, started in outcomes if chance < 0.05)
    chances = np.array([chance for _, chance, _ in outcomes])
    slow = sum(started for _, _, started in outcomes)
    assert abs(slow - chances.sum()) <= 2 * np.sqrt(np.sum(chances * (1 - chances)))
    near = {name: started for name, chance, started in outcomes if 0.05 <= chance < 0.5}
    assert near["full d128 L8 seed1"] and not near["full d128 L8 seed2"] and not near["full d128 L8 seed3"]


def test_the_shipped_limit_falls_with_width_and_depth_and_is_in_its_predictions():
    """Width exponent held at Adam's 1; the slow start applied: where d96 L6 at 4e-3 started slow
    the prediction with the limit is closer to it than the LR-blind one."""
    profile = load_loss_profile("stdlib-bytes")
    p = profile.params
    assert p.lr_limit > 0 and p.lr_slow_share > 0 and 0 < p.lr_slow_grown < 1 and p.lr_limit_spread > 0
    assert profile.report["lr_slow_start_applied"] and p.lr_limit_width_exponent == 1.0
    assert 0 < p.lr_limit_depth_exponent < 1
    # the corpus's LR suits its largest shape (d96 L6), not d192 L6
    assert 2e-3 < float(lr_limit(p, 6, 96 / 6)) < 4e-3 and float(lr_limit(p, 6, 192 / 6)) < 2e-3
    blind = p.model_copy(update={"lr_limit": 0.0})
    for run in load_runs("heldout_lr96"):
        if run.name.startswith("full d96 L6 lr0.004"):
            with_limit = trajectory(p, run.plans, at_tokens=run.tokens)[1]
            without = trajectory(blind, run.plans, at_tokens=run.tokens)[1]
            assert np.all(with_limit >= without) and with_limit[-1] > without[-1]
            assert np.sqrt(np.mean((with_limit - run.loss) ** 2)) < 0.5 * np.sqrt(np.mean((without - run.loss) ** 2))


@pytest.mark.parametrize(("run", "says", "included"), [
    ("full d96 L6 lr0.004 seed1", "may (the seed decides: about", "in this prediction, its interval covering"),
    ("study d96 L6 S3 nofreeze lr0.004 seed1", "may (the seed decides: about", "in this prediction, its interval"),
    ("full d128 L8 seed1", "may (the seed decides: about", "in this prediction's interval, not its point"),
    ("full d96 L6 lr0.001 seed1", None, None)])
def test_estimate_and_validate_say_when_the_peak_lr_is_near_or_above_the_full_models_limit(run, says, included):
    from costsim.loss_report import lr_limit_note

    runs = {r.name: r for r in load_runs("heldout_lr96,heldout_deep")}
    profile = load_loss_profile("stdlib-bytes")
    note = lr_limit_note(runs[run].spec, profile)
    if says is None:
        assert note is None
    else:
        assert says in note and included in note and "\n" not in note
        blind = profile.switched(lr_slow_share=0.0)
        assert "not in this prediction" in lr_limit_note(runs[run].spec, blind)
    assert lr_limit_note(runs[run].spec, profile.switched(lr_limit=0.0)) is None


def test_the_limit_at_a_width_no_run_had_says_what_d160_did():
    """Registered before training (``benchmarks/lr_limit_predicted.json``, an earlier fit of the
    limit): d160 L4 at 1.5x that limit starts slow, at 0.6x of it normally. Both did, and the
    shipped limit expects the same outcome of each as the more likely one."""
    import json
    from pathlib import Path

    registered = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "lr_limit_predicted.json")
                            .read_text())["runs"]
    params = load_loss_profile("stdlib-bytes").params
    runs = {r.name: r for r in load_runs("heldout_lr160")}
    assert set(runs) == set(registered)
    for name, run in runs.items():
        plan = run.plans[0]
        slow = started_slow(run, params)
        assert slow == (registered[name]["verdict"] == "slow")
        over = plan.peak_lr / float(lr_limit(params, plan.layers, plan.aspect))
        assert slow == (float(lr_slow_probability(params, over)) >= 0.5)


# --- the band, registered before training (heldout_lr_band) ------------------------------------

def _band():
    """The band set's runs and its registered predictions (``benchmarks/heldout_lr_band_predicted.json``,
    written from the shipped profile before any of them was trained)."""
    import json
    from pathlib import Path

    registered = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_lr_band_predicted.json")
                            .read_text())["runs"]
    return {r.name: r for r in load_runs("heldout_lr_band")}, registered


def test_the_band_set_was_registered_before_training_from_the_shipped_limit():
    from studies.growth_corpus import corpus, heldout_lr_band, lr_sweep

    runs, registered = _band()
    assert set(runs) == set(registered) == {r.name for r in heldout_lr_band()}
    assert not {r.name for r in corpus() + lr_sweep()} & set(runs)
    params = load_loss_profile("stdlib-bytes").params
    for name, run in runs.items():
        plan = run.plans[-1]
        over = plan.peak_lr / float(lr_limit(params, plan.layers, plan.aspect))
        assert over == pytest.approx(registered[name]["lr_over_limit"], rel=1e-9)  # the limit is the registered one


def test_in_the_band_where_the_limit_calls_a_slow_start_certain_it_happened():
    """d96 L8 at 4e-3 (96% of seeds expected slow) and d160 L6 at 3e-3 (99%) started slow
    (efficiency 0.57 and 0.42 at 1.64M tokens), and every run the limit calls normal did not."""
    runs, registered = _band()
    params = load_loss_profile("stdlib-bytes").params
    full = {name: run for name, run in runs.items() if run.is_full_training}
    slow = [started_slow(run, params) for name, run in full.items() if registered[name]["lr_verdict"] == "slow"]
    normal = [started_slow(run, params) for name, run in full.items() if registered[name]["lr_verdict"] == "normal"]
    assert len(slow) == 2 and all(slow)
    assert not any(normal)


@pytest.mark.xfail(strict=True, reason="known miss (docs/loss-model.md, 'The LR limit'): registered in the band, "
                   "d96 L8 at 3e-3 (two seeds), d160 L6 at 2e-3 (two seeds) and d80 L12 at 3e-3 and 4e-3 were expected "
                   "to start slow on 57-95% of seeds; one run of six did (d96 L8 seed 1). The limit fitted on 2 to 8 "
                   "layers is too low at these shapes, most at 12 layers")
def test_in_the_band_as_many_runs_started_slow_as_the_limit_expected():
    runs, registered = _band()
    params = load_loss_profile("stdlib-bytes").params
    band = [(registered[name]["p_slow"], started_slow(run, params)) for name, run in runs.items()
            if run.is_full_training and registered[name]["lr_verdict"] == "seed decides"]
    chances = np.array([chance for chance, _ in band])
    slow = sum(started for _, started in band)
    assert abs(slow - chances.sum()) <= 2 * np.sqrt(np.sum(chances * (1 - chances)))


def test_growth_at_or_above_the_limit_saves_compute_as_registered():
    """Each growth run against full training at its own peak LR: all four save compute, as
    registered (ratios 0.56, 0.76, 0.37, 0.66 measured; 0.54, 0.57, 0.46, 0.34 registered;
    LR-blind the profile says 0.67, 0.69, 0.72, 0.75)."""
    from costsim.corpus import baseline_for
    from costsim.heldout import measured_comparison

    runs, registered = _band()
    growth = [run for run in runs.values() if not run.is_full_training]
    assert len(growth) == 4
    for run in growth:
        base = baseline_for(run, list(runs.values()))
        assert base.spec.training.lr_schedule.lr == run.spec.training.lr_schedule.lr
        measured = measured_comparison(run, base).ratio
        assert measured < 0.85 and registered[run.name]["ratio"] < 0.85
