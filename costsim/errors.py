"""User-facing errors: one line that names the problem and the fix, never a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps

from pydantic import ValidationError


class CostsimError(Exception):
    """An error caused by the user's input; the CLI prints it as one line, exit 2."""


class SpecError(CostsimError, ValueError):
    """The spec (or another config) is invalid."""


_UNION_MODELS = {"GPUSpec"}  # union branches pydantic names in a path; dropped from what the user reads


def one_line(exc: ValidationError) -> str:
    """Flatten a pydantic ValidationError into one line: ``path: message``."""
    parts = []
    errors = exc.errors()
    # a union (a preset name or an inline mapping): report the branch the user wrote, not "should be a string"
    mappings = {e["loc"][:-2] for e in errors if len(e["loc"]) > 2 and e["loc"][-2] in _UNION_MODELS}
    errors = [e for e in errors if not (e["loc"] and e["loc"][-1] == "str" and e["loc"][:-1] in mappings)] or errors
    for error in errors:
        path = ".".join(str(p) for p in error["loc"] if p not in _UNION_MODELS)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; check the spelling (python -m costsim.schema lists the allowed keys)"
        elif error["type"] == "missing":
            message = "required field is missing"
        parts.append(f"{path}: {message}" if path else message)
    more = f" (and {len(parts) - 1} more)" if len(parts) > 1 else ""
    return parts[0] + more if len(parts) > 2 else "; ".join(parts)


# Packages only some commands need, and how to get them (a missing one is a user's
# setup, so it gets one line like any other user error).
OPTIONAL_MODULES = {
    "torch": "pip install torch -e '.[validate]' (on a CPU-only machine: pip install torch==2.13.0 -e '.[validate]')",
}


def cli_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Run a CLI entry point; user errors print one line to stderr and exit 2."""

    @wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except CostsimError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except ModuleNotFoundError as exc:
            if exc.name not in OPTIONAL_MODULES:
                raise
            print(f"error: this command needs {exc.name}, which is not installed; {OPTIONAL_MODULES[exc.name]}",
                  file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # output piped into e.g. head, which stopped reading
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141

    return wrapper
