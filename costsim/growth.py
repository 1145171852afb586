"""The growth operators: one table of what each grows and whether it keeps the function.

The spec reads it for the valid names and which of them grow depth or width, the loss
model for which operators cost a loss jump (a function-preserving one cannot), and the
search for the depth operators it tries. ``validate/model.py`` registers the weight
operation of each name; a test holds the two tables to the same names. Adding an
operator is one row here and one registered function there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class GrowthOperator:
    name: str
    grows: Literal["depth", "width"]
    preserves_function: bool  # the grown model computes exactly what the smaller one did
    summary: str
    # adds freshly initialised blocks: the loss model's start-up counts them as not yet in
    # use (copies of trained blocks, and every block of a widened model, stay in use)
    fresh_blocks: bool = False


OPERATORS: dict[str, GrowthOperator] = {op.name: op for op in (
    GrowthOperator("random_top", "depth", False, "fresh blocks on top, initialised as at the start (the study's)",
                    fresh_blocks=True),
    GrowthOperator("stack_copy", "depth", False, "copies of the trained blocks on top, bottom first"),
    GrowthOperator("stack_middle", "depth", False, "copies of the middle blocks, inserted in the middle"),
    GrowthOperator("identity", "depth", True, "fresh blocks on top whose output projections start at zero",
                    fresh_blocks=True),
    GrowthOperator("widen_preserving", "width", True,
                   "every width grows by one integer factor, each hidden vector becomes copies of itself"),
    GrowthOperator("widen_random", "width", False, "the old weights fill the leading slices of a fresh wider model"),
)}

DEPTH_OPERATORS = tuple(name for name, op in OPERATORS.items() if op.grows == "depth")
WIDTH_OPERATORS = tuple(name for name, op in OPERATORS.items() if op.grows == "width")
# operators whose growth changes the function, so the loss model gives them a jump
JUMP_OPERATORS = tuple(name for name, op in OPERATORS.items() if not op.preserves_function)
DEFAULT_DEPTH_OPERATOR = "random_top"
DEFAULT_WIDTH_OPERATOR = "widen_preserving"


def describe(names: tuple[str, ...]) -> str:
    """'name: summary; ...' for a spec field's description."""
    return "; ".join(f"{name}: {OPERATORS[name].summary}" for name in names)
