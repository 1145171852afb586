"""Which process did something, and is it still there: how a killed worker is recognised
(a DuckDB run marked running, an Optuna trial left RUNNING) without a heartbeat."""

from __future__ import annotations

import os
import socket


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_gone(worker: str) -> bool:
    """True if ``worker`` (``host:pid``) ran on this host and its process no longer exists."""
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))
