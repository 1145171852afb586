"""User-facing errors: one line per mistake, naming the problem and the fix, never a traceback."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import get_args

from pydantic import BaseModel, ValidationError


class CostsimError(Exception):
    """An error caused by the user's input; the CLI prints it (one line per mistake), exit 2."""


class SpecError(CostsimError, ValueError):
    """The spec (or another config) is invalid."""


_UNION_MODELS = {"GPUSpec"}  # union branches pydantic names in a path; dropped from what the user reads

# A spec with many mistakes lists this many, then says how many more; each is one line.
MAX_LISTED_MISTAKES = 10


class Mistakes(ValueError):
    """Independent mistakes one validator found (the spec's cross-field rules), each
    already ``path: message``; raised inside a pydantic validator, each is listed."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


def mistake_lines(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """Every mistake in a pydantic ValidationError as ``path: message``, one per item;
    ``model`` (what was validated) lets an unknown key be told the allowed key it resembles."""
    errors = exc.errors()
    # a union (a preset name or an inline mapping): report the branch the user wrote, not "should be a string"
    mappings = {e["loc"][:-2] for e in errors if len(e["loc"]) > 2 and e["loc"][-2] in _UNION_MODELS}
    errors = [e for e in errors if not (e["loc"] and e["loc"][-1] == "str" and e["loc"][:-1] in mappings)] or errors
    renamed = _misspellings(errors, model)
    lines = []
    for error in errors:
        if error["type"] == "missing" and error["loc"] in renamed.values():
            continue  # said once, as the misspelled key that meant it
        path = ".".join(str(p) for p in error["loc"] if p not in _UNION_MODELS)
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, Mistakes):
            lines += [f"{path}: {m}" if path else m for m in cause.messages]
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            meant = renamed.get(error["loc"])
            hint = f"did you mean {meant[-1]!r}?" if meant else "check the spelling"
            message = f"unknown key; {hint} (python -m costsim.schema lists the allowed keys)"
        elif error["type"] == "missing":
            message = "required field is missing; add it"
        lines.append(f"{path}: {message}" if path else message)
    return lines


def _misspellings(errors: list[dict], model: type[BaseModel] | None) -> dict[tuple, tuple]:
    """Unknown keys that look like a key allowed beside them (``layer`` for ``layers``),
    as the location of the key meant; a missing key meant this way is the same mistake."""
    missing: dict[tuple, list[str]] = {}
    for e in errors:
        if e["type"] == "missing" and e["loc"] and isinstance(e["loc"][-1], str):
            missing.setdefault(e["loc"][:-1], []).append(e["loc"][-1])
    renamed = {}
    for e in errors:
        if e["type"] == "extra_forbidden" and isinstance(e["loc"][-1], str):
            parent, key = e["loc"][:-1], e["loc"][-1]
            # a missing key first: the likeliest meaning, and then one mistake, not two
            for candidates in (missing.get(parent, []), _allowed_keys(model, parent)):
                if close := difflib.get_close_matches(key, candidates, n=1, cutoff=0.6):
                    renamed[e["loc"]] = (*parent, close[0])
                    break
    return renamed


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The keys of the model found at ``loc`` inside ``model`` (list indices and union
    branches skipped), or none where the path leads elsewhere."""
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int) or part in _UNION_MODELS:
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``list[StageSpec]``, ``str | GPUSpec``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


def list_mistakes(lines: list[str], limit: int = MAX_LISTED_MISTAKES) -> str:
    """One mistake: its line. Several: a count, then one indented line each (at most
    ``limit``, then how many more)."""
    if len(lines) == 1:
        return lines[0]
    shown = lines[:limit] + ([f"and {len(lines) - limit} more"] if len(lines) > limit else [])
    return f"{len(lines)} mistakes:\n" + "\n".join(f"  {line}" for line in shown)


def validation_message(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """A pydantic ValidationError as the user reads it: every mistake, one line each
    (``model``: what was validated, for "did you mean" on unknown keys)."""
    return list_mistakes(mistake_lines(exc, model))


one_line = validation_message  # the name costsim/search.py imports; a single mistake is still one line


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
