"""Plans out: a schedule written as the files a trainer takes (``python -m costsim.export``).

One registered ``ExportFormat`` per trainer (``FORMATS``): nanoGPT's train.py
(nanogpt.py) and Hugging Face transformers (hf.py); ``base.py`` holds what they share,
``folder.py`` writes a folder (``export_plan``) and reads one back (``load_exported``),
``cli.py`` is the command.
"""

from costsim.export import hf, nanogpt  # noqa: F401  (importing a format registers it)
from costsim.export.base import FORMATS, MANIFEST, README, ExportError, ExportFormat, StagePlan, plan_stages
from costsim.export.folder import ExportResult, export_plan, load_exported

__all__ = ["FORMATS", "MANIFEST", "README", "ExportError", "ExportFormat", "ExportResult", "StagePlan", "export_plan",
           "load_exported", "plan_stages"]
