"""The store under concurrent producers, SIGKILLs and crashes between commit and cleanup.

Worker functions live at module level because the spawn start method (what the store
must survive: fresh interpreters, no inherited DuckDB state) pickles them by name.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from costsim.store import RUN_STATES, SEARCH_TRIAL_COSTS, STORAGE_VERSION, TABLES, Buffer, Store

SPAWN = multiprocessing.get_context("spawn")
ROWS_PER_APPEND = 8


def _event_rows(producer: int, batch: int) -> list[dict[str, object]]:
    """One append's rows; (run_id, step) identifies a row, ``detail`` its batch."""
    return [
        {"run_id": f"p{producer}", "step": batch * ROWS_PER_APPEND + i, "kind": "test", "detail": str(batch)}
        for i in range(ROWS_PER_APPEND)
    ]


def _produce(path: str, producer: int, batches: int) -> None:
    store = Store(path)
    for batch in range(batches):
        store.append("events", _event_rows(producer, batch))


def _flush_and_query_until(path: str, stop, ready, flushes_with_rows) -> None:
    store = Store(path)
    while not stop.is_set():
        if store.flush():
            flushes_with_rows.value += 1
        store.query("SELECT count(*) AS n FROM events")
        ready.set()


def _produce_and_acknowledge(path: str, producer: int, ack_path: str) -> None:
    """Append forever, logging each batch only after append returned (the acknowledgement)."""
    store = Store(path)
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    batch = 0
    while True:
        store.append("events", _event_rows(producer, batch))
        os.write(ack, f"{batch}\n".encode())
        batch += 1


def _flush_forever(path: str, ready) -> None:
    store = Store(path)
    while True:
        store.flush()
        ready.set()


def _run_row(run_id: str, started_at: datetime, status: str = "running") -> dict[str, object]:
    return {
        "run_id": run_id,
        "started_at": started_at,
        "status": status,
        "spec_json": "{}",
        "torch_version": "2.11.0",
        "device": "cpu",
        "seed": 0,
        "kind": "test",
    }


def _step_row(step: int) -> dict[str, object]:
    return {"run_id": "r", "step": step, "stage_index": 0, "tokens": 1024.0 * step,
            "train_loss": 3.5, "wall_time_s": 0.1 * step, "lr": 1e-3}


def _events_by_batch(store: Store, producer: int) -> dict[int, int]:
    rows = store.query(
        "SELECT CAST(detail AS INTEGER) AS batch, count(*) AS n FROM events WHERE run_id = ? GROUP BY batch",
        [f"p{producer}"],
    )
    return {row["batch"]: row["n"] for row in rows}


