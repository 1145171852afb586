"""Checking where a command will write before it does any work: a bad path is one line
at the start, never an error after a long search, and no folder is created unasked."""

from __future__ import annotations

import os
from pathlib import Path

from costsim.errors import CostsimError


def output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a file this process can create or overwrite, or a one-line error naming ``flag``."""
    p = Path(path)
    if p.is_dir():
        raise CostsimError(f"{flag} {path}: is a folder; give a file path")
    parent = p.parent
    if not parent.is_dir():
        raise CostsimError(f"{flag} {path}: folder {parent} does not exist; create it or pick another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CostsimError(f"{flag} {path}: folder {parent} is not writable; pick another path")
    if p.exists() and not os.access(p, os.W_OK):
        raise CostsimError(f"{flag} {path}: the file is not writable; pick another path")
    return p


def storage_target(url: str, flag: str = "--storage") -> None:
    """The file behind a journal or SQLite storage URL must be creatable; server URLs are
    checked when connecting."""
    if url.startswith("journal:") or url.endswith((".log", ".jsonl")):
        output_file(url.removeprefix("journal:"), flag)
    elif url.startswith("sqlite:///"):
        output_file(url.removeprefix("sqlite:///"), flag)
