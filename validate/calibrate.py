"""``python -m validate.calibrate``: fit time/memory profiles from stored measurements.

Reads ``cost_measurements`` (written by ``python -m validate.measure``, or imported from
a sweep file with ``--import FILE``), fits one profile per device kind on part of the
cases, reports each case's error on the held-out rest, and saves the profile as a data
file (``costsim.estimate --calibration NAME`` then uses it) and as a row of the
``calibrations`` table.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

from costsim.calibration import MeasuredStep, fit_profile, load_measurements, measured_step
from costsim.errors import CostsimError, cli_errors
from costsim.hardware import gpu_preset_names, load_gpu, preset_for_device
from costsim.store import Store


def import_rows(path: str, device: str | None = None) -> list[dict]:
    """A sweep JSON (the shared calibration format) as cost_measurements rows."""
    info, cases = load_measurements(path)
    device = device or info.get("gpu", "unknown")
    return [{
        # numbered so that ordering by id keeps the file's order (the holdout split follows it)
        "measurement_id": f"{Path(path).name}:{i:04d}:{c.name}", "device": device, "name": c.name, "vocab_size": c.V,
        "d_model": c.d, "n_heads": c.h, "n_layers": c.L, "seq_len": c.T, "micro_batch_size": c.B,
        "frozen_blocks": c.frozen, "freeze_embeddings": c.freeze_emb, "tied_embeddings": c.tied, "recompute": c.ckpt,
        "mlp": c.mlp, "n_kv_heads": c.n_kv_heads, "precision": c.precision,
        "counted_flops": float(c.counted_flops or 0), "step_time_s": c.step_s_median,
        "peak_alloc_bytes": c.peak_alloc_bytes, "peak_reserved_bytes": c.peak_reserved_bytes,
        "source": Path(path).name, "record_id": f"import:{Path(path).name}:{c.name}",
    } for i, c in enumerate(cases)]


def cases_from_rows(rows: list[dict]) -> list[MeasuredStep]:
    """GPU rows only: CPU rows carry no device memory to fit."""
    return [measured_step(r) for r in rows if r["peak_alloc_bytes"]]


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validate.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="costsim.duckdb")
    parser.add_argument("--import", dest="import_file", help="first import a sweep JSON into cost_measurements")
    parser.add_argument("--device", help="only this device kind (substring of the stored device name)")
    parser.add_argument("--holdout-every", type=int, default=3, help="hold out every N-th case (default 3)")
    parser.add_argument("--out-dir", default=".", help="where profile JSONs go (default: this folder; use one "
                        "with --calibration PATH)")
    args = parser.parse_args(argv)
    store = Store(args.db)
    if args.import_file:
        if not Path(args.import_file).is_file():
            raise CostsimError(f"--import {args.import_file}: no such file")
        rows = import_rows(args.import_file)
        store.append("cost_measurements", rows)
        print(f"imported {len(rows)} measurements from {args.import_file}")
    rows = store.query("SELECT * FROM cost_measurements ORDER BY measurement_id")
    devices = sorted({r["device"] for r in rows if r["peak_alloc_bytes"]})
    if args.device:
        devices = [d for d in devices if args.device in d]
    if not devices:
        raise CostsimError("no GPU measurements stored; run python -m validate.measure on a GPU, or "
                           "--import a sweep JSON")
    out_dir = Path(args.out_dir)
    if not out_dir.is_dir():
        raise CostsimError(f"--out-dir {args.out_dir}: no such folder; create it or pick another")
    for device in devices:
        preset = preset_for_device(device)
        if preset is None or preset not in gpu_preset_names():
            print(f"skipping {device}: no GPU preset describes it (add one under costsim/data/gpus/)")
            continue
        cases = cases_from_rows([r for r in rows if r["device"] == device])
        if len(cases) < 2 * args.holdout_every:
            print(f"skipping {device}: {len(cases)} cases are too few to fit and hold out")
            continue
        name = re.sub(r"[^a-z0-9]+", "-", preset.lower())
        profile = fit_profile(cases, load_gpu(preset), name=name, device=device, holdout_every=args.holdout_every,
                              source=f"python -m validate.calibrate --db {args.db}")
        (out_dir / f"{name}.json").write_text(json.dumps(profile.model_dump(), indent=1) + "\n")
        store.append("calibrations", [{
            "profile_name": name, "device": device, "created_at": datetime.now(UTC),
            "params_json": profile.model_dump_json(exclude={"holdout_report"}),
            "holdout_report_json": json.dumps(profile.holdout_report), "record_id": uuid.uuid4().hex}])
        held = profile.holdout_report["holdout"]
        print(f"{device}: profile '{name}' from {profile.holdout_report['n_fit']} cases, "
              f"{profile.holdout_report['n_holdout']} held out")
        for key, row in held.items():
            print(f"  {key:15s} |error| median {row['median_abs_rel_error']:.1%}, "
                  f"worst {row['worst_abs_rel_error']:.1%} ({row['worst_case']})")
    store.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
