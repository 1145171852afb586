"""Held-out scoring (compute-to-match, crossover, coverage) and the corpus files it reads."""

import json
from pathlib import Path

import numpy as np
import pytest

from costsim.corpus import dataset_path, family_of, load_dataset, load_runs
from costsim.errors import CostsimError
from costsim.fit import SEED_SHARES, cumulative_flops, seed_noise, seed_noise_along
from costsim.heldout import (
    SizeHoldout,
    baseline_for,
    compare_curves,
    model_error_of,
    ratio_seed_noise,
    score_run,
    score_schedules,
    seed_mean_curve,
)
from costsim.loss import LossParams, LossProfile, load_loss_profile, predict

FLOPS = np.linspace(1.0, 10.0, 10)
BASE = 3.0 - np.log(FLOPS)


def test_a_curve_ahead_early_and_behind_later_crosses_where_it_changes_sides():
    curve = BASE - 0.3 * (1 - FLOPS / 7)  # ahead until 7, behind after
    c = compare_curves(FLOPS, curve, FLOPS, BASE)
    assert c.crossover_kind == "crosses" and c.crossover_flops == pytest.approx(7.0)
    assert c.ratio is not None and c.ratio < 1  # at half of the baseline's FLOPs it is still ahead


def test_the_crossing_band_is_where_the_gap_is_within_noise_of_zero():
    curve = BASE - 0.1 * (1 - FLOPS / 7)  # gap 0.1 * (F/7 - 1): within 0.02 of 0 from 5.6 to 8.4
    c = compare_curves(FLOPS, curve, FLOPS, BASE, noise=0.02)
    assert c.crossover_flops == pytest.approx(7.0)
    assert c.crossover_band == pytest.approx((6.0, 8.0))  # the evaluated points inside it
    assert compare_curves(FLOPS, curve, FLOPS, BASE).crossover_band is None  # no noise, no band
    steep = compare_curves(FLOPS, BASE - 3 * (1 - FLOPS / 7), FLOPS, BASE, noise=0.02)
    assert steep.crossover_band == pytest.approx((7.0, 7.0))  # no point near enough: the crossing alone


def test_a_curve_behind_throughout_never_reaches_and_reports_a_floor():
    c = compare_curves(FLOPS[:6], BASE[:6] + 0.5, FLOPS, BASE)
    assert c.crossover_kind == "never ahead" and c.crossover_flops is None
    assert c.ratio is None and c.ratio_floor == pytest.approx(6.0 / 5.0)


def test_a_curve_ahead_to_the_end_saves_compute():
    c = compare_curves(FLOPS, BASE - 0.2, FLOPS, BASE)
    assert c.crossover_kind == "ahead throughout"
    assert c.ratio == pytest.approx(np.exp(-0.2), rel=0.05)  # the same loss e^-0.2 as many FLOPs earlier


@pytest.fixture(scope="module")
def shipped():
    if not dataset_path().exists():
        pytest.skip("no shipped corpus (python -m studies.growth_corpus --export writes it)")
    return load_runs()


def test_the_shipped_corpus_meets_the_issue_floors(shipped):
    from costsim.engine import stage_shape
    from costsim.flops import parameter_counts

    full = [r for r in shipped if r.is_full_training and r.family == "full"]
    sizes = sorted({float(parameter_counts(stage_shape(r.spec)).non_embedding[-1]) for r in full})
    assert len(sizes) >= 3 and sizes[-1] / sizes[0] >= 8
    largest = [r for r in full if float(parameter_counts(stage_shape(r.spec)).non_embedding[-1]) == sizes[-1]]
    # 9.84 tokens per non-embedding parameter: 1.6% short of the 10 the corpus aimed at (the
    # count includes LayerNorm weights, which the 12 d^2 L sizing left out); said in the docs
    assert largest[0].tokens[-1] >= 9.8 * sizes[-1]
    assert all(len(r.loss) >= 30 for r in shipped if r.family in ("full", "study-freeze"))
    families = {r.family for r in shipped}
    assert {"study-freeze", "study-nofreeze", "widen"} <= families
    assert any("stack_copy" in f for f in families) and any("identity" in f for f in families)
    std, repeated = seed_noise(shipped)
    assert repeated >= 2 and 0 < std < 0.05
    # the largest baseline, against which every d96 growth run is measured, has its own seed noise
    assert len({r.seed for r in largest}) >= 3
    # and the study's schedule at that size is paired with the baseline of its own seed
    study = [r for r in shipped if r.family == "study-freeze" and r.final_shape == largest[0].final_shape]
    assert {baseline_for(r, shipped).seed for r in study} == {r.seed for r in study}


def test_every_growth_schedule_below_the_largest_size_runs_on_the_seeds_of_its_baselines(shipped):
    # one baseline seed's late start moves every ratio measured against it (d64 L4's seed 2),
    # so a schedule's mean is taken against all of its size's baseline seeds, not some of them
    growth = [r for r in shipped if not r.is_full_training and r.family != "full cosine"]
    largest = max(r.final_shape for r in shipped if r.family == "full")
    by_schedule: dict[str, set[int]] = {}
    for run in growth:
        by_schedule.setdefault(run.schedule, set()).add(run.seed)
    for schedule, seeds in by_schedule.items():
        run = next(r for r in growth if r.schedule == schedule)
        baselines = {r.seed for r in shipped if r.family == "full" and r.final_shape == run.final_shape}
        if run.final_shape != largest:
            assert seeds == baselines and len(seeds) >= 3, schedule
        else:
            assert len(seeds) >= 2 and seeds <= baselines, schedule


def test_every_growth_run_has_its_baseline_and_scores(shipped):
    params = LossParams(E=0.5, A=50.0, alpha=0.4, B=10.0, beta=0.2, d0=5e3)
    profile = LossProfile(name="t", params=params, residual_std=0.05)
    growth = [r for r in shipped if not r.is_full_training and r.family != "full cosine"]
    for run in growth:
        base = baseline_for(run, shipped)
        assert base is not None and base.final_shape == run.final_shape, run.name
    score = score_run(growth[0], baseline_for(growth[0], shipped), params, profile)
    assert score.measured is not None and score.predicted is not None
    assert 0 <= score.coverage <= 1 and score.rms > 0


def test_a_schedule_is_scored_on_the_mean_of_its_seeds(shipped):
    params = LossParams(E=0.5, A=50.0, alpha=0.4, B=10.0, beta=0.2, d0=5e3)
    scores = {s.run: s for s in score_schedules(shipped, shipped, params)}
    by_schedule: dict[str, list] = {}
    for r in shipped:
        if not r.is_full_training and baseline_for(r, shipped) is not None:
            by_schedule.setdefault(r.schedule, []).append(r)
    assert set(scores) == set(by_schedule)
    for schedule, runs in by_schedule.items():
        score = scores[schedule]
        assert score.seeds == len(runs)
        assert score.final_measured == pytest.approx(np.mean([r.loss[-1] for r in runs]))
        if len(runs) == 1:  # one seed: exactly that run's comparison
            alone = score_run(runs[0], baseline_for(runs[0], shipped), params)
            assert score.measured == alone.measured and score.predicted == alone.predicted
    # the prediction does not depend on the seed, so a repeated schedule's predicted ratio is its runs'
    repeated = next(s for s, runs in by_schedule.items() if len(runs) > 1)
    alone = score_run(by_schedule[repeated][0], baseline_for(by_schedule[repeated][0], shipped), params)
    assert scores[repeated].predicted.ratio == pytest.approx(alone.predicted.ratio, rel=0.02)


