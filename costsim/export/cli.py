"""``python -m costsim.export PLAN --to nanogpt|hf [--out DIR]``: a plan as a trainer's files.

PLAN is a schedule spec: the search's recommended plan, or any spec ``costsim.estimate``
takes. Each stage becomes what the trainer reads (nanoGPT: a train.py config file;
hf: a transformers config.json and TrainingArguments JSON), and DIR/README.txt says,
stage by stage, what to run and which growth to apply in between. Neither trainer grows
a model: the growth (costsim/growth.py's operators), freezing and the optimizer state
at a boundary are steps you apply to the checkpoint, and README.txt names them.

Steps are whole: a stage whose tokens are not a whole number of steps is rounded up,
as costsim.estimate costs it, and the export says so. DIR/costsim_export.json holds
what the trainer files cannot (the GPU, growth operators, train policies), so
``load_exported(DIR)`` reads the folder back into the spec the files realise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from costsim.errors import cli_errors
from costsim.export.base import FORMATS, README, format_named
from costsim.export.folder import export_plan
from costsim.spec import load_spec


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costsim.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", help="schedule spec (.yaml, .yml, .json, .toml), e.g. the search's best_schedule.yaml")
    parser.add_argument("--to", required=True, metavar="FORMAT", help=f"trainer: {', '.join(FORMATS)}")
    parser.add_argument("--out", help="folder to write (default: PLAN's name and the format, e.g. best_schedule-hf)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder (replaces a previous "
                        "export's files)")
    args = parser.parse_args(argv)
    fmt = format_named(args.to)  # before reading the plan: a wrong --to is the cheaper mistake to report
    spec = load_spec(args.plan)
    result = export_plan(spec, fmt.name, args.out or f"{Path(args.plan).stem}-{fmt.name}", force=args.force)
    n_stages = len(spec.stages)
    print(f"wrote {len(result.files)} files for {n_stages} stage{'s' if n_stages > 1 else ''} to {result.directory}")
    print(f"{fmt.trainer} does not grow models: {result.directory / README} lists, per stage, the command and the "
          "growth to apply before it")
    for note in result.notes:
        print(f"note: {note}")
    return 0
