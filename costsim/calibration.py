"""Fit a CostProfile (time and memory efficiencies) to measured training steps.

Both models are linear in their unknowns once written as ``1/efficiency``:
  step_time = (F_mm + K_mm f_half)/(P e_mm) + F_attn/(P e_attn) + B/(BW e_bw) + N t_launch
  peak_alloc = known states + saved activations + k_logits * tokens * V + overhead
so each is a non-negative least-squares problem, weighted to minimise relative error.
The fit uses part of the cases; the rest are held out and their errors reported.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.optimize import lsq_linear, nnls

from costsim.constants import COMPUTE_BYTES
from costsim.errors import SpecError
from costsim.hardware import GPUSpec
from costsim.memory import peak_memory
from costsim.ops import StageShape
from costsim.profile import CostProfile
from costsim.timing import ADAMW_KERNELS, micro_batch_time_s, micro_batch_work, optimizer_time_s


class CostCase(BaseModel):
    """One single-step case: shape, train policy and recompute, in the short names of
    the shared calibration format (../shared/calibration/README.md)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    V: int
    d: int
    h: int
    L: int
    T: int
    B: int
    frozen: int = 0
    freeze_emb: bool = False
    tied: bool = True
    ckpt: bool = False
    mlp: str = "gelu"
    n_kv_heads: int | None = None


class MeasuredStep(CostCase):
    """A case with what one training step of it measured."""

    precision: str = "bf16-mixed"
    counted_flops: int | None = None
    step_s_median: float
    peak_alloc_bytes: float | None = None  # None on the CPU
    peak_reserved_bytes: float | None = None


def load_measurements(path: str | Path) -> tuple[dict, list[MeasuredStep]]:
    """Measured GPU steps from a JSON file (cases without GPU memory readings are skipped)."""
    try:
        data = json.loads(Path(path).read_text())
        cases = [MeasuredStep.model_validate(c) for c in data["cases"]]
        info = data.get("info", {})
    except OSError as exc:
        raise SpecError(f"{path}: cannot read it ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"{path}: not a measurements file ({type(exc).__name__}: {first}); it needs a 'cases' list "
                        "as python -m validate.measure writes") from None
    return info, [c for c in cases if c.peak_alloc_bytes is not None]


def measured_step(row: Mapping[str, Any]) -> MeasuredStep:
    """A row of the store's ``cost_measurements`` table as a MeasuredStep.

    Here rather than in ``validate`` because the dashboards read stored measurements
    without torch, and planning code must not import the training package."""
    return MeasuredStep(
        name=row["name"], V=row["vocab_size"], d=row["d_model"], h=row["n_heads"], L=row["n_layers"],
        T=row["seq_len"], B=row["micro_batch_size"], frozen=row["frozen_blocks"],
        freeze_emb=row["freeze_embeddings"], tied=row["tied_embeddings"], ckpt=row["recompute"],
        mlp=row.get("mlp") or "gelu", n_kv_heads=row.get("n_kv_heads"), precision=row["precision"],
        counted_flops=round(row["counted_flops"]), step_s_median=row["step_time_s"],
        peak_alloc_bytes=row["peak_alloc_bytes"] or None, peak_reserved_bytes=row["peak_reserved_bytes"] or None,
    )


def shape_of(cases: list[MeasuredStep]) -> StageShape:
    return StageShape.of(
        layers=[c.L for c in cases], d_model=[c.d for c in cases], n_heads=[c.h for c in cases],
        n_kv_heads=[c.n_kv_heads or c.h for c in cases], d_ff=[4 * c.d for c in cases], vocab_size=[c.V for c in cases],
        seq_len=[c.T for c in cases], micro_batch_size=[c.B for c in cases],
        n_trainable=[c.L - c.frozen for c in cases], train_embeddings=[not c.freeze_emb for c in cases],
        tied=[c.tied for c in cases], swiglu=[c.mlp == "swiglu" for c in cases], recompute=[c.ckpt for c in cases],
        compute_bytes=[COMPUTE_BYTES[c.precision] for c in cases],
    )


def split_holdout(cases: list[MeasuredStep], every: int = 3) -> tuple[list[MeasuredStep], list[MeasuredStep]]:
    """Deterministic split: every ``every``-th case (in file order) is held out."""
    fit = [c for i, c in enumerate(cases) if i % every != every - 1]
    held = [c for i, c in enumerate(cases) if i % every == every - 1]
    return fit, held