def test_seed_noise_along_a_run_is_largest_early_and_ends_at_the_final_loss_noise(shipped):
    # when a from-scratch model's deeper blocks come into use varies with the seed: early in
    # a run two seeds differ by several times what they differ by at the end
    early, _ = seed_noise(shipped, at=0.125)
    final, repeated = seed_noise(shipped)
    assert repeated >= 2 and early > 2 * final
    assert seed_noise(shipped, at=1.0) == (final, repeated)
    table = seed_noise_along(shipped)
    assert [share for share, _ in table] == list(SEED_SHARES) and table[-1] == (1.0, final)
    # the shipped profile's intervals use these tables, measured on its corpus, not typed in:
    # full training's apart, its early plateau varying with the seed more than a growth
    # run's shallow start does
    profile = load_loss_profile("stdlib-bytes")
    scratch = seed_noise_along([r for r in shipped if r.is_full_training])
    growing = seed_noise_along([r for r in shipped if not r.is_full_training])
    assert np.allclose(profile.seed_std_along_scratch, scratch, rtol=1e-9)
    assert np.allclose(profile.seed_std_along, growing, rtol=1e-9) and profile.seed_std == pytest.approx(final)
    assert all(s > g for (_, s), (_, g) in zip(scratch[:3], growing[:3]))


def test_recalibrating_the_shipped_profile_keeps_its_fit_and_measures_its_model_error(shipped, tmp_path, capsys):
    from costsim.fit import main

    profile = load_loss_profile("stdlib-bytes")
    out = tmp_path / "p.json"
    assert main(["--recalibrate", "stdlib-bytes", "--residual-std", "0.05", "--extrapolation-growth", "0.3",
                 "--out", str(out)]) == 0
    again = LossProfile.model_validate_json(out.read_text())
    assert again.params == profile.params and again.samples == profile.samples
    assert np.allclose(again.seed_std_along, profile.seed_std_along) and again.extrapolation_growth == 0.3
    # the model's own error is what the held-out error leaves once the growth runs' seed
    # noise is taken out: smaller than the residual, larger than nothing
    assert 0.02 < again.model_std < 0.05 and again.residual_std == 0.05
    assert again.domain["layers"] == [2.0, 8.0]  # d32 L8 since the 97-run corpus
    before = out.read_text()
    assert main(["--recalibrate", "stdlib-bytes", "--extrapolation-growth", "-1", "--out", str(out)]) == 2
    assert out.read_text() == before  # nothing written
    assert "--extrapolation-growth must be a non-negative number" in capsys.readouterr().err


def test_the_model_error_over_folds_and_its_growth_with_the_distance():
    # two folds whose errors are all seed noise leave no model error; a size hold-out
    # twice as wrong one e-fold out grows it by 100% per e-fold, and never shrinks it
    assert model_error_of([0.03, 0.04], [0.03**2, 0.04**2]) == pytest.approx(0.0, abs=1e-9)
    assert model_error_of([], []) == 0.0
    held = SizeHoldout([], [], (96, 6), model_rms=0.06, efolds=1.0)
    assert held.extrapolation_growth(0.03) == pytest.approx(1.0)
    assert SizeHoldout([], [], (96, 6), model_rms=0.02, efolds=1.0).extrapolation_growth(0.03) == 0.0
    assert SizeHoldout([], [], (96, 6), model_rms=0.06, efolds=0.0).extrapolation_growth(0.03) == 0.0


def test_the_ratio_seed_noise_is_the_pooled_spread_of_repeated_schedules(shipped):
    noise, repeated = ratio_seed_noise(shipped)
    assert repeated >= 2 and 0 < noise < 0.3
    # without repeats there is nothing to measure
    assert ratio_seed_noise([r for r in shipped if r.seed == 1]) == (0.0, 0)


def test_a_bad_corpus_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": [{"run_id": "x"}]}))
    with pytest.raises(CostsimError, match="not a corpus file"):
        load_dataset(bad)
    with pytest.raises(CostsimError, match="no such corpus file"):
        load_dataset(tmp_path / "missing.json")
    with pytest.raises(CostsimError, match="no such store"):
        load_runs(tmp_path / "missing.duckdb")


def test_several_datasets_load_as_one_list_by_name_and_a_run_given_twice_is_refused():
    from studies.growth_corpus import DEEP_DATASET, HELDOUT_DATASET

    both = load_runs(f"{HELDOUT_DATASET},{DEEP_DATASET}")
    assert [r.name for r in both] == [r.name for r in load_dataset(dataset_path(HELDOUT_DATASET))] + \
        [r.name for r in load_dataset(dataset_path(DEEP_DATASET))]
    with pytest.raises(CostsimError, match="in more than one"):
        load_runs(f"{DEEP_DATASET},{DEEP_DATASET}")


def test_family_is_read_from_the_name():
    assert family_of("study d96 L6 S3 freeze seed1 [study-freeze]") == "study-freeze"
    assert family_of("plain name") == "plain name"


@pytest.fixture(scope="module")
def larger():
    """The d128 runs no fit has seen, scored with the shipped profile."""
    from costsim.loss import load_loss_profile, predict
    from studies.growth_corpus import HELDOUT_DATASET

    runs = load_dataset(dataset_path(HELDOUT_DATASET))
    profile = load_loss_profile("stdlib-bytes")
    scores = {r.name: score_run(r, baseline_for(r, runs), profile.params, profile) for r in runs}
    finals = {r.name: predict(profile, r.plans, at_tokens=r.tokens[-1:], after_boundary=True) for r in runs}
    return runs, scores, finals


def test_every_larger_held_out_final_loss_is_inside_its_interval(larger):
    runs, _, finals = larger
    assert len(runs) == 6
    for run in runs:
        curve = finals[run.name]
        assert curve.lower[-1] <= run.loss[-1] <= curve.upper[-1], run.name


@pytest.mark.parametrize("name", ["deepen d128 L3->6 stack_copy at0.25 seed1", "study d128 L6 S3 freeze seed1",
                                  "widen d64->128 L6 at0.25 seed2"])
def test_larger_held_out_ratio_within_the_target(larger, name):
    score = larger[1][name]
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


@pytest.mark.xfail(strict=True, reason="known miss (docs/loss-model.md): width growth to d128 seed 1 measured "
                   "0.83, predicted 1.05 (1.06 at a time scale of 3, 1.07 by the 69-run profile, registered 1.02; "
                   "seed 2 measured 0.96); the lags make growth too costly at this size")
def test_larger_held_out_width_growth_ratio_within_the_target(larger):
    score = larger[1]["widen d64->128 L6 at0.25 seed1"]
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


def test_larger_held_out_width_growth_over_its_two_seeds_is_within_the_ratio_target(larger):
    # measured 0.92 over two seeds; predicted 1.03 by the law from full training (a miss before it:
    # 1.09 with the start-up's depth fitted, 1.05 with the linear start-up)
    runs = larger[0]
    (score,) = score_schedules([r for r in runs if r.name.startswith("widen")], runs,
                               load_loss_profile("stdlib-bytes").params)
    assert score.seeds == 2
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


@pytest.fixture(scope="module")
def deep():
    """The d128 L8 runs (deeper than any fitted run), scored with the shipped profile."""
    from studies.growth_corpus import DEEP_DATASET

    runs = load_dataset(dataset_path(DEEP_DATASET))
    profile = load_loss_profile("stdlib-bytes")
    return runs, {r.name: score_run(r, baseline_for(r, runs), profile.params, profile) for r in runs}


GROWN_DEEP = [f"study d128 L8 S4 {kind} seed{seed}" for kind in ("freeze", "nofreeze") for seed in (1, 2, 3)]


def test_every_deep_held_out_final_loss_is_inside_its_interval(deep):
    from costsim.loss import predict

    runs, _ = deep
    assert len(runs) == 9
    profile = load_loss_profile("stdlib-bytes")
    for run in runs:
        curve = predict(profile, run.plans, at_tokens=run.tokens[-1:], after_boundary=True)
        assert curve.lower[-1] <= run.loss[-1] <= curve.upper[-1], run.name


