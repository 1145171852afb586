"""Mutated specs for robustness checks (``tests/test_fuzz.py`` samples them,
``benchmarks/fuzz.py`` runs thousands): every mutation of a valid spec must give either
a ``SpecError`` (one line per mistake) or an answer whose numbers are all finite and non-negative."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

ODD_VALUES = [
    0, -1, 1, 2**31, 2**63, 2**64 + 1, 10**400, -(2**63), 1e308, -1e308, 1e-308, float("nan"), float("inf"),
    -float("inf"), 0.5, 1.0e12, "", "x", "1e3", None, True, [], [1, 2], {}, {"a": 1}, "all", "new", "top:0",
    "top:99999", "random_top", "widen_preserving", 3, 7, 64, 1024, 50304,
]


def base_specs() -> list[dict]:
    """The shipped examples as plain data (the mutation seeds)."""
    import json
    import tomllib

    out = []
    for path in sorted(EXAMPLES.iterdir()):
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            out.append(yaml.safe_load(text))
        elif path.suffix == ".json":
            out.append(json.loads(text))
        elif path.suffix == ".toml":
            out.append(tomllib.loads(text))
    return out


def _paths(node, prefix=()):
    yield prefix
    if len(prefix) > 6:  # inside a deep-nesting mutation: nothing more to find
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _get(node, path):
    for key in path:
        node = node[key]
    return node


def mutate(spec: dict, rng: random.Random) -> dict:
    """One to three random mutations: a value replaced by an odd one or scaled, a key
    deleted or added, a stage duplicated, or deep nesting."""
    spec = copy.deepcopy(spec)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(spec) if p]
        path = rng.choice(paths)
        parent, key = _get(spec, path[:-1]), path[-1]
        kind = rng.random()
        if kind < 0.45:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif kind < 0.65 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            try:
                value = parent[key] * rng.choice([2**20, 2**40, 1e-6, -1, 3])
                whole = isinstance(parent[key], int) and float(value).is_integer()
            except OverflowError:  # an int past float's range (an earlier mutation): keep it an int
                value, whole = parent[key] * 3, False
            parent[key] = int(value) if whole else value
        elif kind < 0.75 and isinstance(parent, dict):
            del parent[key]
        elif kind < 0.85 and isinstance(parent, dict):
            parent[rng.choice(["extra", "Layers", "tokenz", "lr"])] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif kind < 0.93 and isinstance(spec.get("stages"), list) and spec["stages"]:
            spec["stages"].append(copy.deepcopy(rng.choice(spec["stages"])))
        else:
            deep: dict = {}
            node = deep
            for _ in range(rng.choice([10, 200, 1000])):
                node["x"] = {}
                node = node["x"]
            parent[key] = deep
            break  # nothing after it: copying a 1000-deep value is the parser's test, not the fuzzer's
    return spec


def bad_numbers(value, where: str = "") -> list[str]:
    """Paths of numbers in a result that are NaN, infinite or negative."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += bad_numbers(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += bad_numbers(v, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            found.append(f"{where}={value}")
    return found


def check(spec: dict) -> str:
    """'refused' (a SpecError, one line per mistake), 'answered' (all numbers sane), or raises
    AssertionError for a bad answer; any other exception escapes (a crash)."""
    from costsim.engine import estimate
    from costsim.errors import SpecError
    from costsim.loss_report import loss_report
    from costsim.spec import parse_spec

    try:
        parsed = parse_spec(spec)
    except SpecError as exc:
        # one line, or one line per mistake under a count ("3 mistakes:")
        lines = str(exc).splitlines()
        assert len(lines) == 1 or (lines[0].endswith(" mistakes:") and all(line.startswith("  ") and line.strip()
                                                                          for line in lines[1:])), \
            f"not one line per mistake: {exc}"
        return "refused"
    result = estimate(parsed).model_dump()
    result["loss"] = loss_report(parsed, points_per_stage=4).model_dump()
    bad = bad_numbers(result)
    assert not bad, f"NaN/inf/negative in the answer: {bad[:5]}"
    return "answered"
