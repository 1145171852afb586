"""``python -m validate.run SPEC``: train a schedule for real and store what it measured.

Examples:
  python -m validate.run examples/tiny_three_stage.yaml              # seconds on a laptop CPU
  python -m validate.run examples/paper_s4.yaml --tiny               # any spec, laptop-sized
  python -m validate.run plan.yaml --device cuda --compile --max-steps 500
  python -m validate.run --resume RUN_ID                             # continue a killed run
  torchrun --nproc-per-node 8 -m validate.run plan.yaml              # data parallel

Everything lands in the DuckDB store (--db): runs, stages (measured next to predicted),
steps, evals, events. Query it with the duckdb CLI or ``python -m validate.run --list``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from costsim.errors import CostsimError, cli_errors
from costsim.spec import load_spec, parse_spec
from costsim.store import Store
from costsim.text import binary_bytes, si, table


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m validate.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", help="schedule spec (.yaml/.json/.toml)")
    p.add_argument("--db", default="costsim.duckdb", help="DuckDB store (default ./costsim.duckdb)")
    p.add_argument("--data", default=None,
                   help="token source: stdlib (default, offline byte corpus), a text file/dir, a dir with "
                        "train.bin/val.bin, or gpt2:<text path>")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model (recompiled after each growth)")
    p.add_argument("--cuda-graphs", action="store_true", help="torch.compile with CUDA graphs (mode reduce-overhead)")
    p.add_argument("--tiny", action="store_true", help="shrink the model and tokens to run in seconds on a CPU")
    p.add_argument("--max-steps", type=int, help="cap the total steps (stages shrink proportionally)")
    p.add_argument("--tokens-scale", type=float, default=1.0, help="multiply every stage's tokens")
    p.add_argument("--eval-every", type=int, default=25, help="steps between validation losses")
    p.add_argument("--eval-batches", type=int, default=4, help="held-out micro-batches per validation loss")
    p.add_argument("--checkpoint-every", type=int, default=25, help="steps between checkpoints")
    p.add_argument("--run-dir", default="runs", help="where checkpoints go (default ./runs)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a run from its last checkpoint")
    p.add_argument("--list", action="store_true", help="list stored runs and their status, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: $OMP_NUM_THREADS if set, else the CPUs this process may "
                        "use); with several runs on one machine give each cores / runs")
    p.add_argument("--json", action="store_true", help="print one JSON line (run_id, steps, tokens, FLOPs, final "
                   "validation loss) instead of the report")
    return p


def _options(args):
    from validate.trainer import RunOptions

    for name in ("max_steps", "eval_every", "eval_batches", "checkpoint_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CostsimError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if not args.tokens_scale > 0:
        raise CostsimError(f"--tokens-scale must be positive, got {args.tokens_scale}")
    if args.threads is not None and args.threads < 1:
        raise CostsimError(f"--threads must be a positive integer, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads or default_threads())
    return RunOptions(device=args.device, compile=args.compile, cuda_graphs=args.cuda_graphs, max_steps=args.max_steps,
                      tokens_scale=args.tokens_scale, eval_every=args.eval_every, eval_batches=args.eval_batches,
                      checkpoint_every=args.checkpoint_every, run_dir=Path(args.run_dir),
                      progress=not args.no_progress)


def default_threads() -> int:
    """$OMP_NUM_THREADS when set, else the CPUs this process may run on (a cgroup or
    taskset limit included), so that runs sharing a machine do not oversubscribe it."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _list(store: Store) -> int:
    rows = store.query("SELECT run_id, started_at, device FROM run_summary ORDER BY started_at")
    for row in rows:
        status = store.run_status(row["run_id"])
        print(f"{row['run_id']}  {status:10s}  {row['started_at']:%Y-%m-%d %H:%M}  {row['device']}")
    return 0


def _relative(measured: float, predicted: float | None) -> str:
    if predicted is None or predicted != predicted:  # None or NaN: nothing to compare with
        return "no prediction"
    if measured == predicted:
        return "exact"
    return f"{(measured - predicted) / predicted:+.1%}"


