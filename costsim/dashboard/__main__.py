"""``python -m costsim.dashboard``: write HTML dashboards of the store and of schedule specs.

Examples:
  python -m costsim.dashboard                                  # every stored run -> ./dashboard/
  python -m costsim.dashboard --open                           # ... and open index.html in a browser
  python -m costsim.dashboard --spec examples/paper_s4.yaml    # plan a schedule without training it
  python -m costsim.dashboard --runs RUN_A,RUN_B --spec plan.yaml --db other.duckdb --out report/

Pages: schedule timeline, validation loss, cost per stage, calibration (predicted vs
measured), search trials and, when the store holds checks, the check (the search's answer
trained with several seeds, predicted against measured), linked from index.html. The folder works offline: the
pages share one plotly.min.js beside them. A page with nothing to show says why and
which command fills it; an empty or missing store still gives an index.

Fill the store with:  python -m validate.run examples/tiny_three_stage.yaml   (runs)
                      python -m validate.measure                             (cost measurements)
                      python -m costsim.search --budget 1e19                 (search trials)
                      python -m studies.check_recommendation --budget 4e12   (a check and its runs)
List stored run ids:  python -m validate.run --list
"""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path

import duckdb

from costsim.dashboard.data import dashboard_data
from costsim.dashboard.draw import write_dashboard
from costsim.errors import CostsimError, cli_errors
from costsim.spec import load_spec
from costsim.store import Store


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m costsim.dashboard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="costsim.duckdb", help="DuckDB store to read (default ./costsim.duckdb)")
    p.add_argument("--out", default="dashboard", help="folder to write the pages into (default ./dashboard)")
    p.add_argument("--runs", metavar="RUN_ID,...", help="comma-separated run ids to show (default: every stored run)")
    p.add_argument("--spec", nargs="+", action="extend", default=[], metavar="PLAN",
                   help="schedule spec files (.yaml/.json/.toml) to show next to the runs; may be repeated")
    p.add_argument("--open", action="store_true", help="open index.html in the default web browser when done")
    return p


def _run_ids(text: str | None) -> list[str] | None:
    if text is None:
        return None
    run_ids = [part.strip() for part in text.split(",") if part.strip()]
    if not run_ids:
        raise CostsimError("--runs: give one or more run ids separated by commas (python -m validate.run --list)")
    return run_ids


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    specs = {path: load_spec(path) for path in args.spec}
    if not Path(args.db).exists() and not specs:
        raise CostsimError(f"--db {args.db}: no such store; train runs first (python -m validate.run SPEC --db "
                           f"{args.db}) or show plans with --spec")
    store = Store(args.db)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CostsimError(f"--out {out}: exists and is not a folder; choose another path")
    try:
        data = dashboard_data(store, _run_ids(args.runs), specs)
    except duckdb.IOException as exc:  # a read-write session (the duckdb CLI) holds the file's lock
        raise CostsimError(f"{args.db}: cannot open the store ({str(exc).splitlines()[0]}); "
                           "close other programs that hold it open, such as the duckdb CLI, and retry") from None
    index = write_dashboard(data, out)
    print(f"wrote {index}")
    if args.open:
        webbrowser.open(index.resolve().as_uri())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