# Against the mean of d128 L8's three baseline seeds, one of which started slow near its LR limit,
# the study's schedule saved compute (0.83). With the start-up's depth fitted and the law fitted
# with the growth runs it was predicted 1.08 (a miss, held here as strict xfails); the law from
# full training predicts 0.98 (docs/loss-model.md, "The law from full training alone").
@pytest.mark.parametrize("name", GROWN_DEEP)
def test_deep_held_out_growth_curves_are_predicted_within_the_held_out_error_and_save_compute(deep, name):
    # pre-registered: growth from 2 layers to 8 is followed along its whole curve no worse
    # than the profile's own cross-validated error, and it saves compute against the mean of
    # full training's seeds, as predicted (docs/loss-model.md)
    runs, scores = deep
    score = scores[name]
    assert score.rms <= load_loss_profile("stdlib-bytes").residual_std
    assert score.predicted.ratio < 1
    run = next(r for r in runs if r.name == name)
    flops, loss = seed_mean_curve([r for r in runs if r.is_full_training])
    assert compare_curves(cumulative_flops(run.spec, run.steps, run.tokens), run.loss, flops, loss).ratio < 1


def _deep_schedule(deep, kind, seeds):
    runs = deep[0]
    (score,) = score_schedules([r for r in runs if f"S4 {kind} " in r.name], runs,
                               load_loss_profile("stdlib-bytes").params)
    assert score.seeds == seeds
    return score


def test_the_deep_study_schedule_over_three_seeds_is_within_the_ratio_target(deep):
    # 0.83 measured, 0.98 predicted by the law from full training; 1.08 with the start-up's depth
    # exponent fitted and the law fitted with the growth runs (a miss); 0.91 by the linear
    # start-up (0.95 before its frozen phase's clock, 0.96 on 69 runs, 0.97 by the 67- and 69-run
    # `fading` ones; the 65-run profile's 0.995 missed; registered 0.93)
    score = _deep_schedule(deep, "freeze", 3)
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


def test_on_the_trained_clock_the_deep_study_schedule_ends_nearer_its_measured_gap(deep):
    """The shipped profile's frozen phases advance the growth deficit's clock by the tokens
    their trainable blocks see. With the same parameters on the discounted clock the study's
    schedule at d128 L8, deeper and more frozen than any corpus run, would end further from
    its measured gap to full training (+0.024 predicted against +0.013, measured -0.013 over
    three seeds); the no-freeze variant has no frozen phase and does not move."""
    runs = deep[0]
    shipped = load_loss_profile("stdlib-bytes").params
    assert shipped.frozen_clock == "trained"
    discounted = shipped.model_copy(update={"frozen_clock": "ideal"})

    def end_gap_error(kind, params):
        (score,) = score_schedules([r for r in runs if f"S4 {kind} " in r.name], runs, params)
        return score.predicted.end_gap - score.measured.end_gap

    assert 0 < end_gap_error("freeze", shipped) < end_gap_error("freeze", discounted)
    assert end_gap_error("nofreeze", shipped) == pytest.approx(end_gap_error("nofreeze", discounted), abs=1e-12)


@pytest.mark.xfail(strict=True, reason="known miss (docs/loss-model.md, 'The start-up's depth, fitted'): "
                   "0.64 measured over the three seeds' mean, 0.91 predicted for a normal start")
def test_the_deep_no_freeze_schedule_over_three_seeds_is_within_the_ratio_target(deep):
    # 0.64 measured, 0.91 predicted with the start-up's depth exponent fitted; 0.72 by the linear
    # start-up (0.74 on 69 runs, 0.71 by the `fading` profile, registered 0.77); over seeds 1-2 it
    # was 0.53, a miss driven by seed 1's slow full-training baseline (docs/loss-model.md)
    score = _deep_schedule(deep, "nofreeze", 3)
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


@pytest.mark.parametrize("name", [n for n in GROWN_DEEP if not n.endswith("seed1")])
def test_deep_growth_against_each_normally_starting_baseline_seed_is_within_the_ratio_target(deep, name):
    """Seeds 2 and 3 of full training at d128 L8 started normally; each growth run against its
    own seed's baseline: 0.85, 1.03, 0.94, 0.77 measured, 0.91, 1.08, 1.08, 0.91 predicted."""
    score = deep[1][name]
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    strict=True, reason="seed 1 of full training at d128 L8 is the slow starter: against it growth needed 0.41 "
    "and 0.33 of its compute, predicted 0.90 and 0.72 (registered 0.93 and 0.77)"))
    if n.endswith("seed1") else n for n in GROWN_DEEP])
def test_deep_held_out_ratio_within_the_target(deep, name):
    score = deep[1][name]
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


def test_the_longer_held_out_set_is_named_apart_from_the_corpus_and_registered_before_training():
    from pathlib import Path

    from studies.growth_corpus import corpus, heldout_longer

    longer = heldout_longer()
    # the corpus's d64 L4 schedules of half the length must not read as more seeds of these
    assert not {r.name for r in corpus()} & {r.name for r in longer}
    assert sum(len(r.spec["stages"]) == 1 for r in longer) == 3  # it carries its own baseline, one a seed
    registered = Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_longer_predicted.json"
    assert set(json.loads(registered.read_text())["runs"]) == {r.name for r in longer}


@pytest.fixture(scope="module")
def longer():
    """d64 L4 growth trained as long as d96, no fit has seen it, scored with the shipped profile."""
    from costsim.loss import load_loss_profile, predict
    from studies.growth_corpus import LONGER_DATASET

    runs = load_dataset(dataset_path(LONGER_DATASET))
    profile = load_loss_profile("stdlib-bytes")
    scores = {r.name: score_run(r, baseline_for(r, runs), profile.params, profile)
              for r in runs if not r.is_full_training}
    finals = {r.name: predict(profile, r.plans, at_tokens=r.tokens[-1:], after_boundary=True) for r in runs}
    return runs, scores, finals


def test_longer_held_out_finals_are_inside_their_intervals(longer):
    runs, scores, finals = longer
    assert len(runs) == 9 and len(scores) == 6
    for run in runs:
        assert finals[run.name].lower[-1] <= run.loss[-1] <= finals[run.name].upper[-1], run.name


def _longer_schedule(longer, kind):
    runs = longer[0]
    (score,) = score_schedules([r for r in runs if kind in r.name], runs, load_loss_profile("stdlib-bytes").params)
    assert score.seeds == 3
    return score


def test_longer_held_out_identity_over_three_seeds_is_within_the_ratio_target_and_its_late_gap_within_noise(longer):
    score = _longer_schedule(longer, "identity")
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15  # 0.84 measured, 0.93 predicted
    assert abs(score.predicted.end_gap - score.measured.end_gap) <= 0.0164  # +0.013 predicted, +0.014 measured


@pytest.mark.parametrize("kind", ["identity", "S2 freeze"])
def test_longer_held_out_late_gap_is_predicted_better_than_registered(longer, kind):
    # the rule that shipped the lingering deficit, fixed before the second and third seeds were
    # trained: its late gap nearer the measured one than the fitted `fading` deficit's,
    # registered before any of these runs (the study's schedule: +0.037 against +0.045, +0.018
    # measured over three seeds; docs/loss-model.md, "A deficit that lingers")
    from pathlib import Path

    score = _longer_schedule(longer, kind)
    registered = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" /
                             "heldout_longer_predicted.json").read_text())["runs"]
    (before,) = {row["end_gap"] for name, row in registered.items() if kind in name}
    assert abs(score.predicted.end_gap - score.measured.end_gap) < abs(before - score.measured.end_gap)


def test_longer_held_out_study_schedule_over_three_seeds_is_within_the_ratio_target(longer):
    # 0.95 measured over three seeds (0.99, 0.92, 0.98). The 69-run profile predicted 1.11 (a
    # miss, held here as a strict xfail until the refit); the 88-run one predicted 1.09, inside
    # by 0.01, the shipped one 1.08: full training's slow-starting seed 2 still decides most of the
    # gap (docs/loss-model.md, "A deficit that lingers" and "Every growth family")
    score = _longer_schedule(longer, "S2 freeze")
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


# --- d192, wider than any fitted run: the start-up at a width no fit has seen -----------------

def test_the_wide_held_out_set_is_registered_before_training_and_apart_from_the_corpus():
    from pathlib import Path

    from studies.growth_corpus import corpus, heldout_wide

    wide = heldout_wide()
    assert not {r.name for r in corpus()} & {r.name for r in wide}
    registered = Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_wide_predicted.json"
    assert set(json.loads(registered.read_text())["runs"]) == {r.name for r in wide}


