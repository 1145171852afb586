"""The planner's layout search (issue #13, part 4): for a schedule and a GPU count it picks
the tensor x pipeline x data layout, micro-batch and recompute that fit, and the fastest
of them; the search therefore plans models no single GPU holds."""

from __future__ import annotations

import numpy as np
import pytest

from costsim.engine import estimate
from costsim.loss import load_loss_profile
from costsim.planner import Budget, Planner, SearchSpace
from costsim.profile import profile_for
from costsim.spec import HardwareSpec

PROFILE = load_loss_profile("chinchilla")
SPACE = SearchSpace(d_models=(1024, 8192), min_layers=2, max_layers=80, batch_tokens=(2**20,), seq_len=2048)


def planner(n_gpus: int, layout_search: bool = True, budget: float = 1e23, gpus_per_node: int = 8) -> Planner:
    hardware = HardwareSpec(gpu="h100-sxm", n_gpus=n_gpus, gpus_per_node=gpus_per_node)
    return Planner(Budget(flops=budget), hardware, SPACE, profile_for("h100-sxm", None), PROFILE,
                   layout_search=layout_search)


@pytest.mark.parametrize("n_gpus, gpus_per_node", [(1, 8), (8, 8), (16, 8), (64, 8), (12, 4)])
def test_every_layout_offered_multiplies_into_the_gpu_count(n_gpus, gpus_per_node):
    p = planner(n_gpus, gpus_per_node=gpus_per_node)
    widths = [(8192, 64, 32768), (4096, 32, 16384)]
    tp, pp = p.layouts(widths, min_layers=10)
    assert (1, 1) in set(zip(tp.tolist(), pp.tolist()))
    for t, q in zip(tp.tolist(), pp.tolist()):
        assert n_gpus % (t * q) == 0
        assert t <= gpus_per_node  # tensor parallelism stays inside a node
        assert all(size % t == 0 for width in widths for size in width)
        assert q <= 10
    if n_gpus == 1:
        assert list(zip(tp, pp)) == [(1, 1)]


def test_a_model_one_gpu_cannot_hold_gets_a_model_parallel_layout_that_fits():
    """A 70B-class shape on 64 H100s: data parallelism alone (ZeRO off) cannot hold its
    weights and optimizer state; the layout search finds tensor/pipeline sizes that do,
    and the spec it writes estimates as fitting."""
    shape = dict(layers=80, d_model=8192, n_stages=1, batch_tokens=2**20)
    plain = planner(64, layout_search=False).attempt(**shape)
    assert plain.spec is None and "does not fit in memory" in plain.reason
    found = planner(64).attempt(**shape)
    assert found.spec is not None, found.reason
    t = found.spec.training
    assert t.tensor_parallel * t.pipeline_parallel > 1
    assert 64 % (t.tensor_parallel * t.pipeline_parallel) == 0
    costs = estimate(found.spec)
    assert all(s.fits_in_memory for s in costs.stages)


def test_the_chosen_layout_is_the_fastest_that_fits():
    """Against brute force: every layout offered, written as a spec at its largest fitting
    micro-batch and estimated on its own, is no faster than the one chosen."""
    p = planner(16)
    shape = dict(layers=48, d_model=8192, n_stages=2, first_fraction=0.5, batch_tokens=2**20)
    chosen = p.attempt(**shape).spec
    assert chosen is not None
    best = sum(s.step_time_s * n for s, n in zip(estimate(chosen).stages, _steps(chosen)))
    tp, pp = p.layouts([chosen.stage_width(st) for st in chosen.stages], min(st.layers for st in chosen.stages))
    tried = 0
    for t, q in zip(tp.tolist(), pp.tolist()):
        for micro in (8, 4, 2, 1):
            for recompute in ("none",) if chosen.training.recompute == "none" else ("full",):
                training = chosen.training.model_copy(update={
                    "tensor_parallel": t, "pipeline_parallel": q, "micro_batch_size": micro,
                    "recompute": recompute, "sequence_parallel": t > 1})
                other = chosen.model_copy(update={"training": training})
                costs = estimate(other)
                if all(s.fits_in_memory for s in costs.stages):
                    tried += 1
                    time = sum(s.step_time_s * n for s, n in zip(costs.stages, _steps(chosen)))
                    assert time >= best * (1 - 1e-9)
                    break
    assert tried >= 2  # more than one layout was a real alternative


def test_one_gpu_plans_exactly_as_before():
    p = planner(1, budget=1e19)
    spec = p.attempt(layers=8, d_model=1024, n_stages=3).spec
    assert spec.training.tensor_parallel == spec.training.pipeline_parallel == 1
    assert not spec.training.sequence_parallel


def test_the_full_training_reference_uses_the_layouts_too():
    """The compute-optimal full-training baseline at a budget that needs a large model on
    many GPUs: found with a model-parallel layout, finite loss, and it fits."""
    p = planner(64, budget=3e24)
    d, layers, batch, loss = p.full_training_grid()
    assert np.isfinite(loss).any()
    plain = planner(64, layout_search=False, budget=3e24).full_training_grid()[3]
    assert np.isfinite(loss).sum() >= np.isfinite(plain).sum()
    assert (np.isfinite(loss) & ~np.isfinite(plain)).any()  # shapes only model parallelism can hold


def _steps(spec):
    return [round(st.tokens / (spec.training.batch_size * spec.model.seq_len)) for st in spec.stages]
