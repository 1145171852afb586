"""The shipped loss profile against runs larger than any it was fitted on (not a timed test).

``studies.growth_corpus --set heldout`` trains d128 with 6 layers (1.18M non-embedding
parameters, 1.8x the corpus's largest): full training and three growth schedules;
``--set heldout-deep`` trains d128 with 8 layers (1.57M, deeper than any fitted run): full
training, the study's schedule and its no-freeze variant; ``--set heldout-longer`` d64 L4
growth for 3,200 steps; ``--set heldout-wide`` d192 at 6 and 3 layers (twice the corpus's
largest width) at the corpus's LR and a quarter of it, and growth between them at both;
``--set heldout-lr`` d128 L8 from scratch at half and a quarter of the corpus's LR, and the
study's schedule and its no-freeze variant at the one where full training ended lowest;
``--set heldout-lr96`` the corpus's own d96 L6 at half its LR (the same schedules and
``random_top`` late) and at twice it (full training at 6 and 3 layers, the no-freeze
variant); ``--set heldout-lr-band`` d96 L8, d160 L6 and d80 L12 in the LR limit's band, where the
seed decides, and above it, full training and growth at the same peak LR; ``--set heldout-deep12`` d80
at 12 layers (the corpus stops at 8) and 6 at the corpus's LR, full training and four growth
schedules; ``--set heldout-depth`` d64 at 16 layers and d48 at 12, registered with the shipped
profile and a candidate (``depth_candidate_profile.json``, its start-up's depth exponent
fitted, shipped since). No fit sees them, and the shipped profile's predictions for them were
written down before they were trained:

    python benchmarks/heldout_larger.py [--set deep|...|depth] --predict  # from the specs alone
    python benchmarks/heldout_larger.py [--set deep|...|depth]            # scores the trained runs

The second prints, per growth run and per schedule (seeds averaged), the same columns as
``loss_accuracy.py`` (measured and predicted compute-to-match ratio, sign, crossover, rms,
coverage), each run's final loss against its interval and rms along it, for full training of
one width at two depths the deeper one's gap to the shallower along the run (the start-up),
and checks that the pre-registered predictions are the ones
the shipped profile still makes (a refit since then is named, not hidden).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from loss_accuracy import summary, summary_line, table

from costsim.corpus import baseline_setup, baselines_for, dataset_path, load_dataset, load_runs
from costsim.fit import cumulative_flops, seed_noise
from costsim.heldout import (
    RunScore,
    baseline_for,
    baseline_prefix,
    compare_curves,
    measured_comparison,
    ratio_seed_noise,
    score_run,
    score_schedules,
    seed_mean_curve,
)
from costsim.loss import load_loss_profile, lr_limit, lr_slow_probability, lr_verdict, predict, stage_plans
from costsim.shipped import shipped_text
from costsim.spec import parse_spec
from studies.growth_corpus import (
    BAND_DATASET,
    DEEP12_DATASET,
    DEEP_DATASET,
    DEPTH_DATASET,
    EVALS_PER_RUN,
    HELDOUT_DATASET,
    LONGER_DATASET,
    LR96_DATASET,
    LR_DATASET,
    WIDE_DATASET,
    heldout,
    heldout_deep,
    heldout_deep12,
    heldout_depth,
    heldout_longer,
    heldout_lr,
    heldout_lr96,
    heldout_lr_band,
    heldout_wide,
)

PROFILE = "stdlib-bytes"
# a held-out set: its runs, the dataset they are exported to, the registered predictions
SETS = {"larger": (heldout, HELDOUT_DATASET, "heldout", Path(__file__).with_name("heldout_larger_predicted.json")),
        "deep": (heldout_deep, DEEP_DATASET, "heldout-deep", Path(__file__).with_name("heldout_deep_predicted.json")),
        "longer": (heldout_longer, LONGER_DATASET, "heldout-longer",
                   Path(__file__).with_name("heldout_longer_predicted.json")),
        "wide": (heldout_wide, WIDE_DATASET, "heldout-wide", Path(__file__).with_name("heldout_wide_predicted.json")),
        "lr": (heldout_lr, LR_DATASET, "heldout-lr", Path(__file__).with_name("heldout_lr_predicted.json")),
        "lr96": (heldout_lr96, LR96_DATASET, "heldout-lr96", Path(__file__).with_name("heldout_lr96_predicted.json")),
        "lr-band": (heldout_lr_band, BAND_DATASET, "heldout-lr-band",
                    Path(__file__).with_name("heldout_lr_band_predicted.json")),
        "deep12": (heldout_deep12, DEEP12_DATASET, "heldout-deep12",
                   Path(__file__).with_name("heldout_deep12_predicted.json")),
        "depth": (heldout_depth, DEPTH_DATASET, "heldout-depth",
                  Path(__file__).with_name("heldout_depth_predicted.json"))}
# where along a run the depth pairs' gaps are read (shares of its evaluations)
PAIR_SHARES = (0.125, 0.25, 0.5, 0.75, 1.0)


def profile_digest(profile: str = PROFILE) -> str:
    text = shipped_text("loss", PROFILE) if profile == PROFILE else Path(profile).read_text()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def candidate_file(predicted: Path) -> Path:
    """Where a candidate profile's registered predictions for a set go, beside the shipped one's."""
    return predicted.with_name(predicted.stem + "_candidate.json")


def predicted_runs(listing=heldout, profile_ref: str = PROFILE) -> dict:
    """What a profile (the shipped one, or a candidate's JSON file) says of every held-out run,
    from its spec alone."""
    profile = load_loss_profile(profile_ref)
    specs = {run.name: parse_spec({**run.spec, "name": f"{run.name} [{run.family}]"}) for run in listing()}
    curves = {}
    for name, spec in specs.items():
        plans = stage_plans(spec)
        steps = [p.n_steps for p in plans]
        total = sum(steps)
        # where the corpus evaluates: every steps // EVALS_PER_RUN steps
        every = total // EVALS_PER_RUN
        tokens = np.arange(1, EVALS_PER_RUN + 1) * every * spec.training.batch_size * spec.model.seq_len
        curve = predict(profile, plans, at_tokens=tokens.astype(float), after_boundary=True)
        curves[name] = (spec, steps, tokens, curve)
    out = {}
    for name, (spec, steps, tokens, curve) in curves.items():
        row = {"final": float(curve.loss[-1]), "lower": float(curve.lower[-1]), "upper": float(curve.upper[-1])}
        plan = stage_plans(spec)[-1]
        over = plan.peak_lr / float(lr_limit(profile.params, plan.layers, plan.aspect))
        row |= {"lr_over_limit": over, "p_slow": float(lr_slow_probability(profile.params, over)),
                "lr_verdict": lr_verdict(profile.params, over, profile.interval)}
        if len(spec.stages) > 1:
            base = baseline_curve(spec, curves)
            c = compare_curves(cumulative_flops(spec, steps, tokens), curve.loss,
                               cumulative_flops(base[0], base[1], base[2]), base[3].loss)
            row |= {"ratio": c.ratio, "crossover_kind": c.crossover_kind, "crossover_flops": c.crossover_flops,
                    "end_gap": c.end_gap}
        out[name] = row
    return {"profile": profile_ref, "profile_sha256_16": profile_digest(profile_ref), "runs": out}


def baseline_curve(spec, curves: dict) -> tuple:
    """Full training for a growth spec among ``curves``: its baseline by the corpus's rule
    (``costsim.corpus.baseline_setup``), of the same seed where there is one, else the set's
    first full-training run (the sets trained before the LR band hold their baseline first)."""
    full = [v for v in curves.values() if len(v[0].stages) == 1]
    matching = [v for v in full if baseline_setup(v[0]) == baseline_setup(spec)]
    same_seed = [v for v in matching if v[0].training.seed == spec.training.seed]
    return (same_seed or matching or full)[0]


def _same_predictions(registered: dict, fresh: dict) -> bool:
    def close(a, b) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
        return a == b

    return registered.keys() == fresh.keys() and all(
        registered[name].keys() <= fresh[name].keys()  # a key added since is information, not a prediction
        and all(close(registered[name][k], fresh[name][k]) for k in registered[name]) for name in registered)


def against_candidate(runs: list, scores: list[RunScore], shipped: dict, candidate: dict) -> list[str]:
    """Both registrations side by side against what was measured: each run's final loss, each
    growth run's ratio and end gap (against its own seed's baseline), and which profile was
    nearer, counted."""
    lines = ["", f"registered before training: the profile shipped then ({shipped['profile']}, "
             f"{shipped['profile_sha256_16']}) / the candidate ({candidate['profile']}, "
             f"{candidate['profile_sha256_16']}):"]
    errors: dict[str, list[tuple[float, float]]] = {"final": [], "ratio": [], "end gap": []}
    by_name = {s.run: s for s in scores}
    for run in runs:
        a, b, score = shipped["runs"][run.name], candidate["runs"][run.name], by_name[run.name]
        cells = [("final", run.loss[-1], a["final"], b["final"])]
        if score.measured is not None and "ratio" in a:
            cells += [("ratio", score.measured.ratio, a["ratio"], b["ratio"]),
                      ("end gap", score.measured.end_gap, a["end_gap"], b["end_gap"])]
        parts = []
        for key, measured, x, y in cells:
            if measured is None or x is None or y is None:
                parts.append(f"{key} not reached")
                continue
            errors[key].append((abs(x - measured), abs(y - measured)))
            parts.append(f"{key} {measured:+.3f} measured, {x:+.3f} / {y:+.3f}")
        lines.append(f"  {run.name:42s} " + "; ".join(parts))
    for key, pairs in errors.items():
        if pairs:
            e = np.array(pairs)
            lines.append(f"  {key}: mean error shipped then {e[:, 0].mean():.3f}, candidate {e[:, 1].mean():.3f}; "
                         f"candidate nearer on {int(np.sum(e[:, 1] < e[:, 0]))}/{len(e)}")
    return lines


def repeated_baselines(runs: list, scores: list[RunScore]) -> None:
    """Where full training was repeated, each growth run's measured ratio against every
    seed's baseline and against their mean curve: for a deep model trained from scratch,
    when it leaves its first plateau varies with the seed, and the measured ratio with it."""
    predicted_by_run = {s.run: s.predicted for s in scores}
    for run in (r for r in runs if not r.is_full_training):
        bases = baselines_for(run, runs)
        if len(bases) < 2 or predicted_by_run.get(run.name) is None:
            continue
        predicted = predicted_by_run[run.name]
        parts = [f"seed {b.seed} {measured_comparison(run, b).ratio:.2f}" for b in bases]
        flops, loss = seed_mean_curve(bases, keep=baseline_prefix(run, bases[0]))  # a longer baseline's prefix
        mean = compare_curves(cumulative_flops(run.spec, run.steps, run.tokens), run.loss, flops, loss)
        print(f"{run.name:42s} ratio against full training {', '.join(parts)}, their mean {mean.ratio:.2f} "
              f"({mean.crossover_kind}, end {mean.end_gap:+.3f}); predicted {predicted.ratio:.2f}")


def depth_pairs(runs: list, profile) -> list[str]:
    """For full training of one width, seed and peak LR at two depths: the deeper model's loss minus
    the shallower one's, measured and predicted, along the run. A deep model from scratch
    starts slower (the start-up), so the gap starts above 0 and falls below it once its
    depth is in use; how soon it falls is what the start-up's length says."""
    lines = []
    full = [r for r in runs if r.is_full_training]
    for deep in full:
        for shallow in full:
            if (shallow.spec.model.d_model, shallow.seed, shallow.spec.training.lr_schedule.lr) \
                    != (deep.spec.model.d_model, deep.seed, deep.spec.training.lr_schedule.lr) \
                    or shallow.final_shape[1] >= deep.final_shape[1] or len(shallow.tokens) != len(deep.tokens) \
                    or not np.allclose(shallow.tokens, deep.tokens):
                continue
            pred = {r.name: predict(profile, r.plans, at_tokens=r.tokens, after_boundary=True).loss
                    for r in (deep, shallow)}
            parts = []
            for share in PAIR_SHARES:
                i = max(0, round(share * len(deep.tokens)) - 1)
                parts.append(f"{deep.tokens[i] / 1e6:.2f}M {deep.loss[i] - shallow.loss[i]:+.3f}/"
                             f"{pred[deep.name][i] - pred[shallow.name][i]:+.3f}")
            lines.append(f"{deep.name} minus {shallow.name} (measured/predicted): " + "  ".join(parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=sorted(SETS), default="larger",
                        help="larger: d128 L6 (the default); deep: d128 L8, deeper than any fitted run; longer: d64 L4 "
                        "growth trained as long as d96; wide: d192 at 6 and 3 layers at two peak LRs, and growth "
                        "between them; lr: d128 L8 at the peak LR that suits its full training; lr96: the corpus's "
                        "d96 L6 at half and twice its peak LR; lr-band: d96 L8, d160 L6 and d80 L12 in and above the "
                        "LR limit's band; deep12: d80 at 12 and 6 layers, full training and growth; depth: d64 L16 "
                        "and d48 L12")
    parser.add_argument("--profile", default=PROFILE, help="score this loss profile (a name or a JSON path; "
                        "default the shipped one; --predict registers another as a candidate): a candidate refit is "
                        "scored on the same held-out runs")
    parser.add_argument("--predict", action="store_true", help="write the predictions to the set's "
                        "*_predicted.json (with --profile FILE: a candidate's, to *_predicted_candidate.json)")
    args = parser.parse_args()
    listing, dataset, set_flag, predicted = SETS[args.set]
    if args.predict:
        target = predicted
        if args.profile != PROFILE:  # a candidate's predictions, registered beside the shipped one's
            if not Path(args.profile).is_file():
                raise SystemExit(f"--predict --profile {args.profile}: give a candidate profile's JSON file (a "
                                 "file in the repository, so that its registration can be checked)")
            target = candidate_file(predicted)
        fresh = predicted_runs(listing, args.profile)
        if target.exists() and json.loads(target.read_text())["profile_sha256_16"] != fresh["profile_sha256_16"]:
            # the registered file is the evidence: a refit must not overwrite it
            raise SystemExit(f"{target.name} holds another profile's predictions, made before the runs were "
                             "trained; keep it, or move it aside to register anew")
        target.write_text(json.dumps(fresh, indent=1) + "\n")
        print(f"wrote {target}")
        return
    if not dataset_path(dataset).exists():
        raise SystemExit(f"{dataset_path(dataset)}: not trained yet; run python -m studies.growth_corpus "
                         f"--set {set_flag} --db {set_flag}.duckdb, then the same with --export")
    registered, fresh = json.loads(predicted.read_text()), predicted_runs(listing)
    unchanged = registered["profile_sha256_16"] == fresh["profile_sha256_16"]
    # a profile file can change without changing these predictions (the LR limit, known but not applied)
    same = unchanged or _same_predictions(registered["runs"], fresh["runs"])
    print(f"pre-registered predictions: {predicted.name}, profile {registered['profile']} "
          + ("(the shipped profile is unchanged since)" if unchanged else
             "(the shipped profile has changed since, its predictions for these runs have not)" if same else
             "(the shipped profile has changed since: both are shown)"))
    profile = load_loss_profile(args.profile)
    if args.profile != PROFILE:
        print(f"scored with {args.profile}, not the shipped profile")
    corpus = load_runs()
    ratio_noise, _ = ratio_seed_noise(corpus)
    noise, _ = seed_noise(corpus)
    runs = load_dataset(dataset_path(dataset))
    scores: list[RunScore] = []
    for run in runs:
        scores.append(score := score_run(run, baseline_for(run, runs), profile.params, profile))
        pre = registered["runs"].get(run.name, {})
        curve = predict(profile, run.plans, at_tokens=run.tokens[-1:], after_boundary=True)  # the final's interval
        inside = curve.lower[-1] <= run.loss[-1] <= curve.upper[-1]
        line = (f"{run.name:42s} final measured {run.loss[-1]:.4f}  predicted {curve.loss[-1]:.4f} "
                f"[{curve.lower[-1]:.4f}, {curve.upper[-1]:.4f}] {'inside' if inside else 'OUTSIDE'}  "
                f"rms {score.rms:.3f}  coverage {score.coverage:.0%}")
        if pre and not same:
            line += f"  (pre-registered {pre['final']:.4f})"
        print(line)
    if all(run.is_full_training for run in runs):  # no growth to score: the depth pairs say the rest
        for line in depth_pairs(runs, profile):
            print(line)
        return
    print()
    print(table(scores, ratio_noise))
    print()
    print(summary_line(profile.name, summary(scores, ratio_noise, noise)))
    schedules = score_schedules(runs, runs, profile.params, noise)
    if any(s.seeds > 1 for s in schedules):  # a repeated schedule: its seeds' mean curve
        print()
        print(table(schedules, ratio_noise))
        print()
        print(summary_line(profile.name, summary(schedules, ratio_noise, noise)) + "  (per schedule)")
    repeated_baselines(runs, scores)
    for line in depth_pairs(runs, profile):
        print(line)
    if candidate_file(predicted).exists():
        for line in against_candidate(runs, scores, registered, json.loads(candidate_file(predicted).read_text())):
            print(line)
    # after a refit the registered ratios are the honest held-out ones: print them too
    if not same:
        for name, pre in registered["runs"].items():
            if "ratio" in pre:
                print(f"pre-registered {name}: ratio {pre['ratio']}, {pre['crossover_kind']} "
                      f"{pre['crossover_flops']}, end gap {pre['end_gap']:+.3f}")


if __name__ == "__main__":
    main()
