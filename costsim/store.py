"""Where training runs, cost measurements and search trials are stored: one DuckDB file, many writers.

It sits below both ``costsim`` (planning: the search, the dashboards, the corpus) and
``validate`` (training, torch), which both write and read it; it needs neither.

DuckDB lets one process hold a database file read-write; a second process that opens it
gets a lock error, and taking turns by retrying on that error lost committed rows in our
experiments (/work/shared/ECOSYSTEM.md). So producers never open the database. Each
``Store.append`` writes one Parquet file into a spool directory beside the database
(temp name, fsync, ``os.replace``), which any number of processes can do at once and
which a SIGKILL cannot leave half-visible. ``Store.flush`` moves the spool into the
database under an exclusive ``fcntl.flock`` on a separate lock file, the guard that lost
nothing in the same experiments. It never writes the database in place: it ingests
into a copy and ``os.replace``s the copy over it, so a flusher killed mid-checkpoint
leaves the previous database, not a corrupt one. It is idempotent: every row carries a unique
``record_id`` and ingestion skips ids already present, so a crash between the commit and
the deletion of the spool files duplicates nothing. Reads flush first, then open the
database read-only under a shared lock.

Layout, for ``Store("costsim.duckdb")``::

    costsim.duckdb                        the database users query (duckdb CLI, Python)
    costsim.duckdb.lock                   flock mutex; its content is meaningless
    costsim.duckdb.next                   a flush's copy, renamed over the database when done
    costsim.duckdb.spool/<table>/<uuid>.parquet   appended, not yet ingested

The schemas live in ``TABLES`` and nowhere else; docs/store.md explains the tables.

A database the store creates is written in DuckDB's ``STORAGE_VERSION`` format, so
that the ``duckdb`` CLI a user installs with pip, or an older Python ``duckdb``, opens it.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from costsim.errors import CostsimError
from costsim.processes import is_gone, worker_id

__all__ = ["HEARTBEAT_TIMEOUT_S", "RUN_STATES", "RUN_SUMMARY_SQL", "SEARCH_TRIAL_COSTS", "STALE_TMP_AGE_S",
           "STORAGE_VERSION", "TABLES", "Buffer", "Column", "Store"]

RUN_STATES = ("running", "complete", "incomplete", "failed")
"""Values of ``runs.status`` and ``run_status.status``; every one but "running" is final."""

HEARTBEAT_TIMEOUT_S = 600
"""A run whose newest status is "running" and older than this is reported "incomplete".

Producers that train for longer than this between status records should call
``Store.record_status(run_id, "running")`` now and then as a heartbeat.
"""

STALE_TMP_AGE_S = 3600
"""Spool temp files older than this belong to killed producers and are swept by flush."""

STORAGE_VERSION = "v1.0.0"
"""DuckDB file format of a database the store creates (``storage_compatibility_version``).

DuckDB 2.0 writes its newest format by default, which no DuckDB 1.x opens: not even the
newest ``duckdb-cli`` on PyPI (1.5.6 reads formats up to v1.5.0). The store uses plain
tables, CHECK constraints and one view, which every format has. v1.0.0 is the oldest
that works: DuckDB 1.0.0 opens such a file, while 2.0.1's v0.10.0 output fails to load
in DuckDB 0.10.0 (a deserialisation error, checked by experiment). A database created
before this setting keeps the format it was created in; DuckDB never converts a file.
"""


@dataclass(frozen=True)
class Column:
    """One column: its DuckDB type, whether it may be NULL, and the values it may take."""

    name: str
    type: str
    nullable: bool = False
    allowed: tuple[str, ...] = ()

    def ddl(self) -> str:
        """Column definition for CREATE TABLE; appends are checked against the same DDL."""
        text = f'"{self.name}" {self.type}'
        if not self.nullable:
            text += " NOT NULL"
        if self.allowed:
            values = ", ".join(f"'{value}'" for value in self.allowed)
            text += f' CHECK ("{self.name}" IN ({values}))'
        return text


def _table(*columns: Column) -> tuple[Column, ...]:
    """A table's columns plus ``record_id``, the per-row key that makes ingestion idempotent."""
    return (*columns, Column("record_id", "VARCHAR"))


