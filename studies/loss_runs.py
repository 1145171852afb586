"""Real CPU-scale runs that the loss model is fitted on (and checked against).

``python -m studies.loss_runs --db loss.duckdb`` trains, on the offline byte-level
stdlib corpus, full-training baselines at several sizes (constant LR, one with cosine
decay) and growth schedules (the study's layer-wise schedule with and without freezing,
function-preserving depth growth, stacking, width growth). Runs marked ``holdout`` are
never used for fitting; the loss model predicts them and the error is reported.
Runs go two at a time (one per core). Takes about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

SEQ_LEN = 64
BATCH = 16
TOKENS_PER_STEP = SEQ_LEN * BATCH
STEPS = 600


def _model(d_model: int) -> dict:
    return {"d_model": d_model, "n_heads": max(2, d_model // 32), "vocab_size": 256, "seq_len": SEQ_LEN}


def _training(schedule: str = "constant") -> dict:
    lr = {"kind": schedule, "lr": 2e-3, "warmup_steps": 20}
    if schedule == "cosine":
        lr["min_lr_ratio"] = 0.1
    return {"micro_batch_size": BATCH, "batch_size": BATCH, "precision": "fp32", "lr_schedule": lr, "seed": 1}


def baseline(d_model: int, layers: int, schedule: str = "constant", steps: int = STEPS) -> dict:
    return {"name": f"full d{d_model} L{layers} {schedule}", "model": _model(d_model), "training": _training(schedule),
            "stages": [{"layers": layers, "tokens": steps * TOKENS_PER_STEP, "name": "full"}]}


def layerwise(d_model: int, layers: int, n_stages: int, freeze: bool, growth: str = "random_top",
              steps: int = STEPS) -> dict:
    """The study's shape: stages of L/S blocks, each after the first split into a phase
    that trains only the new blocks (if ``freeze``) and one that trains all."""
    per_stage = steps // (n_stages + 1)  # the last share is continual training of the full model
    step = layers // n_stages
    stages = [{"layers": step, "tokens": per_stage * TOKENS_PER_STEP, "name": "stage 1"}]
    for s in range(2, n_stages + 1):
        if freeze:
            stages += [{"layers": s * step, "tokens": per_stage // 2 * TOKENS_PER_STEP, "train": "new",
                        "growth": growth, "name": f"stage {s} freeze"},
                       {"layers": s * step, "tokens": (per_stage - per_stage // 2) * TOKENS_PER_STEP,
                        "name": f"stage {s} all"}]
        else:
            stages.append({"layers": s * step, "tokens": per_stage * TOKENS_PER_STEP, "growth": growth,
                           "name": f"stage {s}"})
    stages.append({"layers": layers, "tokens": (steps - per_stage * n_stages) * TOKENS_PER_STEP,
                   "reset_optimizer": True, "name": "continual"})
    kind = "freeze" if freeze else "nofreeze"
    return {"name": f"layerwise d{d_model} L{layers} S{n_stages} {kind} {growth}", "model": _model(d_model),
            "training": _training(), "stages": stages}


def widen(d_model: int, layers: int, steps: int = STEPS) -> dict:
    """Function-preserving widening needs every width to double: heads of 16 dims."""
    half = d_model // 2
    model = {**_model(d_model), "n_heads": d_model // 16}
    narrow = {"d_model": half, "n_heads": half // 16, "d_ff": 2 * d_model}
    return {"name": f"widen d{half}->{d_model} L{layers}", "model": model, "training": _training(),
            "stages": [{"layers": layers, "tokens": steps // 3 * TOKENS_PER_STEP, **narrow, "name": "narrow"},
                       {"layers": layers, "tokens": (steps - steps // 3) * TOKENS_PER_STEP,
                        "growth": "widen_preserving", "name": "wide"}]}


def run_set() -> list[tuple[str, dict]]:
    """(role, spec) pairs: role is 'fit' or 'holdout'."""
    return [
        ("fit", baseline(32, 2)), ("fit", baseline(64, 2)), ("fit", baseline(64, 4)), ("fit", baseline(96, 4)),
        ("fit", baseline(128, 4)), ("fit", baseline(128, 6)), ("fit", baseline(96, 4, "cosine")),
        ("fit", layerwise(96, 6, 3, freeze=True)), ("fit", layerwise(96, 6, 3, freeze=False)),
        ("fit", layerwise(96, 6, 3, freeze=False, growth="identity")),
        ("fit", layerwise(96, 6, 3, freeze=False, growth="stack_copy")), ("fit", widen(96, 4)),
        ("holdout", baseline(96, 6)), ("holdout", layerwise(128, 6, 2, freeze=True)),
        ("holdout", layerwise(128, 6, 3, freeze=False, growth="identity")),
        ("holdout", layerwise(64, 4, 2, freeze=True, growth="stack_copy")), ("holdout", widen(128, 4)),
    ]


def train(spec: dict, role: str, db: Path, eval_every: int, workdir: Path) -> str:
    path = workdir / f"{abs(hash(spec['name']))}.yaml"
    spec = {**spec, "name": f"{spec['name']} [{role}]"}
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "validate.run", str(path), "--db", str(db), "--no-progress",
                             "--json",
                             "--eval-every", str(eval_every), "--eval-batches", "8", "--checkpoint-every", "100000",
                             "--run-dir", str(workdir / "runs")], env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{spec['name']}: {result.stderr.strip().splitlines()[-1]}")
    return result.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.loss_runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="loss_runs.duckdb")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", help="run only the runs whose name contains this text")
    args = parser.parse_args(argv)
    runs = [(role, spec) for role, spec in run_set() if not args.only or args.only in spec["name"]]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(train, spec, role, Path(args.db).resolve(), args.eval_every, Path(tmp))
                   for role, spec in runs]
        for future in futures:
            print(future.result(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