def _report(store: Store, run_id: str, on_gpu: bool) -> str:
    """The stages, measured next to predicted, as the store holds them."""
    rows = [("stage", "layers", "d_model", "steps", "counted FLOPs/step", "peak allocated" if on_gpu
             else "saved activations", *(("peak reserved",) if on_gpu else ()), "step time")]
    for r in store.query("SELECT * FROM stages WHERE run_id = ? ORDER BY stage_index", [run_id]):
        flops, memory, time = r["flops_counted_per_step"], r["peak_memory_bytes"], r["step_time_s"]
        rows.append((
            str(r["stage_index"]), str(r["layers"]), str(r["d_model"]), str(r["steps"]),
            f"{si(flops)} ({_relative(flops, r['flops_counted_predicted_per_step'])})",
            f"{binary_bytes(memory)} ({_relative(memory, r['peak_memory_predicted_bytes'])})",
            *((f"{binary_bytes(r['peak_reserved_bytes'])} "
               f"({_relative(r['peak_reserved_bytes'], r['peak_reserved_predicted_bytes'])})",) if on_gpu else ()),
            f"{time * 1e3:.1f} ms ({_relative(time, r['step_time_predicted_s'])})"))
    note = "in brackets: measured against costsim's prediction"
    if not on_gpu:
        note += "; it predicts GPU step times only"
    return "\n".join([*table(rows), note])


def _loss_check(store: Store, run_id: str, spec, steps: list[int]) -> str:
    """The loss model's prediction for the run's last evaluation, read back from the store
    (where the trainer put it beside the measurement), next to what it measured."""
    from costsim.loss import profile_for_spec
    from costsim.loss_report import slow_start_note, spec_domain_warning

    # the whole curve once: its last evaluation for the line, all of it for the slow-start note
    rows = store.query(
        "SELECT e.val_loss, p.profile_name, p.interval_coverage, p.val_loss_predicted, p.val_loss_predicted_lower, "
        "p.val_loss_predicted_upper FROM evals AS e JOIN loss_predictions AS p USING (run_id, step) "
        "WHERE run_id = ? ORDER BY step", [run_id])
    if not rows:
        return "loss model: no prediction stored for this run's evaluations"
    r = rows[-1]
    measured, predicted = r["val_loss"], r["val_loss_predicted"]
    inside = r["val_loss_predicted_lower"] <= measured <= r["val_loss_predicted_upper"]
    line = (f"loss model ({r['profile_name']}): final validation loss {predicted:.4f} "
            f"[{r['val_loss_predicted_lower']:.4f}, {r['val_loss_predicted_upper']:.4f}], measured {measured:.4f} "
            f"({measured - predicted:+.4f}, {'inside' if inside else 'outside'} the "
            f"{r['interval_coverage']:.0%} interval)")
    notes = [spec_domain_warning(spec, profile_for_spec(spec), steps)]
    if len(spec.stages) == 1:  # a model from scratch: did it start as the law says?
        notes.append(slow_start_note([c["val_loss"] for c in rows], [c["val_loss_predicted"] for c in rows],
                                     [c["val_loss_predicted_upper"] for c in rows]))
    return "\n".join([line, *(note for note in notes if note)])


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store = Store(args.db)
    if args.list:
        return _list(store)
    options = _options(args)  # imports torch: a missing torch is one line from cli_errors
    from validate.data import DataError, open_dataset
    from validate.trainer import Trainer, tiny

    try:
        if args.resume:
            checkpoint = options.run_dir / args.resume / "checkpoint.pt"
            if not checkpoint.is_file():
                raise CostsimError(
                    f"--resume {args.resume}: no checkpoint at {checkpoint}; check --run-dir and the run id")
            import torch

            payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
            spec = parse_spec(payload["spec"])
            dataset = open_dataset(args.data, vocab_size=None)
            trainer = Trainer(spec, dataset, store, options, run_id=args.resume)
            trainer.load_checkpoint()
            store.record_status(trainer.run_id, "running")
            state = trainer.train(resumed=True)
        else:
            if not args.spec:
                raise CostsimError("give a SPEC file to train, or --resume RUN_ID, or --list")
            spec = load_spec(args.spec)
            dataset = open_dataset(args.data)
            if args.tiny:
                spec = tiny(spec, dataset.vocab_size)
            trainer = Trainer(spec, dataset, store, options)
            trainer.start()
            state = trainer.train()
    except DataError as exc:
        raise CostsimError(str(exc)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        store.flush()
        summary = {"run_id": trainer.run_id, "steps": state.step, "tokens": state.tokens,
                   "flops_counted": state.flops_counted, "final_val_loss": trainer.last_val_loss}
        if args.json:
            print(json.dumps(summary))
        else:
            print(f"run {trainer.run_id}: {state.step} steps, {state.tokens:,.0f} tokens, "
                  f"{state.flops_counted:.3g} counted FLOPs, final validation loss {trainer.last_val_loss:.4f}; "
                  f"stored in {args.db}")
            print(_loss_check(store, trainer.run_id, spec, trainer.steps))
            print(_report(store, trainer.run_id, trainer.device.type == "cuda"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