def _fit_time(cases: list[MeasuredStep], gpu: GPUSpec) -> dict[str, float]:
    s = shape_of(cases)
    w = micro_batch_work(s)
    peak = np.array([gpu.peak_flops_per_s(c.precision) for c in cases])
    bw = gpu.hbm_bandwidth_bytes_per_s
    # the optimizer's bytes also go at the fitted bandwidth; its launches at t_launch
    unit = CostProfile(name="unit", device="", matmul_efficiency=1, matmul_half_flops=0, attention_efficiency=1,
                       bandwidth_efficiency=1, launch_overhead_s=0, logits_transient_bytes=0,
                       memory_overhead_bytes=0, reserve_fraction=0)
    optimizer_bytes_s = optimizer_time_s(s, bw, unit)
    columns = np.stack([
        w.matmul_flops / peak,  # x 1/e_mm
        w.matmul_kernels / peak,  # x f_half/e_mm
        w.attention_flops / peak,  # x 1/e_attn
        w.memory_bytes / bw + optimizer_bytes_s,  # x 1/e_bw
        w.kernels + ADAMW_KERNELS,  # x t_launch
    ], axis=1).astype(float)
    measured = np.array([c.step_s_median for c in cases])
    # Bounds keep each efficiency physical when few cases cannot separate the terms:
    # matmuls at most the peak; attention at most 2.5x (flash skips the masked half of
    # what the counter counts); bandwidth at most the datasheet's.
    result = lsq_linear(columns / measured[:, None], np.ones(len(cases)),
                        bounds=([1.0, 0.0, 1 / 2.5, 1.0, 0.0], [100.0, np.inf, 100.0, 100.0, 1e-3]))
    inv_mm, half_over_mm, inv_attn, inv_bw, launch = result.x
    return {
        "matmul_efficiency": 1 / inv_mm,
        "matmul_half_flops": half_over_mm / inv_mm,
        "attention_efficiency": 1 / inv_attn,
        "bandwidth_efficiency": 1 / inv_bw,
        "launch_overhead_s": launch,
    }


def _fit_memory(cases: list[MeasuredStep], gpu: GPUSpec) -> dict[str, float]:
    s = shape_of(cases)
    zero = CostProfile(name="zero", device="", matmul_efficiency=1, matmul_half_flops=0, attention_efficiency=1,
                       bandwidth_efficiency=1, launch_overhead_s=0, logits_transient_bytes=0,
                       memory_overhead_bytes=0, reserve_fraction=0)
    # everything but the transients, whose logits part is what we fit
    no_transient = peak_memory(s, zero)
    known = no_transient.peak_allocated - no_transient.transient
    measured = np.array([c.peak_alloc_bytes for c in cases])
    logits = (s.tokens * s.vocab_size).astype(float)
    columns = np.stack([logits, np.ones(len(cases))], axis=1)
    x, _ = nnls(columns / measured[:, None], (measured - known) / measured)
    reserved = np.array([c.peak_reserved_bytes for c in cases])
    allocating = zero.model_copy(update={"logits_transient_bytes": float(x[0]), "memory_overhead_bytes": float(x[1])})
    predicted = peak_memory(s, allocating)
    # the reserve (memory.reserved_bytes): a share of the transients plus a constant, fitted
    # in relative terms as the allocation itself
    reserve_columns = np.stack([predicted.transient, np.ones(len(cases))], axis=1)
    r, _ = nnls(reserve_columns / reserved[:, None], (reserved - predicted.peak_allocated) / reserved)
    return {"logits_transient_bytes": float(x[0]), "memory_overhead_bytes": float(x[1]),
            "reserve_fraction": float(r[0]), "reserve_bytes": float(r[1])}


def relative_errors(cases: list[MeasuredStep], profile: CostProfile, gpu: GPUSpec) -> dict[str, list[float]]:
    """Signed relative errors (predicted/measured - 1) of step time and peak memory."""
    s = shape_of(cases)
    peak = np.array([gpu.peak_flops_per_s(c.precision) for c in cases])
    time = micro_batch_time_s(s, peak, gpu.hbm_bandwidth_bytes_per_s, profile) + optimizer_time_s(
        s, gpu.hbm_bandwidth_bytes_per_s, profile)
    memory = peak_memory(s, profile)
    return {
        "step_time": list(time / np.array([c.step_s_median for c in cases]) - 1),
        "peak_allocated": list(memory.peak_allocated / np.array([c.peak_alloc_bytes for c in cases]) - 1),
        "peak_reserved": list(memory.peak_reserved / np.array([c.peak_reserved_bytes for c in cases]) - 1),
    }


def summarise(errors: dict[str, list[float]], names: list[str]) -> dict:
    out = {}
    for key, values in errors.items():
        absolute = [abs(v) for v in values]
        worst = int(np.argmax(absolute))
        out[key] = {"median_abs_rel_error": statistics.median(absolute), "worst_abs_rel_error": absolute[worst],
                    "worst_case": names[worst]}
    return out


def fit_profile(cases: list[MeasuredStep], gpu: GPUSpec, *, name: str, device: str, holdout_every: int = 3,
                source: str = "") -> CostProfile:
    fit, held = split_holdout(cases, holdout_every)
    params = {**_fit_time(fit, gpu), **_fit_memory(fit, gpu)}
    draft = CostProfile(name=name, device=device, **params)
    report = {
        "n_fit": len(fit), "n_holdout": len(held), "holdout_cases": [c.name for c in held],
        "holdout": summarise(relative_errors(held, draft, gpu), [c.name for c in held]),
        "fit": summarise(relative_errors(fit, draft, gpu), [c.name for c in fit]),
    }
    return draft.model_copy(update={"fitted_on": source, "holdout_report": report})
