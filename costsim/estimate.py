"""``python -m costsim.estimate SPEC``: cost of a schedule, per stage and in total.

SPEC is a .yaml, .json or .toml schedule (``python -m costsim.schema`` shows the
format; examples/ has some). Prints a table, the final model's parameters and the loss
model's prediction; ``--json`` prints one JSON object whose ``loss`` holds the predicted
curve (``--loss-points`` per stage, each stage's last step included) with its interval.

A known model instead of a spec: ``--model PRESET`` (a shipped published config) or
``--hf-config PATH`` (a Hugging Face config.json, or a model folder holding one) with
``--tokens N`` estimates training that model from scratch on N tokens: one stage,
about --batch-tokens tokens a step in whole sequences, the largest micro-batch that
fits the GPU. With a SPEC, --model or --hf-config replaces the spec's model (its stages
keep their layers). --seq-len overrides the model's sequence length (a preset's is its
maximum context). Example: python -m costsim.estimate --model gpt2 --tokens 1e9 --gpu h100-sxm
"""

from __future__ import annotations

import argparse
import json
import sys

from costsim.engine import ScheduleEstimate, divisors, estimate
from costsim.errors import CostsimError, cli_errors
from costsim.hardware import gpu_preset_names
from costsim.loss import load_loss_profile, loss_profile_names, profile_for_spec
from costsim.loss_report import LossReport, loss_report
from costsim.models import ExternalModel, from_hf_config, load_preset, preset_names
from costsim.profile import profile_names
from costsim.spec import ScheduleSpec, load_spec, parse_spec
from costsim.text import binary_bytes, duration, si, table
from costsim.trainers import trainer_names

# Tokens a step when the CLI builds the spec: 2^19, the study's (and GPT-2/3 small's) batch.
DEFAULT_BATCH_TOKENS = 2**19


def render_table(result: ScheduleEstimate, tokens_per_step: int) -> str:
    header = ("#", "stage", "layers", "d", "train", "tokens", "steps", "counted/step", "model/step",
              "step time", "time", "cost $", "peak mem", "fits")
    rows = [header]
    for s in result.stages:
        rows.append((
            str(s.index), s.name or "", str(s.layers), str(s.d_model), f"{s.train} ({s.n_trainable_blocks})",
            si(s.tokens), str(s.steps), si(s.flops_counted_per_step), si(s.flops_model_per_step),
            f"{s.step_time_s * 1e3:.1f} ms", duration(s.time_s), f"{s.cost_usd:,.2f}",
            binary_bytes(s.peak_memory_bytes), "yes" if s.fits_in_memory else "NO",
        ))
    t = result.total
    rows.append(("", "total", "", "", "", si(t.tokens), "", "", "", "", duration(t.time_s), f"{t.cost_usd:,.2f}",
                 binary_bytes(t.peak_memory_bytes), "yes" if t.fits_in_memory else "NO"))
    lines = table(rows, left=(1, 4), rule_before_last=True)
    first = result.stages[0]
    layouts = {(s.tensor_parallel, s.pipeline_parallel, s.data_parallel) for s in result.stages}
    context = f" x context {first.context_parallel}" if first.context_parallel > 1 else ""
    layout = (f" (tensor {first.tensor_parallel}{context} x pipeline {first.pipeline_parallel} x data "
              f"{first.data_parallel})"
              if len(layouts) == 1 and first.tensor_parallel * first.pipeline_parallel * first.context_parallel > 1
              else " (a layout a stage)" if len(layouts) > 1 else "")
    replicated = first.data_parallel * first.context_parallel
    hybrid = (f" (hybrid: sharded over {first.shard_group}, {replicated // first.shard_group} replicas)"
              if first.shard_group < replicated else "")
    title = (f"{result.name or 'schedule'}: {result.n_gpus} x {result.gpu}{layout}, {result.precision}, "
             f"{result.parallelism}{hybrid}, calibration '{result.calibration}', trainer '{result.trainer_profile}'")
    summary = (f"total: {si(t.flops_counted)}FLOP counted, {si(t.flops_model)}FLOP model, "
               f"{t.study_units:.4g} c (study units)")
    final = result.stages[-1]
    params = (f"parameters (final stage): {final.params_total:,} total, {final.params_non_embedding:,} "
              f"non-embedding, {final.params_trainable:,} trainable")
    notes = [f"  stage {s.index}: tensor {s.tensor_parallel}{context} x pipeline {s.pipeline_parallel} x data "
             f"{s.data_parallel}" for s in result.stages if len(layouts) > 1]
    notes += [f"  stage {s.index} does not fit: try {s.fit_suggestion}" for s in result.stages
              if not s.fits_in_memory]
    notes += [f"  stage {s.index}: {s.tokens:g} tokens is not a whole number of {tokens_per_step}-token steps; "
              f"costed as {s.steps} step{'s' if s.steps > 1 else ''} ({s.steps * tokens_per_step:g} tokens)"
              for s in result.stages if s.tokens % tokens_per_step]
    return "\n".join([title, *lines, summary, params, *notes])