def _wide():
    from studies.growth_corpus import WIDE_DATASET

    runs = {r.name: r for r in load_dataset(dataset_path(WIDE_DATASET))}
    profile = load_loss_profile("stdlib-bytes")
    curves = {name: predict(profile, r.plans, at_tokens=r.tokens, after_boundary=True) for name, r in runs.items()}
    return runs, curves


def test_a_shallow_d192_model_at_the_corpus_lr_is_predicted_within_its_interval():
    """At twice the corpus's largest width (2x its largest model) at 3 layers every point is inside
    its interval, final 1.4113 measured."""
    runs, curves = _wide()
    run, curve = runs["full d192 L3 seed1"], curves["full d192 L3 seed1"]
    assert np.mean((run.loss >= curve.lower) & (run.loss <= curve.upper)) >= 0.9


@pytest.mark.xfail(strict=True, reason="known miss (docs/loss-model.md, 'What it still cannot express'): the law "
                   "from full training, its break moving with size, puts d192 L3's final at 1.3530, 0.058 below the "
                   "measured 1.4113 (the one power law fitted with the growth runs: 1.3983)")
def test_a_shallow_d192_model_at_the_corpus_lr_ends_within_003_of_its_prediction():
    runs, curves = _wide()
    run, curve = runs["full d192 L3 seed1"], curves["full d192 L3 seed1"]
    assert abs(curve.loss[-1] - run.loss[-1]) < 0.03


def _depth_gap(runs, curves, deep, shallow, share=0.5):
    i = round(share * len(runs[deep].tokens)) - 1
    assert runs[deep].tokens[i] == runs[shallow].tokens[i]
    return runs[deep].loss[i] - runs[shallow].loss[i], curves[deep].loss[i] - curves[shallow].loss[i]


def test_at_a_quarter_of_the_lr_the_d192_depth_handicap_mostly_goes():
    """Measured, on two seeds: at the corpus's LR d192 with 6 layers trails d192 with 3 by
    0.23 nats half-way (the LR-blind profile said 0.02); at a quarter of the LR by 0.03. The
    slow start of this deep model from scratch is mostly a learning rate too high for its width
    and depth, which only the LR limit sees."""
    runs, curves = _wide()
    for seed in (1, 2):
        assert _depth_gap(runs, curves, f"full d192 L6 seed{seed}", "full d192 L3 seed1")[0] > 0.2
    low, _ = _depth_gap(runs, curves, "full d192 L6 lr0.0005 seed1", "full d192 L3 lr0.0005 seed1")
    assert 0 < low < 0.06


def test_growth_at_d192_saves_far_more_at_the_corpus_lr_than_at_a_quarter_of_it_and_the_limit_tells():
    """Growth from 3 to 6 layers escapes the deep model's slow start: at the corpus's LR it
    needs 0.26 of full training's compute, at a quarter of the LR 0.70 (each against full
    training at its own LR). LR-blind the profile predicted 0.78 for both; with the LR limit
    (d192 L6 at 2e-3 is 1.28x its limit, 89% of seeds slow; never fitted) it predicts 0.24 and
    0.78."""
    from costsim.heldout import measured_comparison

    runs, _ = _wide()
    profile = load_loss_profile("stdlib-bytes")
    blind = profile.params.model_copy(update={"lr_limit": 0.0})
    measured, predicted = {}, {}
    for tag in ("", " lr0.0005"):
        run = runs[f"deepen d192 L3->6 random_top at0.25{tag} seed1"]
        base = baseline_for(run, list(runs.values()))
        assert base.spec.training.lr_schedule.lr == run.spec.training.lr_schedule.lr
        measured[tag] = measured_comparison(run, base).ratio
        predicted[tag] = score_run(run, base, profile.params, profile).predicted.ratio
        assert score_run(run, base, blind, profile).predicted.ratio == pytest.approx(0.77, abs=0.01)
    assert measured[""] < 0.4 and 0.5 < measured[" lr0.0005"] < 0.9
    assert predicted[""] < 0.4 < 0.5 < predicted[" lr0.0005"]
    assert abs(predicted[""] - measured[""]) <= 0.15 and abs(predicted[" lr0.0005"] - measured[" lr0.0005"]) <= 0.15


def test_the_d192_depth_handicap_at_the_corpus_lr_is_predicted():
    """At the corpus's LR d192 L6 trails L3 by 0.23 half-way (two seeds); LR-blind the profile
    said 0.02 (the start-up is proportional to depth alone), with the LR limit L6 starts slow
    and L3 (0.99x its limit, the seed deciding) not: within 0.1."""
    runs, curves = _wide()
    for seed in (1, 2):
        measured, predicted = _depth_gap(runs, curves, f"full d192 L6 seed{seed}", "full d192 L3 seed1")
        assert abs(measured - predicted) < 0.1


# --- d128 L8 at the LR that suits full training ---------------------------------------------

def test_the_lr_held_out_set_is_registered_before_training_and_apart_from_the_other_sets():
    from pathlib import Path

    from studies.growth_corpus import corpus, heldout_deep, heldout_lr

    at_lr = heldout_lr()
    assert not {r.name for r in corpus() + heldout_deep()} & {r.name for r in at_lr}
    assert all(r.spec["training"]["lr_schedule"]["lr"] < 2e-3 for r in at_lr)
    registered = Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_lr_predicted.json"
    assert set(json.loads(registered.read_text())["runs"]) == {r.name for r in at_lr}


def _at_lr():
    from studies.growth_corpus import DEEP_DATASET, LR_DATASET

    return load_dataset(dataset_path(LR_DATASET)), load_dataset(dataset_path(DEEP_DATASET))


def _scored(runs, schedule):
    """The growth schedule named ``schedule`` (its name without the seed) over its seeds in
    ``runs``, each against full training of its seed at its own peak LR."""
    (score,) = score_schedules([r for r in runs if r.schedule == schedule], runs,
                               load_loss_profile("stdlib-bytes").params)
    return score


def _schedule_at(runs, kind):
    """d128 L8's study schedule of this kind (freeze or nofreeze) in the lr or the deep set."""
    return _scored(runs, next(r.schedule for r in runs if f"S4 {kind} " in r.name))


def test_full_training_of_d128_l8_ends_lowest_at_half_the_corpus_lr():
    """Seed 1 of full training at three peak LRs: 1.2589 at 1e-3, 1.3065 at 5e-4, 1.3205 at
    the corpus's 2e-3; the profile predicts 1.2783 at every peak (it reads the LR relative to
    its peak)."""
    at_lr, deep = _at_lr()
    final = {r.spec.training.lr_schedule.lr: float(r.loss[-1]) for r in at_lr + deep
             if r.is_full_training and r.seed == 1}
    assert final[1e-3] < final[5e-4] - 0.03 and final[1e-3] < final[2e-3] - 0.03


@pytest.mark.parametrize("kind", ["freeze", "nofreeze"])
def test_at_the_lr_that_suits_full_training_growth_saves_less_than_at_the_corpus_lr(kind):
    """Each schedule against full training at its own LR, over its seeds: at the corpus's LR
    (three seeds, one of whose baselines started late) the study's schedule needed 0.83 of
    full training's compute and the no-freeze variant 0.64; at half the LR, three seeds, 0.98
    and 0.79. The profile predicts one ratio at both LRs (1.08 and 0.91 with the start-up's
    depth exponent fitted; 0.91 and 0.72 with the linear one): within the 0.15 target at the
    lower LR, on the side of full training. At 2e-3 the difference is one baseline seed of
    three that left its early plateau late (against the other two: 0.98 and 0.82-0.86)."""
    at_lr, deep = _at_lr()
    low, corpus_lr = _schedule_at(at_lr, kind), _schedule_at(deep, kind)
    assert low.measured.ratio > corpus_lr.measured.ratio + 0.1
    assert low.predicted.ratio == pytest.approx(corpus_lr.predicted.ratio, rel=1e-9)
    assert abs(low.measured.ratio - low.predicted.ratio) <= 0.15
    assert low.predicted.ratio > low.measured.ratio


