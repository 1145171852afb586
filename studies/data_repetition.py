"""``python -m studies.data_repetition``: does seeing the training data more than once cost loss here?

The corpus's longest runs (26M tokens) see the stdlib's 12.0M training tokens about 2.2
times, and they end above the loss model's curves. This study separates repetition from
everything else: it trains one schedule, full training of d64 L2 at 32 sequences for 24.9M
tokens, seed 1 (the search's pick in the check at 2e13, whose three seeds on the whole
training split ship in ``heldout_check``), on subsets of the training split that hold 1/2
and 1/4 of its tokens, so that the same tokens are 4.2 and 8.3 passes over the data instead
of 2.1. The validation split is the stdlib's own, unchanged, so the losses compare directly.

A subset keeps every k-th chunk of ``CHUNK`` tokens of the training split, so it spans the
whole stdlib (every package) rather than its first files. The subsets are written as
``train.bin``/``val.bin`` folders and trained on through ``validate.run --data``.

Without ``--train`` it prints, from the shipped runs (``costsim/data/corpus/repetition.json``),
each subset run's loss against the three full-data seeds' mean at the same tokens, with the
passes over its data; ``--train`` trains them again into ``--db`` (two runs, about 7 minutes
each on one core) and writes the runs to ``--export``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from costsim.corpus import RunData, dataset_path, export_store, load_runs, load_store
from costsim.errors import CostsimError, cli_errors
from costsim.paths import output_file
from costsim.spec import parse_spec
from costsim.text import table
from studies.runner import complete_run, train_spec

CHUNK = 65536  # tokens per chunk a subset keeps or drops (about 2-3 stdlib files)
KEEP_EVERY = (2, 4)  # the subsets: 1/2 and 1/4 of the training split
REFERENCE = "full d64 L2 batch32 at2e13"  # the full-data schedule in heldout_check, seeds 1-3
DATASET = "repetition"
SOURCE = ("python -m studies.data_repetition --train: full d64 L2 batch32 at2e13 seed 1 on every 2nd and every 4th "
          f"chunk of {CHUNK} tokens of the stdlib's training split (validation split unchanged)")
EVAL_EVERY = 400  # steps, the check's 30 evaluations over its 12,164 steps
EVAL_BATCHES = 16
_SHARE = re.compile(r" data1/(\d+)")  # how a subset run's name says its data: "... data1/4 seed1"


def subset(train: np.ndarray, keep_every: int, chunk: int = CHUNK) -> np.ndarray:
    """Every ``keep_every``-th chunk of ``chunk`` tokens, from the first: 1/keep_every of the tokens,
    spread over the whole split."""
    if keep_every < 1 or chunk < 1:
        raise CostsimError(f"keep_every ({keep_every}) and chunk ({chunk}) must be at least 1")
    starts = range(0, len(train) // chunk * chunk, chunk * keep_every)
    return np.concatenate([np.asarray(train[s:s + chunk]) for s in starts])


def build_subset(directory: Path, keep_every: int) -> tuple[int, str]:
    """Write the subset's ``train.bin``, the stdlib's ``val.bin`` and ``meta.json`` into
    ``directory``; returns its training tokens and their sha256 (the same bytes every time)."""
    from validate.data import TOKEN_DTYPE, open_dataset  # torch: only when building

    dataset = open_dataset(None)
    train = subset(dataset.splits["train"], keep_every)
    directory.mkdir(parents=True, exist_ok=True)
    train.astype(TOKEN_DTYPE).tofile(directory / "train.bin")
    np.asarray(dataset.splits["val"]).astype(TOKEN_DTYPE).tofile(directory / "val.bin")
    (directory / "meta.json").write_text(json.dumps({"vocab_size": dataset.vocab_size}))
    return len(train), hashlib.sha256(train.astype(TOKEN_DTYPE).tobytes()).hexdigest()


def reference_runs() -> list[RunData]:
    runs = [r for r in load_runs("heldout_check") if r.schedule == REFERENCE]
    if not runs:
        raise CostsimError(f"heldout_check holds no {REFERENCE!r} runs; this checkout's corpus is incomplete")
    return runs


def subset_spec(keep_every: int) -> dict:
    """The reference's seed-1 spec, renamed for its data."""
    seed1 = next(r for r in reference_runs() if r.seed == 1)
    body = seed1.spec.model_dump(mode="json", exclude_none=True)
    body["name"] = f"{REFERENCE} data1/{keep_every} seed1"
    return body


def train(db: Path, workdir: Path, threads: int) -> list[dict]:
    """Build each subset and train the reference's seed 1 on it (a complete run in ``db`` is reused)."""
    summaries = []
    for keep_every in KEEP_EVERY:
        body = subset_spec(keep_every)
        data = workdir / f"data-1of{keep_every}"
        n_tokens, digest = build_subset(data, keep_every)
        print(f"1/{keep_every} of the training split: {n_tokens} tokens, sha256 {digest[:16]}", flush=True)
        if complete_run(db, parse_spec(body)):
            continue
        summaries.append(train_spec(body, db, workdir, threads=threads, eval_every=EVAL_EVERY,
                                    eval_batches=EVAL_BATCHES, label=body["name"], data=str(data)))
    return summaries


def subset_tokens(whole: int, keep_every: int, chunk: int = CHUNK) -> int:
    """How many tokens ``subset`` keeps of a split of ``whole`` tokens."""
    return -(-(whole // chunk) // keep_every) * chunk


def comparison(runs: list[RunData], reference: list[RunData], whole_tokens: int) -> list[list[str]]:
    """Per subset run and evaluation: passes over its data, its loss, the reference seeds'
    mean and spread at those tokens (interpolated), and the difference."""
    rows = [["run", "tokens", "passes", "loss", "full data (3 seeds)", "spread", "difference"]]
    for run in runs:
        keep_every = int(_SHARE.search(run.name).group(1))
        for tokens, loss in list(zip(run.tokens, run.loss))[3::3]:
            at = np.array([np.interp(tokens, r.tokens, r.loss) for r in reference])
            passes = tokens / subset_tokens(whole_tokens, keep_every)
            rows.append([f"1/{keep_every}", f"{tokens / 1e6:.2f}M", f"{passes:.1f}", f"{loss:.4f}",
                         f"{at.mean():.4f}", f"{at.std(ddof=1):.3f}", f"{loss - at.mean():+.4f}"])
    return rows


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.data_repetition", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the subset runs (else: the shipped ones)")
    parser.add_argument("--db", default="repetition.duckdb", help="store for --train (default ./repetition.duckdb)")
    parser.add_argument("--workdir", default="repetition", help="subsets and checkpoints (default ./repetition)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per run")
    parser.add_argument("--export", default=None, help=f"with --train, write the runs here (default: none; the "
                        f"shipped file is {dataset_path(DATASET)})")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise CostsimError("--threads must be at least 1")
    if args.train:
        db = output_file(args.db, "--db").resolve()
        train(db, Path(args.workdir).resolve(), args.threads)
        runs = [r for r in load_store(db) if _SHARE.search(r.name)]
        if args.export:
            export_store(db, output_file(args.export, "--export"), source=SOURCE)
    else:
        runs = load_runs(DATASET)
    from validate.data import open_dataset

    whole = open_dataset(None).n_tokens("train")
    print(f"training split: {whole} tokens; the reference trains {REFERENCE} for "
          f"{reference_runs()[0].tokens[-1] / 1e6:.1f}M tokens")
    print("\n".join(table(comparison(sorted(runs, key=lambda r: r.name), reference_runs(), whole), left=(0,))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