def test_concurrent_producers_and_flusher_store_every_row_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "costsim.duckdb")
    producers, batches = 8, 40
    stop, ready = SPAWN.Event(), SPAWN.Event()
    flushes_with_rows = SPAWN.Value("i", 0)
    flusher = SPAWN.Process(target=_flush_and_query_until, args=(path, stop, ready, flushes_with_rows))
    flusher.start()
    assert ready.wait(timeout=20)
    workers = [SPAWN.Process(target=_produce, args=(path, p, batches)) for p in range(producers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    stop.set()
    flusher.join(timeout=20)
    assert [worker.exitcode for worker in workers] == [0] * producers
    assert flusher.exitcode == 0
    assert flushes_with_rows.value >= 1  # ingestion really ran while producers wrote

    store = Store(path)
    store.flush()
    [totals] = store.query("SELECT count(*) AS n, count(DISTINCT record_id) AS ids FROM events")
    expected = producers * batches * ROWS_PER_APPEND
    assert totals == {"n": expected, "ids": expected}
    stored = {(row["run_id"], row["step"]) for row in store.query("SELECT run_id, step FROM events")}
    assert stored == {(f"p{p}", s) for p in range(producers) for s in range(batches * ROWS_PER_APPEND)}
    assert not list(store.spool_dir.glob("*/*"))


def test_sigkilled_producer_loses_no_acknowledged_row_and_leaves_nothing_partial(tmp_path: Path) -> None:
    path = str(tmp_path / "costsim.duckdb")
    store = Store(path)
    for producer, acknowledged_before_kill in enumerate((5, 17, 30)):
        ack_path = tmp_path / f"ack{producer}"
        worker = SPAWN.Process(target=_produce_and_acknowledge, args=(path, producer, str(ack_path)))
        worker.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if ack_path.exists() and ack_path.read_text().count("\n") >= acknowledged_before_kill:
                break
            time.sleep(0.002)
        os.kill(worker.pid, signal.SIGKILL)
        worker.join()
        acknowledged = {int(line) for line in ack_path.read_text().split()}
        assert len(acknowledged) >= acknowledged_before_kill

        store.flush()
        by_batch = _events_by_batch(store, producer)
        assert acknowledged <= set(by_batch)
        # Only the append in flight at the kill may have landed unacknowledged.
        assert set(by_batch) <= acknowledged | {max(acknowledged) + 1}
        assert set(by_batch.values()) == {ROWS_PER_APPEND}


def test_sigkilled_flusher_leaves_a_store_that_reopens_with_every_row_once(tmp_path: Path) -> None:
    path = str(tmp_path / "costsim.duckdb")
    store = Store(path)
    expected = 0
    for round_ in range(3):
        ready = SPAWN.Event()
        flusher = SPAWN.Process(target=_flush_forever, args=(path, ready))
        flusher.start()
        assert ready.wait(timeout=20)
        for batch in range(30 * (round_ + 1)):  # kills land at different points of a flush
            store.append("events", _event_rows(round_, batch))
            expected += ROWS_PER_APPEND
        os.kill(flusher.pid, signal.SIGKILL)
        flusher.join()
        store.flush()
        [totals] = store.query("SELECT count(*) AS n, count(DISTINCT record_id) AS ids FROM events")
        assert totals == {"n": expected, "ids": expected}


def test_a_flush_killed_before_its_rename_leaves_the_last_database_and_the_spool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flush writes a copy; dying anywhere before the rename loses nothing."""
    store = Store(tmp_path / "costsim.duckdb")
    store.append("events", _event_rows(0, 0))
    store.flush()
    before = store.path.read_bytes()
    store.append("events", _event_rows(0, 1))

    def killed(*args: object) -> None:
        raise KeyboardInterrupt  # stands in for the SIGKILL: nothing after this line runs

    monkeypatch.setattr("costsim.store.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.flush()
    monkeypatch.undo()
    assert store.path.read_bytes() == before  # never written in place
    assert Path(f"{store.path}.next").exists() and len(list(store.spool_dir.glob("events/*.parquet"))) == 1

    assert store.flush() == ROWS_PER_APPEND
    assert not Path(f"{store.path}.next").exists()
    assert _events_by_batch(store, 0) == {0: ROWS_PER_APPEND, 1: ROWS_PER_APPEND}


def test_a_read_with_nothing_spooled_leaves_the_database_file_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    store.append("events", _event_rows(0, 0))
    store.flush()
    inode, mtime = store.path.stat().st_ino, store.path.stat().st_mtime_ns
    assert store.query("SELECT count(*) AS n FROM events") == [{"n": ROWS_PER_APPEND}]
    assert (store.path.stat().st_ino, store.path.stat().st_mtime_ns) == (inode, mtime)
    store.append("events", _event_rows(0, 1))
    assert store.query("SELECT count(*) AS n FROM events") == [{"n": 2 * ROWS_PER_APPEND}]
    assert store.path.stat().st_ino != inode  # rows to ingest: a new copy took its place


def test_a_read_write_session_elsewhere_stops_a_flush_before_it_copies(tmp_path: Path, held_open) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    store.append("events", _event_rows(0, 0))
    store.flush()
    store.append("events", _event_rows(0, 1))
    with held_open(store.path, False), pytest.raises(duckdb.IOException, match="lock"):
        store.flush()
    assert not Path(f"{store.path}.next").exists()  # nothing was copied to replace it with
    assert store.flush() == ROWS_PER_APPEND  # the spooled rows waited
    assert _events_by_batch(store, 0) == {0: ROWS_PER_APPEND, 1: ROWS_PER_APPEND}


def _commit_and_die(path: str) -> None:
    """A user's read-write session that commits a row and is killed before closing."""
    connection = duckdb.connect(path)
    connection.execute("INSERT INTO events (record_id, run_id, step, kind, detail) "
                       "VALUES ('foreign', 'user', 0, 'test', 'x')")
    os._exit(0)  # no close, no checkpoint: the row lives only in the .wal


def test_a_wal_a_killed_user_session_left_is_kept_through_the_next_flush(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    store.append("events", _event_rows(0, 0))
    store.flush()
    user = SPAWN.Process(target=_commit_and_die, args=(str(store.path),))
    user.start()
    user.join()
    assert Path(f"{store.path}.wal").exists()

    store.append("events", _event_rows(0, 1))
    assert store.flush() == ROWS_PER_APPEND
    assert not Path(f"{store.path}.wal").exists()
    assert store.query("SELECT count(*) AS n FROM events WHERE run_id = 'user'") == [{"n": 1}]
    assert store.query("SELECT count(*) AS n FROM events") == [{"n": 2 * ROWS_PER_APPEND + 1}]


def test_temp_files_are_never_ingested_and_stale_ones_are_swept(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    store.append("steps", [_step_row(0)])
    [spooled] = store.spool_dir.glob("steps/*.parquet")
    temp = spooled.with_name(spooled.name + ".tmp")
    spooled.rename(temp)  # a complete file a producer was killed before renaming

    assert store.flush() == 0
    assert temp.exists()  # fresh: might belong to a live producer
    old = time.time() - 2 * 3600
    os.utime(temp, (old, old))
    assert store.flush() == 0
    assert not temp.exists()
    assert store.query("SELECT count(*) AS n FROM steps") == [{"n": 0}]


def test_flush_after_crash_between_commit_and_spool_deletion_duplicates_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    for step in range(0, 50, 10):
        store.append("steps", [_step_row(s) for s in range(step, step + 10)])
    saved = tmp_path / "saved"
    shutil.copytree(store.spool_dir, saved)
    assert store.flush() == 50

    shutil.copytree(saved, store.spool_dir, dirs_exist_ok=True)  # as if deletion never ran
    store.append("steps", [_step_row(50)])
    assert store.flush() == 1
    assert store.query("SELECT count(*) AS n, count(DISTINCT step) AS steps FROM steps") == [{"n": 51, "steps": 51}]
    assert not list(store.spool_dir.glob("*/*"))


def test_a_retried_append_with_its_own_record_ids_is_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    rows = [{**_step_row(s), "record_id": f"r-{s}"} for s in range(3)]
    assert store.append("steps", rows) == ["r-0", "r-1", "r-2"]
    store.append("steps", rows)  # both files land in the same flush
    store.flush()
    store.append("steps", rows)  # and again after it
    assert store.query("SELECT count(*) AS n FROM steps") == [{"n": 3}]


@pytest.mark.parametrize(
    ("table", "rows", "message"),
    [
        ("stepz", [_step_row(0)], "unknown table 'stepz'; allowed: calibrations, checks, cost_measurements,"),
        ("steps", [{**_step_row(0), "loss": 1.0}], "unknown column 'loss' for table 'steps'; allowed: lr, record_id,"),
        ("steps", [{**_step_row(0), "lr": None}], "row 0 for table 'steps' lacks required column 'lr'"),
        ("steps", [{**_step_row(0), "step": "seven"}], "column 'step' of table 'steps' does not fit INTEGER:"),
        ("runs", [_run_row("a", datetime.now(UTC), status="done")],
         "rows for table 'runs' do not fit its schema: Constraint Error: CHECK"),
    ],
)
def test_bad_rows_are_refused_in_the_producer_with_one_line(
    tmp_path: Path, table: str, rows: list[dict[str, object]], message: str
) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    with pytest.raises(ValueError) as error:
        store.append(table, rows)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    assert not list(store.spool_dir.glob("*/*.parquet"))


def test_buffer_appends_every_flush_every_rows_and_the_rest_on_exit(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    with pytest.raises(ValueError, match="unknown table 'stepz'"):
        Buffer(store, "stepz")
    with Buffer(store, "steps", flush_every=10) as buffer:
        for step in range(25):
            buffer.add(_step_row(step))
        assert len(list(store.spool_dir.glob("steps/*.parquet"))) == 2
    assert len(list(store.spool_dir.glob("steps/*.parquet"))) == 3
    assert store.query("SELECT count(*) AS n FROM steps") == [{"n": 25}]


def test_run_summary_resolves_appended_statuses(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    now = datetime.now(UTC)
    long_ago = now - timedelta(hours=3)
    store.append("runs", [_run_row(run_id, long_ago) for run_id in ("killed", "done", "crashed", "beating")])
    store.append("runs", [_run_row("fresh", now), _run_row("done", now)])  # "done" registered twice
    last_heartbeat = {"run_id": "killed", "status": "running", "recorded_at": long_ago + timedelta(minutes=5)}
    store.append("run_status", [last_heartbeat])
    store.record_status("done", "complete")
    store.record_status("done", "running")  # a late heartbeat does not reopen a finished run
    store.record_status("crashed", "failed")
    store.record_status("beating", "running")

    summary = {row["run_id"]: row for row in store.query("SELECT * FROM run_summary")}
    assert {run_id: row["status"] for run_id, row in summary.items()} == {
        "killed": "incomplete", "done": "complete", "crashed": "failed", "beating": "running", "fresh": "running",
    }
    assert summary["done"]["registrations"] == 2
    assert summary["done"]["started_at"] == long_ago.replace(tzinfo=None)
    assert summary["done"]["finished_at"] is not None and summary["killed"]["finished_at"] is None
    assert set(RUN_STATES) >= {row["status"] for row in summary.values()}


def test_timestamps_are_stored_as_naive_utc(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    started = datetime(2026, 11, 28, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    store.append("runs", [_run_row("a", started)])
    assert store.query("SELECT started_at FROM runs") == [{"started_at": datetime(2026, 11, 28, 7, 30)}]


def test_a_plain_duckdb_reader_sees_the_tables_after_flush(tmp_path: Path) -> None:
    path = tmp_path / "costsim.duckdb"
    store = Store(path)
    store.append("steps", [_step_row(s) for s in range(4)])
    store.append("runs", [_run_row("r", datetime.now(UTC))])
    store.flush()

    connection = duckdb.connect(str(path), read_only=True)
    try:
        names = {name for (name,) in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert names == set(TABLES) | {"run_summary"}
        assert connection.execute("SELECT count(*) FROM steps").fetchone() == (4,)
        assert connection.execute("SELECT status FROM run_summary").fetchall() == [("running",)]
    finally:
        connection.close()


def test_flush_adds_columns_that_a_newer_schema_introduced(tmp_path: Path) -> None:
    path = tmp_path / "costsim.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute("CREATE TABLE events (run_id VARCHAR, step INTEGER, kind VARCHAR, record_id VARCHAR)")
    connection.execute("INSERT INTO events VALUES ('old', 1, 'k', 'id-old')")
    connection.close()

    store = Store(path)
    store.append("events", [{"run_id": "new", "step": 2, "kind": "k", "detail": "d"}])
    assert store.query("SELECT run_id, detail FROM events ORDER BY step") == [
        {"run_id": "old", "detail": None}, {"run_id": "new", "detail": "d"},
    ]


def test_reentering_the_lock_from_one_thread_fails_instead_of_deadlocking(tmp_path: Path) -> None:
    store = Store(tmp_path / "costsim.duckdb")
    with store.connect_readonly() as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        with pytest.raises(RuntimeError, match="already locked by this thread"):
            store.query("SELECT 1")
    assert store.query("SELECT 1 AS one") == [{"one": 1}]


def test_docs_describe_every_table() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "store.md").read_text()
    assert [table for table in TABLES if f"`{table}`" not in docs] == []


def test_planning_and_the_store_do_not_need_torch():
    """costsim's search and dashboards read and write the store on a laptop with the base
    install, so nothing on that path may import torch."""
    code = ("import sys, costsim, costsim.search, costsim.dashboard.data, costsim.store, validate, validate.store\n"
            "from validate import Store\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_costsim_module_imports_validate() -> None:
    """Arrows point down: planning (costsim) must work without the training package, so
    not one module under costsim/ may import validate, not even lazily in a function."""
    root = Path(__file__).resolve().parents[1] / "costsim"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                # import_module("validate...") or __import__("validate...")
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                names = [str(node.args[0].value)] if called in {"import_module", "__import__"} else []
            else:
                continue
            offenders += [f"{path.relative_to(root.parent)}:{node.lineno} imports {name}"
                          for name in names if name == "validate" or name.startswith("validate.")]
    assert offenders == []


# --- the file format: what a user's older DuckDB opens -------------------------------------

DUCKDB_CLI_VERSION = "1.5.0"
"""The oldest duckdb-cli on PyPI whose ``duckdb`` command runs as pip installs it (1.4.4's
binary lacks its executable bit); every later 1.x reads what it reads. A test extra."""


def _cli_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return ""
    return done.stdout.strip()


@pytest.fixture(scope="session")
def duckdb_cli(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 1.x ``duckdb`` command from PyPI's duckdb-cli: the test extra's (beside this
    Python, or on PATH), else one pip installs now into a temporary folder. A 2.x CLI
    would prove nothing: it reads every format."""
    for candidate in (Path(sys.executable).with_name("duckdb"), shutil.which("duckdb")):
        if candidate and _cli_version(str(candidate)).startswith("v1."):
            return str(candidate)
    target = tmp_path_factory.mktemp("duckdb-cli")
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                               str(target), f"duckdb-cli=={DUCKDB_CLI_VERSION}"],
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip install duckdb-cli=={DUCKDB_CLI_VERSION} took over 10 minutes")
    binary = target / "duckdb_cli" / "duckdb"  # the native CLI the package's console script runs
    if done.returncode or not _cli_version(str(binary)).startswith("v1."):
        reason = (done.stderr.strip().splitlines() or ["its duckdb binary does not run"])[-1]
        pytest.skip(f"no duckdb-cli 1.x: pip install duckdb-cli=={DUCKDB_CLI_VERSION} failed ({reason}); "
                    "install the test extras: pip install -e '.[test]'")
    return str(binary)


def _store_with_a_run(path: Path) -> Store:
    store = Store(path)
    store.append("runs", [_run_row("r", datetime.now(UTC))])
    store.append("steps", [_step_row(s) for s in range(1, 4)])
    store.record_status("r", "complete")
    store.flush()
    return store


def test_a_new_store_is_written_in_the_storage_version_older_duckdb_reads(tmp_path: Path) -> None:
    path = tmp_path / "costsim.duckdb"
    _store_with_a_run(path)
    connection = duckdb.connect(str(path), read_only=True)
    try:
        [(tags,)] = connection.execute(
            "SELECT tags FROM duckdb_databases() WHERE path = ?", [str(path)]).fetchall()
    finally:
        connection.close()
    assert tags == {"storage_version": f"{STORAGE_VERSION}+"}


def test_the_duckdb_cli_users_install_with_pip_opens_the_store(tmp_path: Path, duckdb_cli: str) -> None:
    path = tmp_path / "costsim.duckdb"
    store = _store_with_a_run(path)
    store.append("steps", [_step_row(4)])  # ingested by a second transaction, as in real use
    store.flush()
    done = subprocess.run(
        [duckdb_cli, "-readonly", str(path), "-csv", "-noheader", "-c",
         "SELECT run_id, status FROM run_summary; SELECT count(*), max(step) FROM steps"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["r,complete", "4,4"], _cli_version(duckdb_cli)


# --- schema evolution ------------------------------------------------------------------------

def test_a_store_from_before_the_trial_costs_opens_and_takes_trials_with_costs(tmp_path: Path) -> None:
    """A store written before search_trials had cost columns, in DuckDB 2.0's own format
    (as costsim made them before STORAGE_VERSION): the next flush adds the columns, old
    rows read NULL, new rows keep their costs."""
    path = tmp_path / "costsim.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute("CREATE TABLE search_trials (study_name VARCHAR NOT NULL, trial_number INTEGER NOT NULL, "
                       "state VARCHAR NOT NULL, params_json VARCHAR NOT NULL, values_json VARCHAR, "
                       "created_at TIMESTAMP NOT NULL, record_id VARCHAR NOT NULL)")
    connection.execute("INSERT INTO search_trials VALUES ('s', 0, 'COMPLETE', '{}', NULL, TIMESTAMP '2026-11-01', "
                       "'s:0')")
    connection.close()

    store = Store(path)
    trial = {"study_name": "s", "trial_number": 1, "state": "COMPLETE", "params_json": "{}",
             "created_at": datetime.now(UTC), "time_s": 3600.0, "cost_usd": 98.5, "peak_memory_bytes": 2.0**34,
             "params_total": 7_000_000_000, "params_non_embedding": 6_500_000_000, "flops_counted": 1e21,
             "infeasible_reason": None}
    store.append("search_trials", [trial])
    rows = store.query("SELECT * EXCLUDE (record_id, created_at) FROM search_trials ORDER BY trial_number")
    costs = [column.name for column in SEARCH_TRIAL_COSTS]
    assert [{key: row[key] for key in costs} for row in rows] == [
        dict.fromkeys(costs), {key: trial[key] for key in costs}]


def test_a_search_stores_each_trials_costs_from_its_user_attrs(tmp_path: Path) -> None:
    """``costsim.search.record`` copies the objective's cost attributes by name, and a
    trial without them (failed, pruned, or from an older objective) stores NULL."""
    import copy
    import dataclasses

    import optuna

    from costsim import search
    from costsim.planner import Budget
    from costsim.spec import HardwareSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = Budget(flops=1e19)
    result = search.run(budget, HardwareSpec(gpu="h100-sxm", n_gpus=8), n_trials=6, seed=0,
                        loss_profile="chinchilla-published")
    costs = {"time_s": 7200.0, "cost_usd": 412.0, "peak_memory_bytes": 5.0e10, "params_total": 124_000_000,
             "params_non_embedding": 85_000_000, "flops_counted": 9.9e18, "infeasible_reason": "over budget"}
    trials = [copy.deepcopy(t) for t in result.trials]
    trials[0].user_attrs = {"worker": "elsewhere:1", **costs}
    trials[1].user_attrs = {}
    search.record(str(tmp_path / "s.duckdb"), dataclasses.replace(result, trials=trials), budget)

    names = [column.name for column in SEARCH_TRIAL_COSTS]
    rows = Store(tmp_path / "s.duckdb").query(
        f"SELECT trial_number, {', '.join(names)} FROM search_trials ORDER BY trial_number")
    assert [row["trial_number"] for row in rows] == [t.number for t in trials]
    assert {key: rows[0][key] for key in names} == costs
    assert {key: rows[1][key] for key in names} == dict.fromkeys(names)


# --- docs/store.md: every SQL block runs ---------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "store.md"
DOC_RUN_ID = "20261128-093000-a1b2c3"  # the ids the documented queries name
DOC_STUDY = "costsim-flops-1e+19"


def _documented_queries() -> list[str]:
    return re.findall(r"^```sql\n(.*?)^```", DOCS.read_text(), flags=re.MULTILINE | re.DOTALL)


def _store_with_one_of_everything(path: Path) -> Store:
    """A finished run with steps, evaluations and their predictions, and a search with a
    feasible and an infeasible trial: tiny fake rows, through the Store API."""
    store = Store(path)
    now = datetime.now(UTC)
    store.append("runs", [_run_row(DOC_RUN_ID, now - timedelta(minutes=5))])
    store.append("steps", [{**_step_row(step), "run_id": DOC_RUN_ID} for step in range(1, 5)])
    store.append("evals", [{"run_id": DOC_RUN_ID, "step": step, "tokens": 1024.0 * step, "flops_counted": 1e9 * step,
                            "val_loss": 4.0 - 0.5 * step, "wall_time_s": 0.1 * step} for step in (0, 2, 4)])
    store.append("loss_predictions", [{
        "run_id": DOC_RUN_ID, "step": step, "tokens": 1024.0 * step, "profile_name": "stdlib-bytes",
        "interval_coverage": 0.9, "val_loss_predicted": 3.9 - 0.5 * step,
        "val_loss_predicted_lower": 3.7 - 0.5 * step, "val_loss_predicted_upper": 4.1 - 0.5 * step,
    } for step in (2, 4)])
    store.record_status(DOC_RUN_ID, "complete")
    trial = {"study_name": DOC_STUDY, "state": "COMPLETE", "params_json": "{}", "created_at": now}
    store.append("search_trials", [
        {**trial, "trial_number": 0, "values_json": '{"loss": 3.2}', "time_s": 3600.0, "cost_usd": 100.0,
         "peak_memory_bytes": 2.0**35, "params_total": 124_000_000, "params_non_embedding": 85_000_000,
         "flops_counted": 1e19},
        {**trial, "trial_number": 1, "values_json": '{"loss": Infinity}', "infeasible_reason": "peak memory 97 GiB "
         "exceeds the GPU's 80 GiB"},
    ])
    return store


def test_every_sql_block_in_the_docs_answers_from_a_small_store(tmp_path: Path) -> None:
    queries = _documented_queries()
    assert len(queries) >= 5
    store = _store_with_one_of_everything(tmp_path / "costsim.duckdb")
    for sql in queries:
        assert store.query(sql), f"no rows from the documented query:\n{sql}"
