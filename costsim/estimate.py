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


def _si(value: float, unit: str = "") -> str:
    """Three significant digits and an SI prefix: 9.996e17 is '1EFLOP', not '1e+03PFLOP'."""
    rounded = float(f"{value:.3g}")  # round first, so the prefix is chosen for the printed value
    for scale, prefix in ((1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"),
                          (1e3, "k")):
        if abs(rounded) >= scale:
            return f"{rounded / scale:.3g}{prefix}{unit}"
    return f"{rounded:.3g}{unit}"


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.2f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3g} s"


def render_table(result: ScheduleEstimate) -> str:
    header = ("#", "stage", "layers", "d", "train", "tokens", "steps", "counted/step", "model/step",
              "step time", "time", "cost $", "peak mem", "fits")
    rows = [header]
    for s in result.stages:
        rows.append((
            str(s.index), s.name or "", str(s.layers), str(s.d_model), f"{s.train} ({s.n_trainable_blocks})",
            _si(s.tokens), str(s.steps), _si(s.flops_counted_per_step), _si(s.flops_model_per_step),
            f"{s.step_time_s * 1e3:.1f} ms", _duration(s.time_s), f"{s.cost_usd:,.2f}",
            f"{s.peak_memory_bytes / 2**30:.1f} GiB", "yes" if s.fits_in_memory else "NO",
        ))
    t = result.total
    rows.append(("", "total", "", "", "", _si(t.tokens), "", "", "", "", _duration(t.time_s), f"{t.cost_usd:,.2f}",
                 f"{t.peak_memory_bytes / 2**30:.1f} GiB", "yes" if t.fits_in_memory else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i not in (1, 4) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    title = (f"{result.name or 'schedule'}: {result.n_gpus} x {result.gpu}, {result.precision}, "
             f"{result.parallelism}, calibration '{result.calibration}'")
    summary = (f"total: {_si(t.flops_counted)}FLOP counted, {_si(t.flops_model)}FLOP model, "
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
