"""What the store's copy-and-rename flush costs as the database grows (not a timed test).

``Store.flush`` never writes the database in place: it copies it, ingests into the copy and
renames the copy over it (docs/store.md), so a flush that ingests pays a copy of the whole
file, and a read with nothing spooled pays a read-only open. This fills a store with
``steps`` rows (a training run's per-step rows, the largest table in practice) in batches,
and prints, at each size: the file's size, the median time of a flush that ingests one
100-row append, and of a query with nothing spooled.

    python benchmarks/store_flush.py              # up to 2M rows
    python benchmarks/store_flush.py --rows 5e6
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from costsim.store import Store

BATCH = 100  # rows per timed append, what a Buffer appends by default


def step_rows(run: str, start: int, count: int) -> list[dict[str, object]]:
    return [{"run_id": run, "step": s, "stage_index": 0, "tokens": 1024 * s, "train_loss": 2.0, "wall_time_s": 0.1,
             "lr": 1e-3} for s in range(start, start + count)]


def fill(store: Store, run: str, rows: int) -> None:
    """Add ``rows`` steps rows straight into the database (one big flush), untimed."""
    chunk = 100_000
    for start in range(0, rows, chunk):
        store.append("steps", step_rows(run, start, min(chunk, rows - start)))
    store.flush()


def timed(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=float, default=2e6, help="the largest size, in steps rows (default 2e6)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [s for s in (1e4, 1e5, 1e6, 2e6, 5e6, 1e7) if s <= args.rows]
    print(f"{'rows':>10s} {'file MB':>8s} {'flush of 100 rows (ms)':>23s} {'read, nothing spooled (ms)':>27s}")
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "costsim.duckdb")
        stored, next_step = 0, 0
        for size in sizes:
            fill(store, f"fill{int(size)}", int(size) - stored)
            stored = int(size)

            def ingest() -> None:
                nonlocal next_step
                store.append("steps", step_rows("timed", next_step, BATCH))
                next_step += BATCH
                store.flush()

            flush_ms = 1000 * timed(ingest, args.repeats)
            read_ms = 1000 * timed(lambda: store.query("SELECT 1 AS one"), args.repeats)
            megabytes = store.path.stat().st_size / 1e6
            print(f"{stored:>10,d} {megabytes:8.1f} {flush_ms:23.1f} {read_ms:27.1f}")


if __name__ == "__main__":
    main()
