"""Training curves the loss model is fitted on: read from a store, or from the shipped dataset.

A run is its spec, the steps each stage really ran, and its validation losses (with the
tokens at each). ``costsim/data/corpus/growth_corpus.json`` ships the curves of
``python -m studies.growth_corpus`` so a fit reproduces without re-training; its runs
carry their schedule family (``[family]`` at the end of the spec name), which
leave-one-schedule-out cross-validation uses to tell full training from growth.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from costsim.errors import CostsimError
from costsim.loss import StagePlan, stage_plans
from costsim.spec import ScheduleSpec, parse_spec

DATASET = "growth_corpus"
_FAMILY = re.compile(r"\s*\[([^\]]+)\]\s*$")


@dataclass(frozen=True)
class RunData:
    run_id: str
    name: str
    spec: ScheduleSpec
    steps: list[int]
    tokens: np.ndarray  # at each validation loss
    loss: np.ndarray
    holdout: bool = False
    family: str = ""

    @cached_property
    def plans(self) -> list[StagePlan]:
        return stage_plans(self.spec, self.steps)

    @property
    def final_shape(self) -> tuple:
        return final_shape(self.spec)

    @property
    def is_full_training(self) -> bool:
        return len(self.spec.stages) == 1

    @property
    def schedule(self) -> str:
        """The run's name without its seed: repeats of one schedule share it."""
        return self.name.rsplit(" seed", 1)[0]

    @property
    def seed(self) -> int:
        return self.spec.training.seed


def final_shape(spec: ScheduleSpec) -> tuple:
    """(d_model, layers, mlp, vocab) of a schedule's last stage."""
    d_model, _, _ = spec.stage_width(spec.stages[-1])
    return (d_model, spec.stages[-1].layers, spec.model.mlp, spec.model.vocab_size)


def baseline_setup(spec: ScheduleSpec) -> tuple:
    """What a growth run and its full-training baseline share: the final shape, the batch and
    the LR schedule (kind and peak)."""
    t = spec.training
    return (final_shape(spec), t.batch_size, t.lr_schedule.kind, t.lr_schedule.lr)


def baselines_for(run: RunData, runs: list[RunData]) -> list[RunData]:
    """Every full training of the run's final size at its batch and LR schedule (kind and peak)."""
    return [r for r in runs if r.is_full_training and r is not run
            and baseline_setup(r.spec) == baseline_setup(run.spec)]


def baseline_for(run: RunData, runs: list[RunData]) -> RunData | None:
    """The run's baseline (``baselines_for``), of the same seed if there is one."""
    candidates = baselines_for(run, runs)
    same_seed = [r for r in candidates if r.seed == run.seed]
    return (same_seed or candidates or [None])[0]


def usual_batch(runs: list[RunData]) -> int:
    """The batch (sequences) most of ``runs`` were trained at (the smaller one on a tie)."""
    counts = Counter(r.spec.training.batch_size for r in runs)
    return max(counts, key=lambda b: (counts[b], -b))


def batch_partner(run: RunData, runs: list[RunData]) -> RunData | None:
    """For full training at a batch its shape was not mostly trained at: full training of the
    same shape, LR schedule and seed at the batch most of that shape's runs used (None
    otherwise). The pair asks what a search asks, which batch trains this model better."""
    if not run.is_full_training:
        return None
    kin = [r for r in runs if r.is_full_training and r.final_shape == run.final_shape
           and r.spec.training.lr_schedule.kind == run.spec.training.lr_schedule.kind]
    usual = usual_batch(kin)
    if run.spec.training.batch_size == usual:
        return None
    return next((r for r in kin if r.spec.training.batch_size == usual and r.seed == run.seed), None)


def family_of(name: str) -> str:
    match = _FAMILY.search(name)
    return match.group(1) if match else name


def _run(run_id: str, spec_json: dict, steps: list[int], tokens, loss, holdout_marker: str) -> RunData:
    spec = parse_spec(spec_json)
    name = spec.name or run_id
    return RunData(run_id=run_id, name=_FAMILY.sub("", name), spec=spec, steps=list(steps),
                   tokens=np.asarray(tokens, dtype=float), loss=np.asarray(loss, dtype=float),
                   holdout=bool(holdout_marker) and holdout_marker in name, family=family_of(name))