def test_at_the_lr_that_suits_full_training_the_study_schedule_ends_behind_full_training():
    """The study's finding at d128 L8: at half the corpus's LR the study's schedule falls
    behind full training at equal compute and ends behind (+0.020 over three seeds; at the
    corpus's LR its three seeds ended 0.013 ahead), and the profile predicts it to end behind
    too (+0.010)."""
    at_lr, deep = _at_lr()
    score = _schedule_at(at_lr, "freeze")
    assert score.measured.end_gap > 0.015 and score.predicted.end_gap > 0
    assert _schedule_at(deep, "freeze").measured.end_gap < 0


def test_at_the_lr_that_suits_full_training_the_no_freeze_variants_end_is_predicted_behind():
    """At half the corpus's LR the no-freeze variant ends behind full training at equal compute
    (+0.013 over three seeds); the linear start-up predicted it ahead to the end, the fitted
    one behind (+0.020)."""
    at_lr, _ = _at_lr()
    score = _schedule_at(at_lr, "nofreeze")
    assert score.measured.end_gap > 0 and score.predicted.end_gap > 0


# --- the corpus's d96 L6 at half its LR ----------------------------------------------------

def test_the_lr96_held_out_set_is_registered_before_training_and_apart_from_the_corpus():
    from pathlib import Path

    from studies.growth_corpus import corpus, heldout_lr96

    at_lr = heldout_lr96()
    assert not {r.name for r in corpus()} & {r.name for r in at_lr}
    assert {r.spec["training"]["lr_schedule"]["lr"] for r in at_lr} == {1e-3, 4e-3}
    # each growth run's seed has its baseline in the set at its LR (each seed evaluates on its own batches)
    for lr in (1e-3, 4e-3):
        at = [r for r in at_lr if r.spec["training"]["lr_schedule"]["lr"] == lr]
        seeds = {r.spec["training"]["seed"] for r in at if r.family.startswith("full") and " L6 " in r.name}
        assert {r.spec["training"]["seed"] for r in at} <= seeds
    registered = Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_lr96_predicted.json"
    assert set(json.loads(registered.read_text())["runs"]) == {r.name for r in at_lr}


def _lr96():
    from studies.growth_corpus import LR96_DATASET

    return load_dataset(dataset_path(LR96_DATASET))


def _peak(run) -> float:
    return run.spec.training.lr_schedule.lr


D96_SCHEDULES = ("study d96 L6 S3 freeze", "study d96 L6 S3 nofreeze", "deepen d96 L3->6 random_top at0.5")


def test_the_corpus_lr_suits_d96_l6_at_least_as_well_as_half_of_it():
    """Full training of the corpus's largest model at 1e-3 ends at or above the corpus's runs
    at 2e-3, seed by seed (1.3302, 1.3439, 1.3224 against 1.3084, 1.3458, 1.3062): half the
    LR is no better, so the corpus's growth savings were measured at an LR that suits d96 L6."""
    corpus = {r.seed: float(r.loss[-1]) for r in load_runs() if r.name.startswith("full d96 L6 seed")}
    half = {r.seed: float(r.loss[-1]) for r in _lr96() if r.name.startswith("full d96 L6 lr0.001")}
    assert set(half) == set(corpus) == {1, 2, 3}
    assert all(half[seed] > corpus[seed] - 0.005 for seed in half)
    assert np.mean(list(half.values())) > np.mean(list(corpus.values()))


@pytest.mark.parametrize("schedule", D96_SCHEDULES)
def test_at_d96_half_the_lr_leaves_growths_compute_ratio_where_it_was(schedule):
    """Each schedule over its seeds against full training at its own LR: at 2e-3 (fitted)
    1.05, 0.87 and 0.68, at 1e-3 (held out) 1.03, 0.85 and 0.65. Where the LR is at or below
    what suits the full model, the LR does not move the growth answer (at d128 L8, where the
    corpus's LR was too high, half of it took 0.15 from the ratios). The profile predicts
    0.98, 0.80 and 0.51 at both: within 0.15 of each."""
    half, fitted = _scored(_lr96(), f"{schedule} lr0.001"), _scored(load_runs(), schedule)
    assert abs(half.measured.ratio - fitted.measured.ratio) < 0.05
    assert half.predicted.ratio == pytest.approx(fitted.predicted.ratio, rel=1e-9)
    assert abs(half.measured.ratio - half.predicted.ratio) <= 0.15


def test_at_twice_the_corpus_lr_d96_l6_starts_slow_and_ends_worse_while_3_layers_do_not():
    """The hypothesis registered with the runs (commit 91e35a1): at 4e-3 full training of d96
    L6 ends above its 2e-3 runs on both seeds (1.3873 and 1.4588 against 1.3084 and 1.3458)
    and trails 3 layers at the same LR by 0.28 nats at a quarter of the run (LR-blind the
    profile said 0.035; with the LR limit, never fitted on d96 L6, 0.26), as d192 L6 did at
    2e-3; at 2e-3 the two depths are within 0.02 there. The 3-layer model stays on its curve
    (rms 0.02): a peak LR too high for the depth, not for the width."""
    corpus = {r.name: r for r in load_runs()}
    runs = {r.name: r for r in _lr96()}
    profile = load_loss_profile("stdlib-bytes")
    for seed in (1, 2):
        assert runs[f"full d96 L6 lr0.004 seed{seed}"].loss[-1] > corpus[f"full d96 L6 seed{seed}"].loss[-1] + 0.05
    both = {**corpus, **runs}
    curves = {name: predict(profile, both[name].plans, at_tokens=both[name].tokens, after_boundary=True)
              for name in ("full d96 L6 lr0.004 seed1", "full d96 L3 lr0.004 seed1", "full d96 L6 seed1",
                           "full d96 L3 seed1")}
    high, predicted = _depth_gap(both, curves, "full d96 L6 lr0.004 seed1", "full d96 L3 lr0.004 seed1", share=0.25)
    corpus_lr, _ = _depth_gap(both, curves, "full d96 L6 seed1", "full d96 L3 seed1", share=0.25)
    assert high > 0.2 and abs(corpus_lr) < 0.03
    assert abs(predicted - high) < 0.1  # with the LR limit; LR-blind it said 0.035
    shallow = runs["full d96 L3 lr0.004 seed1"]
    assert np.sqrt(np.mean((curves["full d96 L3 lr0.004 seed1"].loss - shallow.loss) ** 2)) < 0.03


def _d96_study(runs, kind, tag=""):
    return _scored(runs, f"study d96 L6 S3 {kind}{tag}")


@pytest.mark.parametrize("kind", ["freeze", "nofreeze"])
def test_at_twice_the_corpus_lr_growth_escapes_the_slow_start_and_wins_outright(kind):
    """Both study schedules, two seeds at each LR against full training at its own LR: the
    study's schedule needs 1.05 of full training's compute at 2e-3 and 0.75 at 4e-3, the
    no-freeze variant 0.87 and 0.61; both end behind at 2e-3 (+0.032, +0.024 at equal compute)
    and ahead at 4e-3 (-0.075, -0.053): the published finding reverses at an LR too high for
    the full model. At 1e-3 they needed 1.03 and 0.85: at or below the LR that suits the full
    model the answer holds. LR-blind the profile predicted one ratio at every LR; with the LR
    limit it predicts the saving at 4e-3 too (0.64 and 0.39)."""
    high, corpus_lr = _d96_study(_lr96(), kind, " lr0.004"), _d96_study(load_runs(), kind)
    assert high.measured.ratio < corpus_lr.measured.ratio - 0.15
    assert high.measured.end_gap < 0 < corpus_lr.measured.end_gap
    assert high.predicted.ratio < corpus_lr.predicted.ratio - 0.15 and high.predicted.end_gap < 0