def render_loss(report: LossReport) -> str:
    f = report.final
    line = (f"loss ({report.profile}): final {f.loss:.4f} [{f.lower:.4f}, {f.upper:.4f}] "
            f"({report.interval:.0%} interval)")
    return line + (f"\n{report.domain_note}" if report.domain_note else "")


def external_model(args: argparse.Namespace) -> ExternalModel | None:
    """The model --model or --hf-config names (with --seq-len on top), or None."""
    overrides = {"seq_len": args.seq_len} if args.seq_len is not None else None
    if args.model is not None:
        return load_preset(args.model, overrides)
    if args.hf_config is not None:
        return from_hf_config(args.hf_config, overrides)
    return None


def full_training_spec(name: str, external: ExternalModel, tokens: float, hardware: dict,
                       batch_tokens: int = DEFAULT_BATCH_TOKENS, training: dict | None = None) -> ScheduleSpec:
    """One stage training the whole model on ``tokens``: about ``batch_tokens`` a step
    in whole sequences (the same number on every GPU), with the largest micro-batch that
    fits in memory, or one sequence (and the table's advice) if none does."""
    n_gpus = max(hardware.get("n_gpus", 1), 1)  # fewer than 1: the spec refuses hardware.n_gpus itself
    per_gpu = max(1, round(batch_tokens / external.model.seq_len / n_gpus))
    spec = parse_spec({
        "name": f"{name}: full training", "model": external.model.model_dump(exclude_none=True),
        "training": {"micro_batch_size": 1, "batch_size": per_gpu * n_gpus, **(training or {})}, "hardware": hardware,
        "stages": [{"layers": external.layers, "tokens": tokens, "name": "full"}],
    })
    for micro in divisors(per_gpu)[:-1]:  # largest first; 1 is the fallback
        candidate = spec.model_copy(update={"training": spec.training.model_copy(
            update={"micro_batch_size": micro})})
        if estimate(candidate).total.fits_in_memory:
            return candidate
    return spec


