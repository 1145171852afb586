"""Does the loss profile rank batch sizes as training does? (not a timed test)

For every shape of the corpus (default: the shipped one) trained from scratch at more
than one batch size at a constant LR, each batch's measured loss (the mean over its
seeds, ± their standard deviation where there are two or more) and the profile's
prediction, at the token count the shorter runs end on (a longer
run is read at that point of its curve), then which batch each ranks best. A search picks
a batch from these predictions, so a profile that gets the ranking wrong picks a batch
that trains worse. In-sample: the profile was fitted on these runs. ``--leave-out`` adds
the held-out test of the batch terms: for each batch other than the corpus's own, the
law is refitted on full training without any run at that batch (every shape), starting
from the profile and holding what it holds, and predicts those runs (about half a
minute per batch); the real-training check of the search
(``studies.check_recommendation``) is the other. ``--along`` prints, for each batch, its
loss minus its shape's usual batch's along the run, measured and predicted: where a batch
gains or loses, which the end alone does not show.

Run: python benchmarks/batch_residuals.py [--data FILE] [--profile stdlib-bytes] [--against PROFILE.json]
     [--leave-out] [--along]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from costsim.corpus import RunData, load_runs, usual_batch
from costsim.fit import HELD_VALUES, fit_params
from costsim.loss import LossProfile, load_loss_profile, predict


def constant_lr(run: RunData) -> bool:
    return run.spec.training.lr_schedule.kind == "constant"


def batch_groups(runs: list[RunData]) -> dict[tuple[int, int], dict[int, list[RunData]]]:
    """Full training at constant LR, by shape (d_model, layers) then batch (sequences), for
    shapes with two or more batches."""
    groups: dict[tuple[int, int], dict[int, list[RunData]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.is_full_training and constant_lr(run):
            shape = (run.spec.model.d_model, run.spec.stages[-1].layers)
            groups[shape][run.spec.training.batch_size].append(run)
    return {shape: dict(sorted(by_batch.items())) for shape, by_batch in sorted(groups.items()) if len(by_batch) > 1}


def at_tokens(by_batch: dict[int, list[RunData]], profiles: list[LossProfile]
              ) -> tuple[float, list[tuple[int, int, float, list[float]]], dict[int, float]]:
    """The shorter runs' end (tokens); per batch: seeds, measured mean there, each
    profile's prediction there; and the seeds' standard deviation where there are two or more."""
    tokens = min(run.tokens[-1] for runs in by_batch.values() for run in runs)
    rows, spread = [], {}
    for batch, runs in by_batch.items():
        values = [np.interp(tokens, run.tokens, run.loss) for run in runs]
        predicted = [float(predict(p, runs[0].plans, at_tokens=np.array([tokens])).loss[-1]) for p in profiles]
        rows.append((batch, len(runs), float(np.mean(values)), predicted))
        if len(values) > 1:
            spread[batch] = float(np.std(values, ddof=1))
    return tokens, rows, spread


def without_batch(profile: LossProfile, runs: list[RunData], batch: int) -> LossProfile:
    """The profile refitted on full training at constant LR without any run at ``batch``
    sequences (terms the profile holds at their off values stay held)."""
    hold = tuple(field for field, value in HELD_VALUES.items() if getattr(profile.params, field) == value)
    kept = [r for r in runs if r.is_full_training and r.spec.training.batch_size != batch]
    params, _ = fit_params(kept, profile.params, hold=hold)
    return profile.model_copy(update={"name": f"without batch {batch}", "params": params, "samples": []})


ALONG_TOKENS = (327680, 655360, 1064960, 2129920, 3276800, 5570560, 6553600)  # points every corpus run evaluates at


def along(by_batch: dict[int, list[RunData]], profile: LossProfile, usual: int) -> list[tuple[int, list[str]]]:
    """Each other batch's loss minus the usual batch's (seed means) at ``ALONG_TOKENS`` within
    the shorter run, measured and predicted: where along a run a batch gains or loses."""
    def mean_at(runs, tokens):
        return np.mean([np.interp(tokens, r.tokens, r.loss) for r in runs], axis=0)

    rows = []
    for batch, runs in by_batch.items():
        if batch == usual:
            continue
        end = min(r.tokens[-1] for r in (*runs, *by_batch[usual]))
        tokens = np.array([t for t in ALONG_TOKENS if t <= end * (1 + 1e-9)])
        measured = mean_at(runs, tokens) - mean_at(by_batch[usual], tokens)
        predicted = (predict(profile, runs[0].plans, at_tokens=tokens).loss
                     - predict(profile, by_batch[usual][0].plans, at_tokens=tokens).loss)
        rows.append((batch, [f"{t:.3g}: {m:+.3f} ({q:+.3f})" for t, m, q in zip(tokens, measured, predicted)]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="corpus file or store (default: the shipped corpus)")
    parser.add_argument("--profile", default="stdlib-bytes")
    parser.add_argument("--against", help="a second profile (JSON file) to print beside the first")
    parser.add_argument("--leave-out", action="store_true", help="also predict each batch from a refit without it")
    parser.add_argument("--along", action="store_true", help="also each batch's loss minus the usual batch's along "
                        "the run, measured (predicted)")
    args = parser.parse_args()
    profiles = [load_loss_profile(args.profile)]
    if args.against:
        with open(args.against) as f:
            profiles.append(LossProfile.model_validate_json(f.read()))
    names = [p.name if i == 0 else f"{p.name} ({args.against})" for i, p in enumerate(profiles)]
    runs = load_runs(args.data)
    groups = batch_groups(runs)
    held: dict[int, LossProfile] = {}
    usual = usual_batch(runs)
    if args.leave_out:
        for batch in sorted({b for by_batch in groups.values() for b in by_batch} - {usual}):
            held[batch] = without_batch(profiles[0], runs, batch)
        names.append(f"{profiles[0].name} refitted without the batch")
    print("error = predicted - measured (< 0: optimistic); profiles: " + "; ".join(names))
    errors: list[list[float]] = [[] for _ in names]
    right = [0 for _ in names]
    for (d_model, layers), by_batch in groups.items():
        tokens, rows, spread = at_tokens(by_batch, profiles)
        if held:  # the corpus's own batch is not held out: the profile's in-sample prediction
            rows = [(batch, seeds, measured, [*predicted, float(predict(
                held.get(batch, profiles[0]), by_batch[batch][0].plans, at_tokens=np.array([tokens])).loss[-1])])
                for batch, seeds, measured, predicted in rows]
        print(f"d{d_model} L{layers} at {tokens:.3g} tokens")
        for batch, seeds, measured, predicted in rows:
            cells = "  ".join(f"{p:.4f} ({p - measured:+.3f})" for p in predicted)
            sd = f" ± {spread[batch]:.4f}" if batch in spread else " " * 9
            print(f"  batch {batch:5d} x{seeds}  measured {measured:.4f}{sd}  predicted {cells}")
            for i, p in enumerate(predicted):
                if not (held and i == len(names) - 1 and batch not in held):  # the usual batch is not held out
                    errors[i].append(p - measured)
        best = rows[int(np.argmin([m for _, _, m, _ in rows]))][0]
        for i in range(len(names)):
            picked = rows[int(np.argmin([p[i] for _, _, _, p in rows]))][0]
            right[i] += picked == best
            print(f"  best batch measured {best}, predicted {picked} ({names[i]})")
        if args.along:
            for batch, cells in along(by_batch, profiles[0], usual):
                print(f"  along: batch {batch} minus batch {usual} at tokens: " + ", ".join(cells))
    for i, name in enumerate(names):
        e = np.array(errors[i])
        print(f"{name}: rms {np.sqrt(np.mean(e**2)):.4f}, mean {e.mean():+.4f} over {len(e)} batches; "
              f"best batch right on {right[i]}/{len(groups)} shapes")


if __name__ == "__main__":
    main()
