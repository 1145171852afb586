"""``python -m costsim.estimate SPEC``: cost of a schedule, per stage and in total.

SPEC is a .yaml, .json or .toml schedule (``python -m costsim.schema`` shows the
format; examples/ has some). Prints a table; ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json

from costsim.engine import ScheduleEstimate, estimate
from costsim.errors import cli_errors
from costsim.hardware import gpu_preset_names
from costsim.profile import profile_names
from costsim.spec import load_spec, parse_spec
from costsim.text import binary_bytes, duration, si, table


def render_table(result: ScheduleEstimate) -> str:
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
    return "\n".join([title, *lines, summary, *notes])


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costsim.estimate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="schedule spec file (.yaml, .yml, .json, .toml)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--gpu", help=f"override hardware.gpu ({', '.join(gpu_preset_names())})")
    parser.add_argument("--n-gpus", type=int, help="override hardware.n_gpus")
    parser.add_argument("--calibration", help=f"time/memory profile ({', '.join(profile_names())} or a .json path)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    overrides = {k: v for k, v in (("gpu", args.gpu), ("n_gpus", args.n_gpus), ("calibration", args.calibration))
                 if v is not None}
    if overrides:
        data = spec.model_dump(exclude_none=True)
        data["hardware"] = {**data["hardware"], **overrides}
        spec = parse_spec(data)
    result = estimate(spec)
    print(json.dumps(result.model_dump(), indent=1) if args.json else render_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
