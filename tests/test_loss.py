"""The loss model: properties, growth mechanics, and that the fitter recovers known parameters."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costsim.fit import COORDINATES, RunData, fit_params, flops_to_reach, to_params, to_vector
from costsim.loss import LossParams, LossProfile, StagePlan, equivalent_tokens, predict, reducible, trajectory
from costsim.paper import full_training
from costsim.spec import parse_spec

PARAMS = LossParams(E=1.2, A=30.0, alpha=0.3, B=60.0, beta=0.3, anneal=0.1, frozen_exponent=1.0,
                    jumps={"random_top": 0.2, "stack_copy": 0.05}, reset_jump=0.02)


def plan(n_params, tokens, steps=50, share=1.0, operator="none", reset=False, lr=None):
    return StagePlan(n_params=n_params, tokens=tokens, trainable_share=share, operator=operator,
                     reset_optimizer=reset, lr=np.ones(steps) if lr is None else np.asarray(lr))


@settings(max_examples=200, deadline=None)
@given(n=st.floats(1e4, 1e11), d1=st.floats(1e5, 1e12), more=st.floats(1.0, 100.0))
def test_more_tokens_never_raise_full_training_loss(n, d1, more):
    p = PARAMS
    assert p.E + reducible(p, n, d1 * more) <= p.E + reducible(p, n, d1)
    _, loss, _ = trajectory(p, [plan(n, d1 * more, steps=64)], points_per_stage=64)
    assert np.all(np.diff(loss) <= 1e-12)


@settings(max_examples=100, deadline=None)
@given(n=st.floats(1e4, 1e10), d=st.floats(1e6, 1e12))
def test_one_stage_schedule_is_full_training(n, d):
    tokens, loss, _ = trajectory(PARAMS, [plan(n, d, steps=20)], points_per_stage=20)
    np.testing.assert_allclose(loss, PARAMS.E + reducible(PARAMS, n, tokens), rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(jitter=st.floats(0.5, 2.0), n2=st.floats(2.0, 8.0))
def test_intervals_contain_the_point_prediction(jitter, n2):
    samples = [PARAMS.model_copy(update={"A": PARAMS.A * jitter}), PARAMS.model_copy(update={"beta": 0.31})]
    profile = LossProfile(name="t", params=PARAMS, samples=samples, residual_std=0.01)
    plans = [plan(1e6, 1e8), plan(1e6 * n2, 2e8, operator="random_top")]
    curve = predict(profile, plans)
    assert np.all(curve.lower <= curve.loss) and np.all(curve.loss <= curve.upper)


def test_function_preserving_growth_is_continuous_and_random_growth_jumps():
    before = trajectory(PARAMS, [plan(1e6, 1e8)], points_per_stage=1)[1][-1]
    for operator, expect_jump in (("identity", False), ("random_top", True)):
        _, loss, stage = trajectory(PARAMS, [plan(1e6, 1e8), plan(4e6, 1e6, steps=1000, operator=operator)],
                                    points_per_stage=1000)
        first_after = loss[np.argmax(stage == 1)]  # the grown model's first step
        if expect_jump:
            assert first_after > before + 0.01
        else:
            assert abs(first_after - before) < 0.01
    # equivalent tokens invert the law
    d = equivalent_tokens(PARAMS, 4e6, float(reducible(PARAMS, 4e6, 3e7)))
    assert d == pytest.approx(3e7, rel=1e-9)


def test_frozen_phases_progress_slower_and_annealing_helps():
    full = trajectory(PARAMS, [plan(1e6, 1e8)], points_per_stage=1)[1][-1]
    frozen = trajectory(PARAMS, [plan(1e6, 1e8, share=0.3)], points_per_stage=1)[1][-1]
    assert frozen > full
    decay = np.linspace(1.0, 0.1, 50)
    annealed = trajectory(PARAMS, [plan(1e6, 1e8, lr=decay)], points_per_stage=1)[1][-1]
    no_anneal = trajectory(PARAMS.model_copy(update={"anneal": 0.0}), [plan(1e6, 1e8, lr=decay)],
                           points_per_stage=1)[1][-1]
    assert annealed < no_anneal


def synthetic_runs(truth: LossParams, noise: float, seed: int) -> list[RunData]:
    """Runs whose losses the model itself generated (plus noise): the fitter must find ``truth``."""
    rng = np.random.default_rng(seed)
    runs = []
    base = {"model": {"d_model": 64, "n_heads": 2, "vocab_size": 256, "seq_len": 64},
            "training": {"micro_batch_size": 8, "batch_size": 8, "precision": "fp32"}}
    shapes = [(32, 2), (64, 2), (64, 4), (96, 4), (128, 6)]
    specs = []
    for d, layers in shapes:
        specs.append(parse_spec({**base, "model": {**base["model"], "d_model": d}, "name": f"d{d}",
                                 "stages": [{"layers": layers, "tokens": 8 * 64 * 400}]}))
    specs.append(parse_spec({**base, "name": "growth", "stages": [
        {"layers": 2, "tokens": 8 * 64 * 150}, {"layers": 4, "tokens": 8 * 64 * 100, "train": "new"},
        {"layers": 4, "tokens": 8 * 64 * 150}]}))
    specs.append(parse_spec({**base, "name": "copy", "stages": [
        {"layers": 2, "tokens": 8 * 64 * 200}, {"layers": 4, "tokens": 8 * 64 * 200, "growth": "stack_copy"}]}))
    for spec in specs:
        steps = [round(s.tokens / 512) for s in spec.stages]
        tokens = np.arange(40, sum(steps) + 1, 20) * 512.0
        from costsim.loss import stage_plans

        loss = trajectory(truth, stage_plans(spec, steps), at_tokens=tokens)[1]
        runs.append(RunData(run_id=spec.name, name=spec.name, spec=spec, steps=steps, tokens=tokens,
                            loss=loss + rng.normal(0, noise, len(loss)), holdout=False))
    return runs


def test_fit_recovers_known_parameters():
    truth = LossParams(E=1.0, A=20.0, alpha=0.35, B=40.0, beta=0.3, anneal=0.0, frozen_exponent=0.7,
                       jumps={"random_top": 0.3, "stack_copy": 0.05, "stack_middle": 0.1, "widen_random": 0.1},
                       reset_jump=0.0)
    runs = synthetic_runs(truth, noise=0.002, seed=0)
    start = truth.model_copy(update={"A": 60.0, "alpha": 0.25, "B": 100.0, "beta": 0.25, "frozen_exponent": 1.0,
                                     "jumps": {}})
    fitted, rms = fit_params(runs, start)
    assert rms < 0.004
    assert fitted.frozen_exponent == pytest.approx(0.7, abs=0.1)
    assert fitted.jumps["random_top"] == pytest.approx(0.3, abs=0.1)
    for run in runs:  # the fitted model reproduces every run
        from costsim.loss import stage_plans

        predicted = trajectory(fitted, stage_plans(run.spec, run.steps), at_tokens=run.tokens)[1]
        assert np.max(np.abs(predicted - run.loss)) < 0.015
    assert np.all(np.isfinite(to_vector(fitted)))


def test_the_fit_vector_covers_every_loss_parameter_and_round_trips():
    from costsim.growth import JUMP_OPERATORS
    from costsim.loss import load_loss_profile

    assert {c.field.partition(".")[0] for c in COORDINATES} == set(LossParams.model_fields)
    assert [c.field for c in COORDINATES if c.field.startswith("jumps.")] == [f"jumps.{op}" for op in JUMP_OPERATORS]
    params = load_loss_profile("chinchilla").params
    again = to_params(to_vector(params))
    for name in LossParams.model_fields:
        if name == "jumps":
            assert again.jumps == pytest.approx(params.jumps)
        else:
            assert getattr(again, name) == pytest.approx(getattr(params, name), rel=1e-12)


def test_flops_to_reach_interpolates_and_reports_never():
    flops = np.array([1.0, 2.0, 3.0])
    loss = np.array([3.0, 2.0, 1.0])
    assert flops_to_reach(1.5, flops, loss) == pytest.approx(2.5)
    assert flops_to_reach(0.5, flops, loss) is None


def test_spec_predictions_follow_the_schedule():
    from costsim.loss import load_loss_profile, predict_spec

    curve = predict_spec(full_training(12, 1e9), load_loss_profile("chinchilla-published"))
    assert np.all(np.diff(curve.loss) <= 0) and curve.tokens[-1] == pytest.approx(1e9, rel=0.01)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["constant", "cosine", "wsd"]), warmup=st.integers(0, 20), total=st.integers(1, 300))
def test_lr_schedules_vectorised_equal_scalar_and_stay_in_range(kind, warmup, total):
    from pydantic import TypeAdapter

    from costsim.lr import LRSchedule, lr_at

    schedule = TypeAdapter(LRSchedule).validate_python({"kind": kind, "lr": 1e-3, "warmup_steps": warmup})
    steps = np.arange(total)
    vector = lr_at(schedule, steps, total)
    scalar = [lr_at(schedule, int(k), total) for k in steps]
    np.testing.assert_allclose(vector, scalar, rtol=0, atol=0)
    assert np.all(vector > 0 if kind != "wsd" else vector >= 0) and np.all(vector <= 1e-3 + 1e-15)
    if warmup and total >= warmup:
        assert np.all(np.diff(vector[:warmup]) > 0) and vector[warmup - 1] == 1e-3  # warmup rises to the peak