SEARCH_TRIAL_COSTS: tuple[Column, ...] = (
    Column("time_s", "DOUBLE", nullable=True),
    Column("cost_usd", "DOUBLE", nullable=True),
    Column("peak_memory_bytes", "DOUBLE", nullable=True),
    Column("params_total", "BIGINT", nullable=True),
    Column("params_non_embedding", "BIGINT", nullable=True),
    Column("flops_counted", "DOUBLE", nullable=True),
    Column("infeasible_reason", "VARCHAR", nullable=True),
)
"""A search trial's costs, stored under the names of the trial's ``user_attrs`` that hold
them (costsim.search's ``record`` copies them by these names). NULL where the trial has
no such attribute: it failed or was pruned before it was costed, or an older search
wrote it; ``infeasible_reason`` is NULL for a feasible trial."""


TABLES: dict[str, tuple[Column, ...]] = {
    "runs": _table(
        Column("run_id", "VARCHAR"),
        Column("started_at", "TIMESTAMP"),
        Column("finished_at", "TIMESTAMP", nullable=True),
        Column("status", "VARCHAR", allowed=RUN_STATES),
        Column("spec_json", "VARCHAR"),
        Column("code_version", "VARCHAR", nullable=True),
        Column("torch_version", "VARCHAR"),
        Column("device", "VARCHAR"),
        Column("seed", "INTEGER"),
        Column("kind", "VARCHAR"),
    ),
    "run_status": _table(
        Column("run_id", "VARCHAR"),
        Column("status", "VARCHAR", allowed=RUN_STATES),
        Column("recorded_at", "TIMESTAMP"),
        # who recorded it: lets a reader on the same host see that a "running" run's
        # process is gone (killed) without waiting for the heartbeat timeout
        Column("worker", "VARCHAR", nullable=True),  # host:pid
    ),
    "stages": _table(
        Column("run_id", "VARCHAR"),
        Column("stage_index", "INTEGER"),
        Column("layers", "INTEGER"),
        Column("d_model", "INTEGER"),
        Column("tokens", "DOUBLE"),
        Column("steps", "INTEGER"),
        Column("flops_counted_per_step", "DOUBLE"),
        Column("flops_counted_predicted_per_step", "DOUBLE"),
        Column("peak_memory_bytes", "DOUBLE", nullable=True),
        Column("peak_memory_predicted_bytes", "DOUBLE", nullable=True),
        # the allocator's reserved peak: what has to fit on a GPU (NULL on a CPU)
        Column("peak_reserved_bytes", "DOUBLE", nullable=True),
        Column("peak_reserved_predicted_bytes", "DOUBLE", nullable=True),
        Column("step_time_s", "DOUBLE"),
        Column("step_time_predicted_s", "DOUBLE", nullable=True),
    ),
    "steps": _table(
        Column("run_id", "VARCHAR"),
        Column("step", "INTEGER"),
        Column("stage_index", "INTEGER"),
        Column("tokens", "DOUBLE"),
        Column("train_loss", "DOUBLE"),
        Column("wall_time_s", "DOUBLE"),
        Column("lr", "DOUBLE"),
    ),
    "evals": _table(
        Column("run_id", "VARCHAR"),
        Column("step", "INTEGER"),
        Column("tokens", "DOUBLE"),
        Column("flops_counted", "DOUBLE"),
        Column("val_loss", "DOUBLE"),
        Column("wall_time_s", "DOUBLE"),
    ),
    "loss_predictions": _table(
        # one per evaluation with a prediction; joins evals on (run_id, step)
        Column("run_id", "VARCHAR"),
        Column("step", "INTEGER"),
        Column("tokens", "DOUBLE"),
        Column("profile_name", "VARCHAR"),  # the loss profile that predicted
        Column("interval_coverage", "DOUBLE"),  # the profile's probability that lower..upper holds the loss
        Column("val_loss_predicted", "DOUBLE"),
        Column("val_loss_predicted_lower", "DOUBLE"),
        Column("val_loss_predicted_upper", "DOUBLE"),
    ),
    "events": _table(
        Column("run_id", "VARCHAR"),
        Column("step", "INTEGER"),
        Column("kind", "VARCHAR"),
        Column("detail", "VARCHAR", nullable=True),
    ),
    "cost_measurements": _table(
        Column("measurement_id", "VARCHAR"),
        Column("device", "VARCHAR"),
        Column("name", "VARCHAR"),
        Column("vocab_size", "INTEGER"),
        Column("d_model", "INTEGER"),
        Column("n_heads", "INTEGER"),
        Column("n_layers", "INTEGER"),
        Column("seq_len", "INTEGER"),
        Column("micro_batch_size", "INTEGER"),
        Column("frozen_blocks", "INTEGER"),
        Column("freeze_embeddings", "BOOLEAN"),
        Column("tied_embeddings", "BOOLEAN"),
        Column("recompute", "BOOLEAN"),
        Column("mlp", "VARCHAR", nullable=True),  # NULL: gelu (older rows)
        Column("n_kv_heads", "INTEGER", nullable=True),  # NULL: n_heads
        Column("precision", "VARCHAR"),
        Column("counted_flops", "DOUBLE"),
        Column("step_time_s", "DOUBLE"),
        Column("peak_alloc_bytes", "DOUBLE"),
        Column("peak_reserved_bytes", "DOUBLE"),
        Column("saved_activation_bytes", "DOUBLE", nullable=True),
        Column("source", "VARCHAR"),
    ),
    "calibrations": _table(
        Column("profile_name", "VARCHAR"),
        Column("device", "VARCHAR"),
        Column("created_at", "TIMESTAMP"),
        Column("params_json", "VARCHAR"),
        Column("holdout_report_json", "VARCHAR", nullable=True),
    ),
    "search_trials": _table(
        Column("study_name", "VARCHAR"),
        Column("trial_number", "INTEGER"),
        Column("state", "VARCHAR"),
        Column("params_json", "VARCHAR"),
        Column("values_json", "VARCHAR", nullable=True),
        Column("created_at", "TIMESTAMP"),
        *SEARCH_TRIAL_COSTS,
    ),
    "search_results": _table(
        Column("study_name", "VARCHAR"),
        Column("created_at", "TIMESTAMP"),
        Column("budget_json", "VARCHAR"),
        Column("best_spec_json", "VARCHAR"),
        Column("report_json", "VARCHAR"),
    ),
    "checks": _table(
        # one per studies.check_recommendation: the search's answer trained and judged
        Column("check_id", "VARCHAR"),
        Column("created_at", "TIMESTAMP"),
        Column("budget", "DOUBLE"),  # counted FLOPs per schedule
        Column("loss_profile", "VARCHAR"),  # the profile that predicted (report_json's "loss_profile")
        Column("verdict", "VARCHAR"),  # confirmed, tie or contradicted
        Column("recommendation", "VARCHAR"),  # what the search recommended: grow or full training
        Column("report_json", "VARCHAR"),  # check.json; its outcomes name the runs trained
    ),
}
"""Every stored table, in the one place its schema is written down.

NULL is allowed only where a value can legitimately not exist: not yet known when the
row is written (``finished_at``), not measurable on the device (peak memory on a CPU),
not predictable without a calibration profile (predicted step time), absent by
nature (an event's detail, an unfinished trial's values), or not written by the
producer that made the row (the costs of a trial an older search stored).
"""