@pytest.mark.parametrize("kind", ["freeze", pytest.param("nofreeze", marks=pytest.mark.xfail(
    strict=True, reason="known miss (docs/loss-model.md, 'The LR limit'): at twice the corpus's LR the no-freeze "
    "variant needs 0.61 of full training's compute at d96 L6; with the LR limit the profile predicts 0.39 (LR-blind "
    "0.80): one share of a slow start for every grown model is too little for one grown without a frozen phase"))])
def test_at_twice_the_corpus_lr_the_growth_saving_is_predicted(kind):
    """The study's schedule at 4e-3: 0.75 measured, 0.64 with the LR limit (LR-blind 0.98)."""
    high = _d96_study(_lr96(), kind, " lr0.004")
    assert abs(high.measured.ratio - high.predicted.ratio) <= 0.15


def test_a_slow_start_is_noted_on_exactly_the_runs_whose_peak_lr_was_too_high_for_their_depth():
    """``validate.run``'s note on a model from scratch that started far slower than its
    prediction allowed and caught up: LR-blind, over every shipped full-training run it names
    d96 L6 at twice the corpus's LR (both seeds), d192 L6 at the corpus's LR (both) and d128
    L8's slow seed, and none of the others (d192 at a quarter of the LR is slower throughout,
    not late). With the LR limit the prediction (d96 L6, d192 L6) or its interval (d128 L8,
    where the seed decides) holds every one of them, and it names none."""
    from costsim.loss_report import slow_start_note

    profile = load_loss_profile("stdlib-bytes")
    sets = "growth_corpus,heldout_larger,heldout_deep,heldout_longer,heldout_wide,heldout_lr,heldout_lr96,heldout_check"
    blind = profile.model_copy(update={"params": profile.params.model_copy(update={"lr_limit": 0.0}),
                                       "samples": [s.model_copy(update={"lr_limit": 0.0}) for s in profile.samples]})
    noted = {"limit": set(), "blind": set()}
    for run in load_runs(sets):
        if run.is_full_training:
            for name, p in (("limit", profile), ("blind", blind)):
                curve = predict(p, run.plans, at_tokens=run.tokens, after_boundary=True)
                if slow_start_note(run.loss, curve.loss, curve.upper):
                    noted[name].add(run.name)
    assert noted["blind"] == {"full d96 L6 lr0.004 seed1", "full d96 L6 lr0.004 seed2", "full d192 L6 seed1",
                              "full d192 L6 seed2", "full d128 L8 seed1"}
    assert noted["limit"] == set()


# --- the check at 4e12: two full-training shapes the shipped profile calls a tie --------------

# The profile the checks below were run with, shipped until the law from full training: their
# docstrings are what it predicted and what the search did with it
SHIPPED_BEFORE_BREAK = str(Path(__file__).resolve().parents[1] / "benchmarks" / "one_law_profile.json")


def _check_means(profile: str = "stdlib-bytes"):
    by_schedule: dict[str, list[float]] = {}
    runs = load_runs("heldout_check")
    for run in runs:
        by_schedule.setdefault(run.schedule, []).append(float(run.loss[-1]))
    loaded = load_loss_profile(profile)
    predicted = {run.schedule: float(predict(loaded, run.plans, at_tokens=run.tokens[-1:],
                                             after_boundary=True).loss[-1]) for run in runs}
    return {k: float(np.mean(v)) for k, v in by_schedule.items()}, predicted, by_schedule


def test_the_checks_runner_up_trained_clearly_better_than_its_pick_and_two_heads_explain_a_quarter():
    """Held out (never fitted): the search's pick at 4e12 (d32 L4, one head of 32) and its
    runner-up (d64 L2), three seeds each, and the pick with the corpus's two heads of 16."""
    measured, predicted, seeds = _check_means(SHIPPED_BEFORE_BREAK)
    pick, runner_up = "full d32 L4 batch16 at4e12", "full d64 L2 batch16 at4e12"
    two_heads = "full d32 L4 heads2 batch16 at4e12"
    assert all(len(v) == 3 for v in seeds.values())
    # the law sees the shape (d_model/layers) since the 97-run corpus, not the heads: the pick's
    # two forms are one prediction, and d64 L2 is predicted ahead (0.033; a tie before, 0.00004)
    assert predicted[pick] == predicted[two_heads]
    assert predicted[pick] - predicted[runner_up] > 0.02
    assert measured[pick] - measured[runner_up] > 0.05  # 0.078 trained
    # one head of 32 costs 0.019 of it; with two the pick is still 0.059 behind
    assert 0.01 < measured[pick] - measured[two_heads] < 0.03
    assert measured[two_heads] - measured[runner_up] > 0.04
    for schedule in seeds:  # every final inside its interval nonetheless
        run = next(r for r in load_runs("heldout_check") if r.schedule == schedule)
        curve = predict(load_loss_profile(SHIPPED_BEFORE_BREAK), run.plans, at_tokens=run.tokens[-1:],
                        after_boundary=True)
        assert all(curve.lower[-1] <= x <= curve.upper[-1] for x in seeds[schedule])


def test_the_check_at_5e12_trains_the_searchs_order_beyond_seed_noise():
    """Held out (never fitted): at 5e12 the search picks full training of d64 L2 and names d64
    L3 as the next shape 0.028 behind, beyond one run's seed noise; the study's schedule (d64
    L4, S = 4) 0.117 behind. Three seeds each trained d64 L3 0.0195 behind (two standard errors
    of the difference: 0.017) and the study's schedule 0.094 behind, every final inside its
    interval: `studies.check_recommendation --budget 5e12` says confirmed. The profile shipped
    since (the start-up's depth exponent and the law's shape term refitted) predicts d64 L3
    0.036 behind: the measured gap's sign, 0.017 too large."""
    measured, predicted, seeds = _check_means()
    pick, runner_up, study = (f"{kind} batch16 at5e12" for kind in ("full d64 L2", "full d64 L3", "study d64 L4 S4"))
    assert all(len(seeds[s]) == 3 for s in (pick, runner_up, study))
    noise = 2 * np.sqrt((np.var(seeds[pick], ddof=1) + np.var(seeds[runner_up], ddof=1)) / 3)
    assert measured[runner_up] - measured[pick] > noise
    assert predicted[runner_up] - predicted[pick] > 0.016  # the search called it beyond seed noise
    assert abs((measured[runner_up] - measured[pick]) - (predicted[runner_up] - predicted[pick])) < 0.02
    assert measured[study] - measured[pick] > 0.05 and predicted[study] - predicted[pick] > 0.05
    profile = load_loss_profile("stdlib-bytes")
    for schedule in (pick, runner_up, study):
        run = next(r for r in load_runs("heldout_check") if r.schedule == schedule)
        curve = predict(profile, run.plans, at_tokens=run.tokens[-1:], after_boundary=True)
        assert all(curve.lower[-1] <= x <= curve.upper[-1] for x in seeds[schedule])


def test_the_shipped_profile_ranks_the_checks_shapes_as_they_trained_with_the_corpuss_heads():
    """With two heads, as every corpus run has and the search's space now keeps, the pick
    trained 0.059 behind d64 L2; the shipped profile predicts 0.033 (the law in N alone
    predicted 0.00004). Never fitted on: held-out evidence for the shape term."""
    measured, predicted, _ = _check_means()
    two_heads, runner_up = "full d32 L4 heads2 batch16 at4e12", "full d64 L2 batch16 at4e12"
    assert abs((predicted[two_heads] - predicted[runner_up]) - (measured[two_heads] - measured[runner_up])) <= 0.03


def test_the_shipped_profile_ranks_the_checks_one_head_pick_as_it_trained():
    """The one-head d32 L4 trained 0.078 behind d64 L2 (0.019 of it the single head, which the
    law does not see); the 97-run profile with the linear start-up predicted 0.033, a miss, and
    with the start-up's depth exponent and the shape term refitted (shape 0.35) it is within 0.03."""
    measured, predicted, _ = _check_means()
    pick, runner_up = "full d32 L4 batch16 at4e12", "full d64 L2 batch16 at4e12"
    assert abs((predicted[pick] - predicted[runner_up]) - (measured[pick] - measured[runner_up])) <= 0.03