def load_store(db: str | Path, holdout_marker: str = "[holdout]", min_step: int = 1) -> list[RunData]:
    """Every complete training run in a store with its stages and evaluations."""
    from costsim.store import Store

    store = Store(db)
    runs = store.query("SELECT run_id, spec_json FROM run_summary WHERE status = 'complete' AND kind = 'train' "
                       "ORDER BY started_at")
    out = []
    for run in runs:
        stages = store.query("SELECT stage_index, steps FROM stages WHERE run_id = ? ORDER BY stage_index",
                             [run["run_id"]])
        evals = store.query("SELECT step, tokens, val_loss FROM evals WHERE run_id = ? AND step >= ? ORDER BY step",
                            [run["run_id"], min_step])
        spec = json.loads(run["spec_json"])
        if len(stages) != len(spec["stages"]) or not evals:
            continue
        out.append(_run(run["run_id"], spec, [s["steps"] for s in stages], [e["tokens"] for e in evals],
                        [e["val_loss"] for e in evals], holdout_marker))
    return out


def dataset_path(name: str = DATASET) -> Path:
    return Path(str(resources.files("costsim") / "data" / "corpus" / f"{name}.json"))


def load_dataset(path: str | Path | None = None, holdout_marker: str = "[holdout]") -> list[RunData]:
    """The curves of a dataset file (default: the shipped growth corpus)."""
    path = Path(path) if path else dataset_path()
    try:
        body = json.loads(path.read_text())
        return [_run(r["run_id"], r["spec"], r["steps"], r["tokens"], r["val_loss"], holdout_marker)
                for r in body["runs"]]
    except FileNotFoundError:
        raise CostsimError(f"{path}: no such corpus file; export one with python -m studies.growth_corpus "
                           "--export") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CostsimError(f"{path}: not a corpus file ({type(exc).__name__}: {exc}); export one with "
                           "python -m studies.growth_corpus --export") from None


def load_runs(source: str | Path | None = None, holdout_marker: str = "[holdout]") -> list[RunData]:
    """Runs from a DuckDB store (``*.duckdb``), a dataset file or the name of a shipped
    dataset (default: the shipped corpus); several, comma-separated, are one list."""
    if source is not None and "," in str(source):
        runs = [run for part in str(source).split(",") if part.strip()
                for run in load_runs(part.strip(), holdout_marker)]
        names = [run.name for run in runs]
        if twice := sorted({name for name in names if names.count(name) > 1}):
            raise CostsimError(f"run {twice[0]!r} is in more than one of {source}; give each dataset once")
        return runs
    if source is not None and not str(source).endswith((".duckdb", ".json")) and dataset_path(str(source)).exists():
        source = dataset_path(str(source))
    if source is not None and str(source).endswith(".duckdb"):
        if not Path(source).exists():
            raise CostsimError(f"{source}: no such store; train runs first (python -m studies.growth_corpus "
                               f"--db {source})")
        return load_store(source, holdout_marker)
    return load_dataset(source, holdout_marker)


def export_store(db: str | Path, out: str | Path, source: str = "python -m studies.growth_corpus") -> int:
    """Write a store's complete runs into a dataset file; returns how many runs it holds.

    Runs already in ``out`` that the store does not hold are kept (a run the store also
    holds is replaced by the store's), so a store with only this session's runs adds to
    the shipped corpus instead of replacing it."""
    runs = load_store(db, holdout_marker="")
    from costsim.store import Store

    rows = {r["run_id"]: r for r in Store(db).query(
        "SELECT run_id, spec_json, device FROM run_summary WHERE status = 'complete'")}
    fresh = [{"run_id": r.run_id, "family": r.family, "device": rows[r.run_id]["device"],
              "spec": json.loads(rows[r.run_id]["spec_json"]), "steps": r.steps,
              "tokens": [int(t) for t in r.tokens], "val_loss": [round(float(v), 5) for v in r.loss]}
             for r in runs]
    names = {r["spec"].get("name") for r in fresh}
    kept = []
    if Path(out).exists():
        try:
            kept = [r for r in json.loads(Path(out).read_text())["runs"] if r["spec"].get("name") not in names]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CostsimError(f"{out}: not a corpus file ({type(exc).__name__}: {exc}); move it aside to "
                               "export a new one") from None
    body = {"source": source, "runs": kept + fresh}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(body, separators=(",", ":")) + "\n")
    return len(body["runs"])
