import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

# Tests must be fast and deterministic on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@contextmanager
def _held_open(path: Path, read_only: bool) -> Iterator[None]:
    """Another process (the duckdb CLI, a notebook) holding a DuckDB file open until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; "
                               "c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == '1'); "
                               "print('ready', flush=True); time.sleep(30)", str(path), str(int(read_only))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def held_open() -> Callable[[Path, bool], AbstractContextManager[None]]:
    """``with held_open(path, read_only): ...`` runs the block while another process holds the file."""
    return _held_open