RUN_SUMMARY_SQL = f"""
CREATE OR REPLACE VIEW run_summary AS
WITH registration AS (
    SELECT *, count(*) OVER (PARTITION BY run_id) AS registrations
    FROM runs
    QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY started_at, record_id) = 1
), status_events AS (
    SELECT run_id, status, coalesce(finished_at, started_at) AS recorded_at FROM runs
    UNION ALL
    SELECT run_id, status, recorded_at FROM run_status
), latest AS (
    SELECT run_id,
           max(recorded_at) AS last_seen,
           arg_max(status, recorded_at) FILTER (WHERE status <> 'running') AS final_status,
           max(recorded_at) FILTER (WHERE status <> 'running') AS finished_at
    FROM status_events
    GROUP BY run_id
)
SELECT r.run_id, r.kind, r.device, r.seed, r.code_version, r.torch_version, r.spec_json,
       r.started_at,
       CASE
           WHEN l.final_status IS NOT NULL THEN l.final_status
           WHEN l.last_seen >= timezone('UTC', now()) - INTERVAL {HEARTBEAT_TIMEOUT_S} SECOND
               THEN 'running'
           ELSE 'incomplete'
       END AS status,
       l.finished_at, l.last_seen, r.registrations
FROM registration AS r JOIN latest AS l USING (run_id)
"""
"""One row per run with its effective status: a final status wins (the newest if several);
otherwise the run is "running" while its newest record is younger than the heartbeat
timeout and "incomplete" after that, which is how a SIGKILLed run shows up."""