def _spec(args: argparse.Namespace, hardware: dict, training: dict) -> ScheduleSpec:
    """The spec to estimate: the file (with any model or hardware flags applied), or one
    built from --model/--hf-config and --tokens."""
    external = external_model(args)
    if args.spec is None:
        if external is None:
            raise CostsimError("give a SPEC file, or --model PRESET (or --hf-config PATH) with --tokens N")
        if args.tokens is None:
            raise CostsimError("--tokens is needed without a SPEC: how many tokens to train the model on")
        return full_training_spec(args.model or args.hf_config, external, args.tokens, hardware,
                                  args.batch_tokens or DEFAULT_BATCH_TOKENS, training)
    if args.tokens is not None or args.batch_tokens is not None:
        raise CostsimError("--tokens and --batch-tokens apply without a SPEC; a spec's stages give its tokens and "
                           "its training the batch")
    spec = load_spec(args.spec)
    if external is None and args.seq_len is None and not hardware and not training:
        return spec
    data = spec.model_dump(exclude_none=True)
    if external is not None:
        data["model"] = external.model.model_dump(exclude_none=True)
    elif args.seq_len is not None:
        data["model"]["seq_len"] = args.seq_len
    data["hardware"] = {**data["hardware"], **hardware}
    data["training"] = {**data["training"], **training}
    return parse_spec(data)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costsim.estimate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", nargs="?", help="schedule spec file (.yaml, .yml, .json, .toml); optional with "
                        "--model or --hf-config and --tokens")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="PRESET", help=f"a shipped model ({', '.join(preset_names())})")
    model.add_argument("--hf-config", metavar="PATH", help="a Hugging Face config.json (or a folder holding one) "
                       "of a gpt2, gpt_neox, llama, mistral or qwen2 model")
    parser.add_argument("--tokens", type=float, help="without a SPEC: tokens to train the model on")
    parser.add_argument("--batch-tokens", type=int, help=f"without a SPEC: tokens a step (default "
                        f"{DEFAULT_BATCH_TOKENS:,}), rounded to whole sequences")
    parser.add_argument("--seq-len", type=int, help="override the model's sequence length")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--gpu", help=f"override hardware.gpu ({', '.join(gpu_preset_names())})")
    parser.add_argument("--n-gpus", type=int, help="override hardware.n_gpus")
    parser.add_argument("--calibration", help=f"time/memory profile ({', '.join(profile_names())} or a .json path)")
    parser.add_argument("--parallelism", choices=("ddp", "zero1", "zero2", "zero3"),
                        help="override training.parallelism (zero3: FSDP full shard)")
    parser.add_argument("--tensor-parallel", type=int, help="override training.tensor_parallel (GPUs splitting "
                        "each block)")
    parser.add_argument("--pipeline-parallel", type=int, help="override training.pipeline_parallel (pipeline ranks)")
    parser.add_argument("--context-parallel", type=int, help="override training.context_parallel (GPUs splitting "
                        "each sequence)")
    parser.add_argument("--shard-group", type=int, help="override training.shard_group (hybrid sharding: the "
                        "GPUs ZeRO shards over, of those holding the same weights)")
    parser.add_argument("--trainer-profile", help=f"override training.trainer_profile: what the training framework "
                        f"keeps on each GPU ({', '.join(trainer_names())} or a .json path)")
    parser.add_argument("--loss-profile", help=f"loss model ({', '.join(loss_profile_names())} or a .json path; "
                        "default: the one fitted for the spec's vocabulary, else chinchilla)")
    parser.add_argument("--loss-points", type=int, default=64, help="predicted loss points per stage (default 64)")
    args = parser.parse_args(argv)
    if args.loss_points < 1:
        raise CostsimError(f"--loss-points must be a positive integer, got {args.loss_points}")
    if args.batch_tokens is not None and args.batch_tokens < 1:
        raise CostsimError(f"--batch-tokens must be a positive integer, got {args.batch_tokens}")
    hardware = {k: v for k, v in (("gpu", args.gpu), ("n_gpus", args.n_gpus), ("calibration", args.calibration))
                if v is not None}
    training = {k: v for k, v in (("parallelism", args.parallelism), ("trainer_profile", args.trainer_profile),
                                  ("tensor_parallel", args.tensor_parallel),
                                  ("pipeline_parallel", args.pipeline_parallel),
                                  ("context_parallel", args.context_parallel), ("shard_group", args.shard_group))
                if v is not None}
    spec = _spec(args, hardware, training)
    result = estimate(spec)
    profile = load_loss_profile(args.loss_profile) if args.loss_profile else profile_for_spec(spec)
    loss = loss_report(spec, profile, args.loss_points)
    if args.json:
        print(json.dumps({**result.model_dump(), "loss": loss.model_dump()}, indent=1))
        if loss.domain_note:
            print(loss.domain_note, file=sys.stderr)
    else:
        print(render_table(result, spec.training.batch_size * spec.model.seq_len))
        print(render_loss(loss))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
