"""``python -m costsim.calibrate``: fit a time/memory profile to measured steps.

Fits on part of the cases, reports the error on the held-out rest, and writes the
profile as JSON to ``--out`` (default ``./NAME.json``; nothing is written inside the
installed package). Use it with ``--calibration ./NAME.json``.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from costsim.calibration import fit_profile, load_measurements
from costsim.errors import SpecError, cli_errors
from costsim.hardware import gpu_preset_names, load_gpu
from costsim.paths import output_file

DEFAULT_MEASUREMENTS = resources.files("costsim") / "data" / "measurements" / "h200_sweep_2026-11-28.json"


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costsim.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("measurements", nargs="?", default=str(DEFAULT_MEASUREMENTS),
                        help="JSON of measured steps (default: the shipped H200 sweep)")
    parser.add_argument("--gpu", default="h200", help=f"GPU preset the steps ran on ({', '.join(gpu_preset_names())})")
    parser.add_argument("--name", default=None, help="profile name (default: the GPU preset name)")
    parser.add_argument("--holdout-every", type=int, default=3, help="hold out every N-th case (default 3)")
    parser.add_argument("--out", default=None, help="where to write the profile JSON (default ./NAME.json)")
    args = parser.parse_args(argv)
    if args.gpu not in gpu_preset_names():
        raise SpecError(f"--gpu: unknown GPU {args.gpu!r}; use one of {', '.join(gpu_preset_names())}")
    if not Path(args.measurements).is_file():
        raise SpecError(f"{args.measurements}: no such measurements file")
    if args.holdout_every < 2:
        raise SpecError("--holdout-every must be at least 2 (something has to be fitted and something held out)")
    name = args.name or args.gpu
    out = output_file(args.out or f"{name}.json", "--out")
    info, cases = load_measurements(args.measurements)
    profile = fit_profile(cases, load_gpu(args.gpu), name=name, device=info.get("gpu", args.gpu),
                          holdout_every=args.holdout_every, source=Path(args.measurements).name)
    out.write_text(json.dumps(profile.model_dump(), indent=1) + "\n")
    held = profile.holdout_report["holdout"]
    print(f"fitted {name} on {profile.holdout_report['n_fit']} cases; held out {profile.holdout_report['n_holdout']}")
    for key, row in held.items():
        print(f"  {key:15s} held-out |error| median {row['median_abs_rel_error']:.1%}, "
              f"worst {row['worst_abs_rel_error']:.1%} ({row['worst_case']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
