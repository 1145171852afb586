"""The store moved to ``costsim.store``, below both ``costsim`` and ``validate``.

This name stays so that code written against ``validate.store`` keeps working.
"""

from costsim.store import *  # noqa: F403
from costsim.store import __all__  # noqa: F401
