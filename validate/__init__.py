"""validate: train growth schedules for real, measure them, and check costsim's predictions.

Training needs torch (``pip install -e '.[validate]'``). The store does not, and costsim's
search and dashboards use it without torch, so the names below load on first use.
"""

from importlib import import_module

_HOMES = {"GPT": "validate.model", "GPTShape": "validate.model", "RunOptions": "validate.trainer",
          "Store": "costsim.store", "TokenDataset": "validate.data", "Trainer": "validate.trainer",
          "open_dataset": "validate.data"}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'validate' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