class _HeldLocks(threading.local):
    """Lock files this thread holds, so re-entry fails loudly instead of deadlocking on flock."""

    def __init__(self) -> None:
        self.paths: set[str] = set()


_held_locks = _HeldLocks()


class Store:
    """A DuckDB database fed through a Parquet spool; safe for many concurrent processes.

    ``append`` never touches the database, so producers never block each other or
    readers. ``flush``, ``query`` and ``connect_readonly`` serialise on a flock.
    """

    def __init__(self, path: str | os.PathLike[str] = "costsim.duckdb") -> None:
        self.path = Path(path)
        self.spool_dir = Path(f"{self.path}.spool")
        self.lock_path = Path(f"{self.path}.lock")
        self._writer: duckdb.DuckDBPyConnection | None = None
        self._writer_pid = -1
        self._writer_lock = threading.Lock()

    def _check_folder(self) -> None:
        """The store lives in a folder the user made: never create it for them."""
        if not self.path.parent.is_dir():
            raise CostsimError(f"--db {self.path}: folder {self.path.parent} does not exist; create it or pick "
                               "another path")

    # -- producers ------------------------------------------------------------------

    def append(self, table: str, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Durably spool ``rows`` for ``table`` as one Parquet file; return their record ids.

        Once this returns, the rows survive a SIGKILL of this process and will reach the
        database on the next flush. Rows are checked here, against the table's DDL, so a
        bad row fails in the producer that wrote it instead of wedging every later flush.
        A row may carry its own ``record_id`` (so a retried append cannot duplicate);
        otherwise one is generated.
        """
        columns = _columns(table)
        rows = list(rows)
        if not rows:
            return []
        names = {column.name for column in columns}
        for index, row in enumerate(rows):
            unknown = sorted(set(row) - names)
            if unknown:
                raise ValueError(
                    f"unknown column {unknown[0]!r} for table {table!r}; "
                    f"allowed: {', '.join(sorted(names))}"
                )
            for column in columns:
                if not column.nullable and column.name != "record_id" and row.get(column.name) is None:
                    raise ValueError(f"row {index} for table {table!r} lacks required column {column.name!r}")
        record_ids = [str(row.get("record_id") or uuid.uuid4().hex) for row in rows]
        values = [
            record_ids if column.name == "record_id" else [row.get(column.name) for row in rows]
            for column in columns
        ]
        directory = self.spool_dir / table
        self._check_folder()
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / f"{uuid.uuid4().hex}.parquet"
        temp = final.with_name(final.name + ".tmp")
        with self._writer_lock:
            writer = self._writer_connection()
            writer.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({', '.join(c.ddl() for c in columns)})")
            unnest = ", ".join(f"unnest(?::{column.type}[])" for column in columns)
            try:
                writer.execute(f"INSERT INTO {table} SELECT {unnest}", values)
            except duckdb.Error as exc:
                raise ValueError(_misfit_message(writer, table, columns, values, exc)) from exc
            writer.execute(f"COPY {table} TO ? (FORMAT parquet)", [str(temp)])
        _fsync(temp)
        os.replace(temp, final)
        _fsync(directory)
        return record_ids

    def record_status(self, run_id: str, status: str) -> None:
        """Append a status record for ``run_id`` stamped now (UTC); "running" is a heartbeat.

        Statuses are appended, never updated, so concurrent writers cannot lose each
        other's updates; the ``run_summary`` view resolves them.
        """
        self.append("run_status", [{"run_id": run_id, "status": status, "recorded_at": datetime.now(UTC),
                                    "worker": worker_id()}])

    def run_status(self, run_id: str) -> str | None:
        """The run's effective status: ``run_summary``'s, except that a "running" run
        whose last recorder was a process on this host that no longer exists is
        "incomplete" at once. None if the run is unknown."""
        rows = self.query("SELECT status FROM run_summary WHERE run_id = ?", [run_id])
        if not rows:
            return None
        status = rows[0]["status"]
        if status != "running":
            return status
        last = self.query(
            "SELECT worker FROM run_status WHERE run_id = ? ORDER BY recorded_at DESC LIMIT 1", [run_id])
        if last and last[0]["worker"] and is_gone(last[0]["worker"]):
            return "incomplete"
        return status

    def _writer_connection(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB used only to encode Parquet, reopened after a fork.

        Opening one costs ~12 ms, five times the cost of an append, hence the reuse; a
        forked child must not use its parent's connection.
        """
        if self._writer is None or self._writer_pid != os.getpid():
            self._writer = duckdb.connect(":memory:")
            # Timezone-aware datetimes are stored as naive UTC timestamps.
            self._writer.execute("SET TimeZone = 'UTC'")
            self._writer_pid = os.getpid()
        return self._writer

    # -- ingestion and reads ----------------------------------------------------------

    def flush(self) -> int:
        """Ingest every spooled file into the database in one transaction; return new rows.

        Files are listed once, under the lock, and only those are deleted after the
        commit, so files spooled meanwhile wait for the next flush. Rows whose
        ``record_id`` is already stored are skipped, which makes a re-run after a crash
        between commit and deletion harmless.

        The database itself is never written in place: the flush copies it to
        ``<path>.next``, ingests there, and ``os.replace``s the copy over it. A SIGKILL
        mid-checkpoint once left a file DuckDB refused to open ("Corrupt database file:
        computed checksum ... does not match": once in CI; 40 local repetitions of that
        test, 120 kills, did not reproduce it); with the copy, a kill at any point leaves
        the last whole database and the spool it has not yet ingested.
        """
        with self._locked(fcntl.LOCK_EX):
            batches = {table: sorted(self.spool_dir.joinpath(table).glob("*.parquet")) for table in TABLES}
            self._discard_unfinished_copy()
            guard = None
            if self.path.exists():
                self._recover_foreign_wal()
                # A read-only connection held until the rename takes DuckDB's shared lock: a
                # read-write session elsewhere makes this fail at once (before anything is
                # copied), and none can start and write into a file about to be replaced.
                guard = duckdb.connect(str(self.path), read_only=True)
            try:
                return self._ingest_into_copy(batches, guard)
            finally:
                if guard is not None:
                    guard.close()

    def _ingest_into_copy(self, batches: dict[str, list[Path]],
                          guard: duckdb.DuckDBPyConnection | None) -> int:
        """Copy the database (``guard`` is open on it, if it exists), ingest, rename over it."""
        if guard is not None:
            if not any(batches.values()) and _signature(guard) == _expected_signature():
                self._sweep_stale_temp_files()
                return 0
            shutil.copyfile(self.path, self._next_path)
        ingested = 0
        # Only this connection can create the file, so only it names the format; readers
        # keep DuckDB's default configuration, which a user's own read-only connection
        # in the same process shares (DuckDB refuses two configurations of one file).
        connection = duckdb.connect(str(self._next_path),
                                    config={"storage_compatibility_version": STORAGE_VERSION})
        try:
            connection.execute("BEGIN")
            _ensure_schema(connection)
            for table, files in batches.items():
                if files:
                    ingested += connection.execute(
                        f"""INSERT INTO {table} BY NAME
                            SELECT * FROM read_parquet(?, union_by_name = true) AS f
                            WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.record_id = f.record_id)
                            QUALIFY row_number() OVER (PARTITION BY f.record_id) = 1""",
                        [[str(file) for file in files]],
                    ).fetchone()[0]
            connection.execute("COMMIT")
        finally:
            connection.close()  # checkpoints the copy: its .wal is folded in and removed
        _fsync(self._next_path)
        os.replace(self._next_path, self.path)
        _fsync(self.path.parent)
        for files in batches.values():
            for file in files:
                file.unlink(missing_ok=True)
        self._sweep_stale_temp_files()
        return ingested

    @property
    def _next_path(self) -> Path:
        return Path(f"{self.path}.next")

    def _discard_unfinished_copy(self) -> None:
        """Remove the copy (and its WAL) a flush killed before its ``os.replace`` left."""
        for leftover in (self._next_path, Path(f"{self._next_path}.wal")):
            leftover.unlink(missing_ok=True)

    def _recover_foreign_wal(self) -> None:
        """Fold a ``.wal`` beside the database into it, in place, before copying.

        The store's own flushes never leave one (they write a copy, which they close
        before renaming it), but a user's read-write session killed mid-way, or a flush by
        an older costsim, can. Copying the file without it would drop committed rows, and
        replacing the file under it would replay it onto the wrong database; so DuckDB's
        own recovery runs on the file here, as it did before the copy existed.
        """
        if Path(f"{self.path}.wal").exists():
            duckdb.connect(str(self.path)).close()

    @contextmanager
    def connect_readonly(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Flush, then yield a read-only connection; hold it briefly, it blocks flushes.

        The shared flock lets readers run side by side while keeping a flush (which
        replaces the file) from starting until every reader has closed.
        """
        self.flush()
        with self._locked(fcntl.LOCK_SH):
            connection = duckdb.connect(str(self.path), read_only=True)
            try:
                yield connection
            finally:
                connection.close()

    def query(self, sql: str, params: Iterable[Any] | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Flush, run ``sql`` read-only and return its rows as dicts keyed by column name."""
        with self.connect_readonly() as connection:
            cursor = connection.execute(sql, params)
            if cursor.description is None:
                return []
            names = [description[0] for description in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        """Hold ``flock(mode)`` on the lock file; refuse re-entry from the same thread."""
        held = _held_locks.paths
        key = str(self.lock_path.resolve())
        if key in held:
            raise RuntimeError(
                f"{self.path} is already locked by this thread (inside connect_readonly?); "
                "close that connection first"
            )
        self._check_folder()
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, mode)
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)
        finally:
            os.close(descriptor)  # closing the descriptor releases the flock

    def _sweep_stale_temp_files(self) -> None:
        """Delete temp files that killed producers left; flush never reads ``*.tmp``."""
        cutoff = time.time() - STALE_TMP_AGE_S
        for temp in self.spool_dir.glob("*/*.parquet.tmp"):
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
            except FileNotFoundError:
                pass  # its producer renamed it, or another sweep got there first


class Buffer:
    """Collects rows for one table and appends them every ``flush_every`` rows.

    A training loop that appended every step would pay ~3 ms and one spool file per
    step; buffering trades that for losing at most ``flush_every - 1`` unappended rows if
    the process is killed. Use it as a context manager so the remainder is appended on exit.
    """

    def __init__(self, store: Store, table: str, flush_every: int = 100) -> None:
        _columns(table)
        if flush_every < 1:
            raise ValueError(f"flush_every must be at least 1, got {flush_every}")
        self.store = store
        self.table = table
        self.flush_every = flush_every
        self._rows: list[Mapping[str, Any]] = []

    def add(self, row: Mapping[str, Any]) -> None:
        """Buffer one row; append the buffer to the spool once it holds ``flush_every``."""
        self._rows.append(row)
        if len(self._rows) >= self.flush_every:
            self.flush()

    def flush(self) -> list[str]:
        """Append the buffered rows to the spool (not to the database); return their ids.

        The buffer is emptied before the append, so a batch that raises is dropped rather
        than retried by every later ``add``: one bad row must not stop all logging.
        """
        rows, self._rows = self._rows, []
        return self.store.append(self.table, rows)

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()


def _columns(table: str) -> tuple[Column, ...]:
    """The table's columns, or a one-line ValueError that lists the known tables."""
    try:
        return TABLES[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; allowed: {', '.join(sorted(TABLES))}") from None


def _misfit_message(
    writer: duckdb.DuckDBPyConnection,
    table: str,
    columns: tuple[Column, ...],
    values: list[list[Any]],
    error: duckdb.Error,
) -> str:
    """One line for rows DuckDB refused, naming the column when a cast was the problem.

    The batch INSERT reports a conversion error without its column, so on this (rare)
    path each column's values are cast alone to find the culprit.
    """
    for column, column_values in zip(columns, values):
        try:
            writer.execute(f"SELECT ?::{column.type}[]", [column_values])
        except duckdb.Error as cast_error:
            return (
                f"column {column.name!r} of table {table!r} does not fit {column.type}: "
                f"{str(cast_error).splitlines()[0]}"
            )
    return f"rows for table {table!r} do not fit its schema: {str(error).splitlines()[0]}"


def _ensure_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables, add columns a newer schema introduced, refresh the view.

    Adding columns keeps an older database ingestible after ``TABLES`` grows; new
    columns are added without NOT NULL because existing rows have no value for them.
    """
    for table, columns in TABLES.items():
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(c.ddl() for c in columns)})")
    existing = set(
        connection.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main'").fetchall()
    )
    for table, columns in TABLES.items():
        for column in columns:
            if (table, column.name) not in existing:
                connection.execute(f'ALTER TABLE {table} ADD COLUMN "{column.name}" {column.type}')
    connection.execute(RUN_SUMMARY_SQL)


def _signature(connection: duckdb.DuckDBPyConnection) -> tuple:
    """What ``_ensure_schema`` decides: every table's columns and types, every view's SQL."""
    columns = connection.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE schema_name = 'main' "
        "ORDER BY ALL").fetchall()
    views = connection.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' ORDER BY ALL").fetchall()
    return tuple(columns), tuple(views)


@functools.cache
def _expected_signature() -> tuple:
    """The signature of a database ``_ensure_schema`` has just brought up to date.

    Built in a stored file, not in memory: DuckDB rewrites a view's SQL when it stores it
    (it adds parentheses), and the signature must match what a reopened store reports.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "schema.duckdb"
        connection = duckdb.connect(str(path), config={"storage_compatibility_version": STORAGE_VERSION})
        try:
            _ensure_schema(connection)
        finally:
            connection.close()
        connection = duckdb.connect(str(path), read_only=True)
        try:
            return _signature(connection)
        finally:
            connection.close()


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk before relying on them."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

