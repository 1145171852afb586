"""Data files shipped inside the package (``costsim/data/<folder>/<name>.json``): GPU
presets, calibration and loss profiles, trainer profiles, model presets. One place that
knows where they live and how they are named, read through importlib.resources so an
installed package finds them as a checkout does."""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable


def data_dir(folder: str) -> Traversable:
    return resources.files("costsim") / "data" / folder


@cache
def shipped_names(folder: str) -> tuple[str, ...]:
    """Names of the ``.json`` files in a data folder, sorted, without the suffix."""
    return tuple(sorted(p.name.removesuffix(".json") for p in data_dir(folder).iterdir() if p.name.endswith(".json")))


def shipped_text(folder: str, name: str) -> str:
    return (data_dir(folder) / f"{name}.json").read_text()
