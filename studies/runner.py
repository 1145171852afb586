"""Training one spec for real from a study: ``python -m validate.run`` in a subprocess.

A subprocess per run keeps each run's memory and threads its own, and a study's
process torch-free. ``threads`` sets the run's torch (OpenMP) threads: with several
runs on one machine, their sum should not exceed the cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from costsim.errors import CostsimError
from costsim.spec import ScheduleSpec, parse_spec


def train_spec(spec: ScheduleSpec | dict, db: Path, workdir: Path, *, threads: int = 1, device: str = "cpu",
               eval_every: int = 25, eval_batches: int = 8, label: str | None = None, data: str | None = None) -> dict:
    """Train ``spec`` into the store ``db``; returns validate.run's JSON summary (run_id, steps, ...).
    ``data``: validate.run's ``--data`` source (None: its default, the stdlib's bytes)."""
    body = spec.model_dump(mode="json", exclude_none=True) if isinstance(spec, ScheduleSpec) else spec
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"spec-{os.getpid()}-{abs(hash(json.dumps(body, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(body))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, "-m", "validate.run", str(path), "--db", str(db), "--device", device, "--no-progress",
         "--json", "--eval-every", str(max(1, eval_every)), "--eval-batches", str(max(1, eval_batches)),
         "--checkpoint-every", "1000000", "--run-dir", str(workdir / "runs"), *(["--data", data] if data else [])],
        env=env, capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["failed with no message"])[-1]
        raise CostsimError(f"training {label or body.get('name') or path.name} failed: {last}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def complete_run(db: Path, spec: ScheduleSpec) -> str | None:
    """The newest complete run in ``db`` of exactly ``spec`` under any name, if any. Specs are
    compared parsed, not as stored text, so a run stored before a field with a default existed
    still matches the same spec today; the name is a label (a check's role: the same model
    trained as one budget's runner-up and another profile's pick), not what was trained."""
    if not db.exists():
        return None
    from costsim.store import Store

    rows = Store(db).query("SELECT run_id, spec_json FROM run_summary WHERE status = 'complete' "
                           "ORDER BY started_at DESC, run_id DESC")
    for row in rows:
        try:
            stored = parse_spec(json.loads(row["spec_json"]))
        except (CostsimError, ValueError):
            continue  # a run of a spec this version cannot read is not this spec
        if stored.model_copy(update={"name": spec.name}) == spec:
            return row["run_id"]
    return None

