"""costsim against published multi-GPU runs: peak memory, fit and throughput.

For each published configuration (costsim/data/measurements/<source>.json) it builds the
spec with the source's trainer profile and prints predicted against published peak memory
(GiB; reserved, as torch's allocator reserves it) and whether the run fits: on the card
(peak <= its memory) and under costsim's rule (peak <= 90% of it, the one ``estimate`` and
the search use); and predicted against published tokens/s per GPU. The reference profile's
prediction of the same runs is printed beside it. Nothing here is fitted to these numbers:
the time and memory calibration is the shipped one for the card (``generic`` for the
H100), each trainer switch follows its formula (costsim/trainers.py).

Sources with tensor and pipeline parallelism (``LAYOUT_SOURCES``: NeMo / Megatron-core runs)
publish step times, no memory: per run it prints the layout, predicted against measured
step time and tokens/s per GPU, and where costsim's predicted step goes, each term as a share
of the measured step: the tensor-parallel collectives, the pipeline sends and the
data-parallel traffic as far as the source's trainer profile leaves them exposed (its
overlap switches, costsim/trainers.py), and the pipeline bubble (the rest is the compute
roofline and the optimizer). Then the peak memory under the source's trainer profile
and whether it fits the card it ran on, and per source and per model the median and worst
error. Rows with context parallelism, which costsim does not model, are counted, not costed.

Run: python benchmarks/published_scale.py
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from costsim.engine import spec_costs
from costsim.published import (
    LAYOUT_SOURCES,
    SOURCES,
    PublishedRun,
    load_source,
    predict,
    published_runs,
)
from costsim.spec import ScheduleSpec
from costsim.text import table


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _error(predicted: float, published: float) -> float:
    return predicted / published - 1


def _summary(label: str, errors: list[tuple[float, str]]) -> str:
    if not errors:
        return f"  {label}: nothing published"
    median = statistics.median(abs(e) for e, _ in errors)
    worst, where = max(errors, key=lambda e: abs(e[0]))
    return f"  {label}: median |error| {median:.1%}, worst {worst:+.1%} ({where}), n={len(errors)}"


def _fit_only(runs: list[PublishedRun], card_gib: float) -> list[str]:
    """A source that publishes runs that ran (they fit) and their throughput, no memory."""
    rows = [("run", "ref peak", "ref fits", "peak", "alloc", "fits card", "fits 90%", "tok/s/GPU", "published",
             "error")]
    tps_errors, fits = [], {"ref card": 0, "ref 90%": 0, "card": 0, "90%": 0, "alloc card": 0}
    worst_over = (0.0, "")
    for run in runs:
        [spec] = run.specs.values()
        ref, own = predict(spec, "reference"), predict(spec)
        fits["ref card"] += ref.fits_card
        fits["ref 90%"] += ref.fits_headroom
        fits["card"] += own.fits_card
        fits["90%"] += own.fits_headroom
        fits["alloc card"] += own.peak_allocated_gib <= card_gib
        worst_over = max(worst_over, (own.peak_reserved_gib / card_gib - 1, run.label))
        error = _error(own.tokens_per_s_per_gpu, run.measured_tokens_per_s_per_gpu)
        tps_errors.append((error, run.label))
        rows.append((run.label, f"{ref.peak_reserved_gib:.1f}", _yes(ref.fits_card), f"{own.peak_reserved_gib:.1f}",
                     f"{own.peak_allocated_gib:.1f}", _yes(own.fits_card), _yes(own.fits_headroom),
                     f"{own.tokens_per_s_per_gpu:,.0f}", f"{run.measured_tokens_per_s_per_gpu:,.0f}", f"{error:+.1%}"))
    n = len(runs)
    return [*table(rows, left=(0,)), "",
            f"  every run ran on a {card_gib:g} GiB card (no memory published): predicted to fit the card "
            f"{fits['card']}/{n} (reference profile {fits['ref card']}/{n}), under costsim's 90% rule "
            f"{fits['90%']}/{n} (reference {fits['ref 90%']}/{n}); allocated (before the allocator's reserve) "
            f"within the card {fits['alloc card']}/{n}",
            f"  worst: predicted reserved peak {worst_over[0]:+.1%} over the card ({worst_over[1]})"
            if worst_over[0] > 0 else "  no predicted reserved peak is over the card",
            _summary("tokens/s per GPU", tps_errors)]


def _bracketed(runs: list[PublishedRun]) -> list[str]:
    """A source that publishes peak memory under a recompute policy costsim brackets (none, full)."""
    rows = [("run", "published", "peak (none)", "peak (full)", "inside", "ref (none)", "ref (full)",
             "tok/s (none)", "tok/s (full)", "published")]
    mem_errors = {"none": [], "full": []}
    tps_errors = {"none": [], "full": []}
    inside = 0
    peaks = []
    for run in runs:
        own = {r: predict(s) for r, s in run.specs.items()}
        ref = {r: predict(s, "reference") for r, s in run.specs.items()}
        measured = run.measured_peak_gib
        low, high = own["full"].peak_reserved_gib, own["none"].peak_reserved_gib
        inside += low <= measured <= high
        peaks.append((run.run["n_gpus"], measured, low, own["full"].peak_allocated_gib))
        for r in ("none", "full"):
            mem_errors[r].append((_error(own[r].peak_reserved_gib, measured), run.label))
            tps_errors[r].append((_error(own[r].tokens_per_s_per_gpu, run.measured_tokens_per_s_per_gpu), run.label))
        rows.append((run.label, f"{measured:.1f}", f"{high:.1f}", f"{low:.1f}", _yes(low <= measured <= high),
                     f"{ref['none'].peak_reserved_gib:.1f}", f"{ref['full'].peak_reserved_gib:.1f}",
                     f"{own['none'].tokens_per_s_per_gpu:,.0f}", f"{own['full'].tokens_per_s_per_gpu:,.0f}",
                     f"{run.measured_tokens_per_s_per_gpu:,.0f}"))
    lines = [*table(rows, left=(0,)), "",
             f"  published peak inside costsim's [full, none] recompute bracket: {inside}/{len(runs)}",
             _summary("peak memory, recompute none (upper bound)", mem_errors["none"]),
             _summary("peak memory, recompute full (lower bound)", mem_errors["full"]),
             _summary("tokens/s per GPU, recompute none", tps_errors["none"]),
             _summary("tokens/s per GPU, recompute full", tps_errors["full"])]
    if len(peaks) >= 2:  # what sharding over more GPUs saves: the sharded state's formula alone
        (n0, m0, p0, a0), (n1, m1, p1, a1) = min(peaks), max(peaks)
        lines.append(f"  {n0} -> {n1} GPUs: published peak {m1 - m0:+.1f} GiB, predicted {p1 - p0:+.1f} GiB reserved "
                     f"({a1 - a0:+.1f} GiB allocated)")
    return lines


@dataclass(frozen=True)
class StepTerms:
    """Where costsim's step goes (seconds a step, on the pipeline rank whose micro-batch is
    slowest): the micro-batches' compute, their exposed tensor-parallel collectives and pipeline
    sends, the bubble (the (p-1)/v micro-batch slots the pipeline fills and drains), the
    optimizer, the exposed data-parallel traffic."""

    compute: float
    tensor: float
    pipeline: float
    context: float
    bubble: float
    optimizer: float
    data: float

    @property
    def step(self) -> float:
        return self.compute + self.tensor + self.pipeline + self.context + self.bubble + self.optimizer + self.data


def step_terms(spec: ScheduleSpec) -> StepTerms:
    """The engine's step of a one-stage spec, term by term (``StageCosts``' step parts)."""
    costs = spec_costs(spec)
    return StepTerms(*(float(np.ravel(getattr(costs, f"step_{name}_s"))[0])
                       for name in ("compute", "tensor", "pipeline", "context", "bubble", "optimizer", "data")))


def _median_worst(errors: list[tuple[float, str]]) -> str:
    worst, where = max(errors, key=lambda e: abs(e[0]))
    return f"median |error| {statistics.median(abs(e) for e, _ in errors):.1%}, worst {worst:+.1%} ({where})"


def _layouts(name: str, runs: list[PublishedRun], card_gib: float) -> list[str]:
    """A source of tensor / pipeline parallel runs that publishes step times (no memory)."""
    rows = [("run", "dp", "m", "step", "measured", "tok/s/GPU", "published", "error", "TP", "PP send", "CP",
             "bubble", "DP", "peak", "fits card", "fits 90%")]
    errors, step_errors, by_model = [], [], {}
    fits = {"card": 0, "90%": 0}
    shares, hidden = {"TP": [], "PP send": [], "CP": [], "bubble": [], "DP": []}, {}
    mismatch = 0.0
    for run in runs:
        [spec] = run.specs.values()
        own, terms = predict(spec), step_terms(spec)
        measured_step = run.run["step_time_s"]
        predicted_step = spec.training.batch_size * spec.model.seq_len / own.tokens_per_s_per_gpu / spec.hardware.n_gpus
        mismatch = max(mismatch, abs(terms.step / predicted_step - 1))
        error = own.tokens_per_s_per_gpu / run.measured_tokens_per_s_per_gpu - 1
        errors.append((error, run.label))
        step_errors.append((predicted_step / measured_step - 1, run.label))
        by_model.setdefault(run.run["model"], []).append((error, run.label))
        fits["card"] += own.fits_card
        fits["90%"] += own.fits_headroom
        share = {"TP": terms.tensor, "PP send": terms.pipeline, "CP": terms.context, "bubble": terms.bubble,
                 "DP": terms.data}
        for k, v in share.items():
            shares[k].append(v / measured_step)
        # the step with every transfer hidden (the recipes overlap them): compute, bubble, optimizer
        alone = terms.compute + terms.bubble + terms.optimizer
        hidden.setdefault(run.run["model"], []).append(alone / measured_step - 1)
        rows.append((run.label, str(spec.data_parallel), str(spec.training.batch_size // spec.training.micro_batch_size
                                                              // spec.data_parallel),
                     f"{predicted_step:.2f}", f"{measured_step:.2f}", f"{own.tokens_per_s_per_gpu:,.0f}",
                     f"{run.measured_tokens_per_s_per_gpu:,.0f}", f"{error:+.1%}",
                     *(f"{v / measured_step:.1%}" for v in share.values()),
                     f"{own.peak_reserved_gib:.1f}", _yes(own.fits_card), _yes(own.fits_headroom)))
    n = len(runs)
    lines = [*table(rows, left=(0,)), "",
             "  step: seconds a step, predicted and measured; TP, PP send, CP (ring attention), bubble, DP: "
             "those terms of the predicted step as a share of the measured step (costsim/parallel.py; what "
             "the trainer profile's overlaps leave exposed)",
             f"  every run ran on a {card_gib:g} GiB card (no memory published): predicted to fit the card "
             f"{fits['card']}/{n}, under costsim's 90% rule {fits['90%']}/{n}",
             f"  tokens/s per GPU: {_median_worst(errors)}, n={n}",
             f"  step time: {_median_worst(step_errors)}, n={n}"]
    lines += [f"    {model}: {_median_worst(errs)}, n={len(errs)}" for model, errs in by_model.items()]
    lines.append("  median share of the measured step: " + ", ".join(
        f"{k} {statistics.median(v):.1%}" for k, v in shares.items()))
    lines.append("  step with every transfer hidden (compute, bubble, optimizer) against the measured step, median: "
                 + ", ".join(f"{model} {statistics.median(v):+.1%}" for model, v in hidden.items()))
    exposed = [(predict(spec, "megatron").tokens_per_s_per_gpu / run.measured_tokens_per_s_per_gpu - 1, run.label)
               for run in runs for spec in run.specs.values()]
    lines.append(f"  tokens/s per GPU under the megatron profile (every transfer exposed, the recipes' model "
                 f"switches not applied): {_median_worst(exposed)}")
    if mismatch > 1e-6:
        lines.append(f"  WARNING: the terms add up to the engine's step only within {mismatch:.1%}: "
                     "costsim.engine.estimate_many's step terms no longer add up to its step")
    return lines


def main() -> None:
    runs = published_runs()
    for name in SOURCES:
        source = load_source(name)
        mine = [r for r in runs if r.source == name]
        src = source["source"]
        print(f"== {source['name']}")
        print(f"   {src['repo']}/{src['path']} @ {src['commit'][:7]}; trainer profile '{source['trainer_profile']}', "
              f"{source['parallelism']}")
        if any(r.measured_peak_gib is not None for r in mine):
            lines = _bracketed(mine)
        else:
            lines = _fit_only(mine, source["gpu"]["memory_gib"])
        print("\n".join(lines))
        print()
    for name in LAYOUT_SOURCES:
        source = load_source(name)
        mine = published_runs((name,))
        src = source["source"]
        used = sorted({r.run["table"] for r in mine})
        print(f"== {source['name']}")
        print(f"   {src['repo']} @ {src['commit'][:7]}: {', '.join(used)}; trainer profile "
              f"'{source['trainer_profile']}', {source['parallelism']}, {source['gpus_per_node']} GPUs a node")
        print("\n".join(_layouts(name, mine, source["gpu"]["memory_gib"])))
        print()


if __name__ == "__main__":
    main()
