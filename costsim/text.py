"""Plain-text formatting the command-line tools share: SI numbers, durations, bytes and
aligned tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

_PREFIXES = ((1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float, unit: str = "") -> str:
    """Three significant digits and an SI prefix: 9.996e17 is '1EFLOP', not '1e+03PFLOP'."""
    rounded = float(f"{value:.3g}")  # round first, so the prefix is chosen for the printed value
    for scale, prefix in _PREFIXES:
        if abs(rounded) >= scale:
            return f"{rounded / scale:.3g}{prefix}{unit}"
    return f"{rounded:.3g}{unit}"


def duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.2f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3g} s"


TIME_UNITS = ((3600.0, "h"), (60.0, "min"), (1.0, "s"))


def time_unit(seconds: float) -> tuple[float, str]:
    """The unit (seconds per unit, its symbol) that shows ``seconds`` best: hours from an
    hour, minutes from a minute, else seconds. An axis picks one for its largest value."""
    for scale, unit in TIME_UNITS:
        if abs(seconds) >= scale:
            return scale, unit
    return 1.0, "s"


def dollars(value: float) -> str:
    """Plain dollars with cents, never an SI prefix: '$1,234.50', '$0.05'; under a cent,
    two significant digits ('$0.000032') so a tiny amount does not read as '$0.00'."""
    sign = "-" if value < 0 else ""
    amount = abs(value)
    if amount == 0 or amount >= 0.01 or not math.isfinite(amount):
        return f"{sign}${amount:,.2f}"
    return f"{sign}${amount:.{1 - math.floor(math.log10(amount))}f}"


def binary_bytes(n: float) -> str:
    """Bytes in GiB, MiB or KiB, one decimal."""
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def table(rows: Sequence[Sequence[str]], left: Sequence[int] = (), rule_before_last: bool = False) -> list[str]:
    """Columns aligned (right, or left for the indices in ``left``), a rule under the
    header and, for a totals row, above the last row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    rule = "-" * len(lines[0])
    lines.insert(1, rule)
    if rule_before_last:
        lines.insert(len(lines) - 1, rule)
    return lines
