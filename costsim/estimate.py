"""``python -m costsim.estimate SPEC``: cost of a schedule, per stage and in total.

SPEC is a .yaml, .json or .toml schedule (``python -m costsim.schema`` shows the
format; examples/ has some). Prints a table and the loss model's prediction; ``--json``
prints one JSON object whose ``loss`` holds the predicted curve (``--loss-points`` per
stage, each stage's last step included) with its interval.
"""

from __future__ import annotations

import argparse
import json
import sys

from costsim.engine import ScheduleEstimate, estimate
from costsim.errors import CostsimError, cli_errors
from costsim.hardware import gpu_preset_names
from costsim.loss import load_loss_profile, loss_profile_names, profile_for_spec
from costsim.loss_report import LossReport, loss_report
from costsim.profile import profile_names
from costsim.spec import load_spec, parse_spec
from costsim.text import binary_bytes, duration, si, table


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
    title = (f"{result.name or 'schedule'}: {result.n_gpus} x {result.gpu}, {result.precision}, "
             f"{result.parallelism}, calibration '{result.calibration}'")
    summary = (f"total: {si(t.flops_counted)}FLOP counted, {si(t.flops_model)}FLOP model, "
               f"{t.study_units:.4g} c (study units)")
    notes = [f"  stage {s.index} does not fit: try {s.fit_suggestion}" for s in result.stages if not s.fits_in_memory]
    notes += [f"  stage {s.index}: {s.tokens:g} tokens is not a whole number of {tokens_per_step}-token steps; "
              f"costed as {s.steps} step{'s' if s.steps > 1 else ''} ({s.steps * tokens_per_step:g} tokens)"
              for s in result.stages if s.tokens % tokens_per_step]
    return "\n".join([title, *lines, summary, *notes])


def render_loss(report: LossReport) -> str:
    f = report.final
    line = (f"loss ({report.profile}): final {f.loss:.4f} [{f.lower:.4f}, {f.upper:.4f}] "
            f"({report.interval:.0%} interval)")
    return line + (f"\n{report.domain_note}" if report.domain_note else "")


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costsim.estimate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="schedule spec file (.yaml, .yml, .json, .toml)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--gpu", help=f"override hardware.gpu ({', '.join(gpu_preset_names())})")
    parser.add_argument("--n-gpus", type=int, help="override hardware.n_gpus")
    parser.add_argument("--calibration", help=f"time/memory profile ({', '.join(profile_names())} or a .json path)")
    parser.add_argument("--loss-profile", help=f"loss model ({', '.join(loss_profile_names())} or a .json path; "
                        "default: the one fitted for the spec's vocabulary, else chinchilla)")
    parser.add_argument("--loss-points", type=int, default=64, help="predicted loss points per stage (default 64)")
    args = parser.parse_args(argv)
    if args.loss_points < 1:
        raise CostsimError(f"--loss-points must be a positive integer, got {args.loss_points}")
    spec = load_spec(args.spec)
    overrides = {k: v for k, v in (("gpu", args.gpu), ("n_gpus", args.n_gpus), ("calibration", args.calibration))
                 if v is not None}
    if overrides:
        data = spec.model_dump(exclude_none=True)
        data["hardware"] = {**data["hardware"], **overrides}
        spec = parse_spec(data)
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