def test_the_checks_pick_with_the_shape_term_trained_ahead_of_its_runner_up_and_of_late_growth():
    """Held out: the 97-run profile's check at 4e12 picked full training of d64 L2; its
    runner-up, d32 L3 with two heads, and the growth schedule the search put first before
    it kept every stage inside the fitted aspects (d64 grown from 1 layer to 2 late) both
    trained behind it beyond seed noise, in the predicted order for the runner-up; the
    growth schedule, predicted 0.008 ahead (a tie to the search), ended 0.054 behind."""
    measured, predicted, seeds = _check_means()
    pick, runner_up = "full d64 L2 batch16 at4e12", "full d32 L3 batch16 at4e12"
    grown = "grow d64 L1->2 identity late batch16 at4e12"
    assert predicted[pick] < predicted[runner_up] and measured[pick] < measured[runner_up] - 0.04
    assert measured[grown] - measured[pick] > 0.04


def test_the_checks_late_growth_from_one_layer_is_predicted_no_better_than_its_full_training():
    # trained 0.054 behind d64 L2; predicted 0.020 ahead with the law fitted with the growth runs
    # (a miss, held as a strict xfail), 0.008 ahead by the linear start-up, and level by the law
    # from full training (docs/loss-model.md, "The law from full training alone")
    measured, predicted, _ = _check_means()
    pick, grown = "full d64 L2 batch16 at4e12", "grow d64 L1->2 identity late batch16 at4e12"
    assert predicted[grown] - predicted[pick] > -0.01


# --- 12 layers at the corpus's LR (heldout_deep12), registered before training ---------------


@pytest.fixture(scope="module")
def deep12():
    """The d80 runs at 12 and 6 layers, scored with the shipped profile."""
    from studies.growth_corpus import DEEP12_DATASET

    runs = load_dataset(dataset_path(DEEP12_DATASET))
    profile = load_loss_profile("stdlib-bytes")
    return runs, profile, {r.name: score_run(r, baseline_for(r, runs), profile.params, profile) for r in runs}


GROWN_DEEP12 = ("study d80 L12 S4 freeze seed1", "study d80 L12 S4 nofreeze seed1",
                "deepen d80 L6->12 stack_copy at0.25 seed1", "deepen d80 L6->12 random_top at0.5 seed1")


def _registered(name: str) -> dict:
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / name).read_text())


def test_the_deep12_set_is_registered_before_training_and_apart_from_every_fit():
    from studies.growth_corpus import corpus, heldout_deep12, lr_sweep

    runs = heldout_deep12()
    assert not {r.name for r in corpus() + lr_sweep()} & {r.name for r in runs}
    assert all(r.spec["training"]["lr_schedule"]["lr"] == 2e-3 for r in runs)
    assert set(_registered("heldout_deep12_predicted.json")["runs"]) == {r.name for r in runs}
    # every run trained is one the set lists, and the shipped corpus stops at 8 layers
    assert {r.name for r in load_dataset(dataset_path("heldout_deep12"))} == {r.name for r in runs}
    assert max(r.plans[-1].layers for r in load_runs()) == 8


def _final(runs, name):
    return next(r for r in runs if r.name == name).loss[-1]


def test_at_d80_twelve_layers_lead_six_from_the_first_quarter_of_the_run(deep12):
    # measured: no start-up handicap for the deeper model at this width (docs/loss-model.md,
    # "Held out at 12 layers"); the shipped profile predicts 12 layers behind 6 to the end
    runs, _, _ = deep12
    deep, shallow = (next(r for r in runs if r.name == f"full d80 L{n} seed1") for n in (12, 6))
    assert np.array_equal(deep.tokens, shallow.tokens)
    quarter = deep.tokens >= deep.tokens[-1] / 4
    behind = deep.loss[quarter] - shallow.loss[quarter]
    assert np.sum(behind >= 0) <= 1 and behind.max() < 0.005 and behind.mean() < -0.02
    assert _final(runs, "full d80 L12 seed2") < _final(runs, "full d80 L6 seed1")


@pytest.mark.parametrize("name", GROWN_DEEP12)
def test_deep12_growth_ratio_is_within_the_target_and_its_sign_right(deep12, name):
    _, _, scores = deep12
    score = scores[name]
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15
    assert score.measured.ratio < 1 and score.predicted.ratio < 1


def test_deep12_full_training_fell_outside_the_linear_start_ups_registered_interval(deep12):
    # the registered prediction (start-up time proportional to depth, shipped then) put d80 L12
    # from scratch 0.10-0.12 nats too high: what moved the start-up's depth exponent
    runs, _, _ = deep12
    registered = _registered("heldout_deep12_predicted.json")["runs"]
    for run in (r for r in runs if r.is_full_training and " L12 " in r.name):
        assert run.loss[-1] < registered[run.name]["lower"], run.name


def test_deep12_full_training_ends_inside_its_interval(deep12):
    runs, profile, _ = deep12
    for run in (r for r in runs if r.is_full_training):
        curve = predict(profile, run.plans, at_tokens=run.tokens[-1:], after_boundary=True)
        assert curve.lower[-1] <= run.loss[-1] <= curve.upper[-1], run.name


DEEP12_END_GAP_MISS = pytest.mark.xfail(strict=True, reason="known miss (docs/loss-model.md, 'The start-up's depth, "
                                        "fitted'): the study's schedule at d80 L12 ends level with full training at "
                                        "equal FLOPs (+0.004) and is predicted 0.042 ahead")


DEEP12_END_GAP_AHEAD = pytest.mark.xfail(strict=True, reason="known miss (docs/loss-model.md, 'The law from full "
                                         "training alone'): the law from full training puts growth to d80 L12 "
                                         "further ahead at the end than trained (the no-freeze variant -0.084 "
                                         "against -0.036, stack_copy -0.081 against -0.043)")


@pytest.mark.parametrize("name", [pytest.param(n, marks=DEEP12_END_GAP_MISS) if "S4 freeze" in n else
                                  pytest.param(n, marks=DEEP12_END_GAP_AHEAD) if "nofreeze" in n or "stack_copy" in n
                                  else n for n in GROWN_DEEP12])
def test_deep12_growth_end_gap_is_within_twice_the_seed_noise_of_measured(deep12, name):
    _, _, scores = deep12
    noise, _ = seed_noise(load_runs())
    assert abs(scores[name].predicted.end_gap - scores[name].measured.end_gap) <= 2 * noise


# --- 16 and 12 layers (heldout_depth), registered with two profiles before training ----------


@pytest.fixture(scope="module")
def depth():
    from studies.growth_corpus import DEPTH_DATASET

    runs = load_dataset(dataset_path(DEPTH_DATASET))
    profile = load_loss_profile("stdlib-bytes")
    return runs, profile, {r.name: score_run(r, baseline_for(r, runs), profile.params, profile) for r in runs}


def test_the_depth_set_is_registered_with_both_profiles_and_the_candidate_is_what_ships():
    from pathlib import Path

    from studies.growth_corpus import corpus, heldout_depth, lr_sweep

    names = {r.name for r in heldout_depth()}
    assert not {r.name for r in corpus() + lr_sweep()} & names
    shipped_then, candidate = (_registered(f"heldout_depth_predicted{s}.json") for s in ("", "_candidate"))
    assert set(shipped_then["runs"]) == set(candidate["runs"]) == names
    assert shipped_then["profile_sha256_16"] != candidate["profile_sha256_16"]
    # the candidate registered then was shipped (until the law from full training replaced it)
    registered = load_loss_profile(str(Path(__file__).resolve().parents[1] / "benchmarks" /
                                       "depth_candidate_profile.json"))
    assert registered.params == load_loss_profile(SHIPPED_BEFORE_BREAK).params
    assert 0.2 < registered.params.startup_depth_exponent < 0.4


