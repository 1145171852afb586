"""Which form of the allocator's reserve predicts measured reserved peaks (not a timed test).

On the shipped H200 sweep (every step with a measured reserved peak), leave-one-out: fit
each form's coefficients on the other steps, predict the one left out, and print the rms
and worst relative error of the reserved peak. The allocated peak is the measured one, so
only the reserve is judged. Forms, extra = reserved - allocated:
  share of allocated           r * allocated                 (costsim before 2026-12-02)
  share of non-persistent      r * (allocated - weights - gradients - optimizer)
  constant                     c
  share of transients + const  r * transient + c             (memory.reserved_bytes)
Run: python benchmarks/reserve_forms.py
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from scipy.optimize import nnls

from costsim.calibration import load_measurements, shape_of
from costsim.memory import peak_memory
from costsim.profile import load_profile


def main() -> None:
    path = resources.files("costsim") / "data" / "measurements" / "h200_sweep_2026-11-28.json"
    _, cases = load_measurements(path)
    cases = [c for c in cases if c.peak_reserved_bytes]
    # the fitted allocation model, without its reserve: what each form adds to
    profile = load_profile("h200").model_copy(update={"reserve_fraction": 0.0, "reserve_bytes": 0.0})
    m = peak_memory(shape_of(cases), profile)
    allocated = np.array([c.peak_alloc_bytes for c in cases])
    reserved = np.array([c.peak_reserved_bytes for c in cases])
    ones = np.ones(len(cases))
    forms = {
        "share of allocated": [allocated],
        "share of non-persistent": [allocated - (m.weights + m.gradients + m.optimizer)],
        "constant": [ones],
        "share of transients + const": [m.transient, ones],
    }
    print(f"H200 sweep: {len(cases)} steps with a measured reserved peak; leave-one-out relative error")
    for name, columns in forms.items():
        x = np.stack(columns, axis=1)
        errors = []
        for i in range(len(cases)):
            keep = np.arange(len(cases)) != i
            coef, _ = nnls(x[keep] / reserved[keep, None], (reserved[keep] - allocated[keep]) / reserved[keep])
            errors.append((allocated[i] + x[i] @ coef) / reserved[i] - 1)
        e = np.array(errors)
        print(f"  {name:28s} rms {np.sqrt(np.mean(e ** 2)):.1%}  worst {e[np.argmax(np.abs(e))]:+.1%}")


if __name__ == "__main__":
    main()