def test_on_the_depth_set_the_fitted_start_up_was_nearer_than_the_linear_one(depth):
    runs, _, scores = depth
    linear, fitted = (_registered(f"heldout_depth_predicted{s}.json")["runs"] for s in ("", "_candidate"))
    finals = np.array([[abs(linear[r.name]["final"] - r.loss[-1]), abs(fitted[r.name]["final"] - r.loss[-1])]
                       for r in runs])
    assert finals[:, 1].mean() < finals[:, 0].mean() / 3
    for run in (r for r in runs if not r.is_full_training):
        measured = scores[run.name].measured
        assert abs(fitted[run.name]["end_gap"] - measured.end_gap) < abs(linear[run.name]["end_gap"] - measured.end_gap)
        assert abs(fitted[run.name]["ratio"] - measured.ratio) < abs(linear[run.name]["ratio"] - measured.ratio)


def test_every_depth_held_out_final_is_inside_its_interval(depth):
    runs, profile, _ = depth
    assert len(runs) == 8
    for run in runs:
        curve = predict(profile, run.plans, at_tokens=run.tokens[-1:], after_boundary=True)
        assert curve.lower[-1] <= run.loss[-1] <= curve.upper[-1], run.name


@pytest.mark.parametrize("name", ["study d64 L16 S4 freeze seed1", "study d64 L16 S4 nofreeze seed1",
                                  "deepen d64 L8->16 stack_copy at0.25 seed1",
                                  "deepen d48 L6->12 random_top at0.5 seed1",
                                  # measured 0.64; predicted 0.52 (0.48 before the law from full training)
                                  "study d48 L12 S4 nofreeze seed1"])
def test_depth_held_out_ratio_within_the_target_and_growth_ahead(depth, name):
    score = depth[2][name]
    assert score.measured.ratio < 1 and score.predicted.ratio < 1 and score.measured.end_gap < 0
    assert abs(score.measured.ratio - score.predicted.ratio) <= 0.15


def test_the_one_layer_pick_at_2e12_trained_behind_the_two_layer_model_it_was_predicted_to_beat():
    """Held out (never fitted): at 2e12 the profile shipped then put d32 L1 first, 0.010 ahead of
    d32 L2; three seeds each trained it 0.103 behind, beyond seed noise, each final inside its
    wide interval. A 1-layer model is below every depth the profile was fitted on (2 to 8), the
    reason the search keeps every stage at the fitted depth or deeper (test_search.py)."""
    measured, predicted, seeds = _check_means(SHIPPED_BEFORE_BREAK)
    one, two = "full d32 L1 batch16 at2e12", "full d32 L2 batch16 at2e12"
    assert len(seeds[one]) == len(seeds[two]) == 3
    assert predicted[one] < predicted[two]
    noise = 2 * np.sqrt((np.var(seeds[one], ddof=1) + np.var(seeds[two], ddof=1)) / 3)
    assert measured[one] - measured[two] > max(0.08, noise)
    assert measured[one] - predicted[one] > 0.08  # every 1-layer model checked so far: worse than predicted
    assert load_loss_profile("stdlib-bytes").domain["layers"][0] == 2


def test_the_checks_with_the_depth_floor_train_the_searchs_order():
    """Held out: with every stage at 2 layers or more, the check at 2e12 picks d32 L2 and calls
    d64 L2 at 8 sequences a tie (trained 0.0017 apart), and at 4e12 picks d64 L2 with d32 L2
    0.030 behind (trained 0.071 behind); the study's schedules behind both, as predicted."""
    measured, predicted, seeds = _check_means()
    at2 = {k: f"{k} at2e12" for k in ("full d32 L2 batch16", "full d64 L2 batch8", "study d32 L4 S4 batch16")}
    pick, tie, study = at2.values()
    assert abs(predicted[tie] - predicted[pick]) < 0.016 and abs(measured[tie] - measured[pick]) < 0.016
    assert predicted[study] - predicted[pick] > 0.05 and measured[study] - measured[pick] > 0.05
    pick4, second4 = "full d64 L2 batch16 at4e12", "full d32 L2 batch16 at4e12"
    assert predicted[second4] - predicted[pick4] > 0.016 and measured[second4] - measured[pick4] > 0.05


def test_the_check_at_1e13_trains_its_pick_ahead_of_the_studys_schedule_and_level_with_the_next_shape():
    """Held out: at 1e13 the search picks d64 L2 at 32 sequences (predicted 1.3952, trained
    1.3947 over three seeds) and names d96 L2 0.023 behind; trained 0.010 behind, a tie within
    the noise of three seeds each; the study's schedule predicted 0.110 behind, trained 0.075."""
    measured, predicted, seeds = _check_means(SHIPPED_BEFORE_BREAK)
    pick, second, study = (f"{kind} batch32 at1e13" for kind in ("full d64 L2", "full d96 L2", "study d64 L4 S4"))
    assert abs(measured[pick] - predicted[pick]) < 0.02
    assert predicted[second] > predicted[pick] and measured[second] > measured[pick] - 0.01
    noise = 2 * np.sqrt((np.var(seeds[pick], ddof=1) + np.var(seeds[study], ddof=1)) / 3)
    assert measured[study] - measured[pick] > max(noise, 0.05) and predicted[study] - predicted[pick] > 0.05


def test_the_check_at_2e13_trains_its_pick_a_small_model_trained_long_behind_the_next_shape():
    """Held out: at 2e13 the search picks d64 L2 at 32 sequences for 24.9M tokens (about 250
    per parameter) and calls d96 L2 for 12.1M a tie (0.005 behind). Trained, the pick ends
    0.049 above its prediction and 0.029 behind d96 L2, beyond the noise of three seeds each:
    the check says contradicted. It is the known miss on small models trained long (the law's
    irreducible loss at its bound, 0: docs/loss-model.md, 'What it still cannot express'); the
    shorter-trained d96 L2 ends 0.015 above its own. Both inside their intervals. The profile
    shipped since (the law from full training, its data term broken) is the next test."""
    measured, predicted, seeds = _check_means(SHIPPED_BEFORE_BREAK)
    pick, second, study = (f"{kind} batch32 at2e13" for kind in ("full d64 L2", "full d96 L2", "study d64 L4 S4"))
    assert abs(predicted[second] - predicted[pick]) < 0.016  # a tie to the search
    noise = 2 * np.sqrt((np.var(seeds[pick], ddof=1) + np.var(seeds[second], ddof=1)) / 3)
    assert measured[pick] - measured[second] > noise
    assert measured[pick] - predicted[pick] > 0.04 > measured[second] - predicted[second]
    assert measured[study] - measured[second] > 0.05 and predicted[study] - predicted[pick] > 0.05


def test_the_broken_law_places_every_check_run_and_orders_every_budget_as_trained():
    """The shipped profile (the scaling law from full training alone, its data term broken at a
    place that moves with size) on the 63 check runs, none fitted: their finals unbiased, and
    every difference the checks measured beyond a tie predicted with its sign: d96 L2 ahead of
    d64 L2 at 2e13 (+0.034 predicted, +0.029 measured), the d32 shapes 0.06 behind d64 L2 at 4e12
    (0.057-0.078 measured), the study's schedules behind (docs/loss-model.md, "The law from full
    training alone")."""
    measured, predicted, seeds = _check_means()
    errors = np.array([predicted[k] - measured[k] for k in measured])
    assert abs(errors.mean()) < 0.01 and np.sqrt(np.mean(errors**2)) < 0.03
    at = {b: {k: v for k, v in measured.items() if k.endswith(f"at{b}")} for b in ("4e12", "1e13", "2e13")}
    assert predicted["full d64 L2 batch32 at2e13"] - predicted["full d96 L2 batch32 at2e13"] > 0.016
    for shape in ("L2", "L3", "L4", "L4 heads2"):
        gap = predicted[f"full d32 {shape} batch16 at4e12"] - predicted["full d64 L2 batch16 at4e12"]
        assert 0.04 < gap < 0.09
    for runs in at.values():
        study = next(k for k in runs if k.startswith("study"))
        best = min(runs, key=measured.get)
        assert predicted[study] - predicted[best] > 0.05 and measured[study] - measured[best] > 0.05
