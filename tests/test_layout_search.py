"""The planner's layout search (issue #13, part 4): for a schedule and a GPU count it picks
the tensor x pipeline x data layout, micro-batch and recompute that fit, and the fastest
of them; the search therefore plans models no single GPU holds."""

from __future__ import annotations

import itertools

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


def _with_layouts(spec, layouts, micro):
    """``spec`` with stage i in ``layouts[i]`` = (tensor, pipeline) and ``micro`` sequences a micro-batch."""
    stages = [st.model_copy(update={"tensor_parallel": t, "pipeline_parallel": q})
              for st, (t, q) in zip(spec.stages, layouts)]
    training = spec.training.model_copy(update={"tensor_parallel": 1, "pipeline_parallel": 1,
                                                "micro_batch_size": micro,
                                                "sequence_parallel": any(t > 1 for t, _ in layouts)})
    return spec.model_validate({**spec.model_dump(), "training": training.model_dump(),
                                "stages": [st.model_dump() for st in stages]})


def _time(spec, steps):
    costs = estimate(spec)
    if not all(s.fits_in_memory for s in costs.stages):
        return None
    return sum(s.step_time_s * n for s, n in zip(costs.stages, steps))


@pytest.mark.parametrize("n_gpus,shape", [
    (16, dict(layers=48, d_model=8192, n_stages=2, first_fraction=0.5, batch_tokens=2**20)),
    (64, dict(layers=80, d_model=8192, n_stages=2, first_fraction=0.1, batch_tokens=2**20)),
])
def test_the_chosen_layouts_are_the_fastest_that_fit(n_gpus, shape):
    """Against brute force: every assignment of the offered layouts to the stages, written as
    a spec at each micro-batch and estimated on its own, is no faster than the one chosen;
    so is every single layout for the whole schedule (what the search did before layouts
    could differ by stage)."""
    p = planner(n_gpus)
    chosen = p.attempt(**shape).spec
    assert chosen is not None
    steps = _steps(chosen)
    best = _time(chosen, steps)
    assert best is not None
    tp, pp = p.layouts([], max(st.layers for st in chosen.stages))
    offered = list(zip(tp.tolist(), pp.tolist()))
    per_gpu = chosen.training.batch_size // n_gpus
    micros = [m for m in (8, 4, 2, 1) if per_gpu % m == 0]
    tried = uniform = 0
    for layouts in itertools.product(offered, repeat=len(chosen.stages)):
        for micro in micros:
            try:
                other = _with_layouts(chosen, layouts, micro)
            except ValueError:  # a stage the layout does not suit (heads, depth): the spec refuses it
                continue
            time = _time(other, steps)
            if time is not None:
                tried += 1
                uniform += len(set(layouts)) == 1
                assert time >= best * (1 - 1e-9), (layouts, micro)
    assert uniform >= 2 and tried > uniform  # single layouts and mixed ones were real alternatives


def test_a_growing_model_changes_its_layout_as_it_grows():
    """80 layers of d 8192 on 64 H100s, grown from 8: the first stage needs no pipeline (its
    8 blocks fit with little model parallelism), the last does; the spec written says so
    per stage and estimates as fitting."""
    spec = planner(64).attempt(layers=80, d_model=8192, n_stages=2, first_fraction=0.1, batch_tokens=2**20).spec
    assert spec is not None
    first, last = spec.stage_parallel(0), spec.stage_parallel(1)
    assert first != last and first[1] < last[1]
    result = estimate(spec)
    assert [(s.tensor_parallel, s.pipeline_parallel) for s in result.stages] == [first, last]
    assert all(s.tensor_parallel * s.pipeline_parallel * s.data_parallel == 64 for s in result.stages)
    assert all(s.fits_in_memory for s in result.stages)


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


@pytest.mark.parametrize("parallelism,trainer", [("zero3", "fsdp"), ("zero1", "nemo")])
def test_the_search_plans_under_the_users_trainer(parallelism, trainer):
    """`costsim.search --parallelism --trainer-profile`: every candidate is built and costed
    under them, the spec written says so, and it estimates to the same step and memory the
    planner judged it by."""
    hardware = HardwareSpec(gpu="h100-sxm", n_gpus=64)
    p = Planner(Budget(flops=1e23), hardware, SPACE, profile_for("h100-sxm", None), PROFILE,
                parallelism=parallelism, trainer_profile=trainer)
    spec = p.attempt(layers=48, d_model=8192, n_stages=2, first_fraction=0.5, batch_tokens=2**20).spec
    assert spec is not None
    assert (spec.training.parallelism, spec.training.trainer_profile) == (parallelism, trainer)
    evaluation = p.evaluate(spec)
    costs = estimate(spec)
    assert evaluation.peak_memory_bytes == pytest.approx(costs.total.peak_memory_bytes, rel=1e-12)
    assert evaluation.time_s == pytest.approx(costs.total.time_s, rel=1e-12)
    plain = planner(64).evaluate(spec.model_copy(update={"training": spec.training.model_copy(
        update={"parallelism": "ddp", "trainer_profile": "reference"})}))
    assert evaluation.peak_memory_bytes < plain.peak_memory_bytes  # sharded states, bf16 working copies


def test_the_search_plans_with_the_users_context_parallelism():
    """`--context-parallel 4` at 32k context: every candidate splits its sequences over 4 GPUs,
    the spec written says so and estimates as the planner judged it, and a GPU holds less
    than without it."""
    hardware = HardwareSpec(gpu="h100-sxm", n_gpus=64)
    space = SearchSpace(d_models=(1024, 4096), min_layers=2, max_layers=40, batch_tokens=(2**21,), seq_len=32768)
    planners = [Planner(Budget(flops=1e22), hardware, space, profile_for("h100-sxm", None), PROFILE,
                        parallelism="zero3", trainer_profile="fsdp", context_parallel=cp) for cp in (1, 4)]
    specs = [p.attempt(layers=32, d_model=4096, n_stages=2, first_fraction=0.5, batch_tokens=2**21).spec
             for p in planners]
    assert all(spec is not None for spec in specs)
    assert [spec.training.context_parallel for spec in specs] == [1, 4]
    evaluation, costs = planners[1].evaluate(specs[1]), estimate(specs[1])
    assert evaluation.peak_memory_bytes == pytest.approx(costs.total.peak_memory_bytes, rel=1e-12)
    assert evaluation.time_s == pytest.approx(costs.total.time_s, rel=1e-12)
    assert all(s.context_parallel == 4 and s.tensor_parallel * s.pipeline_parallel * s.data_parallel * 4 == 64
               for s in costs.stages)
    same_layout = specs[1].model_copy(update={"training": specs[1].training.model_copy(update={"context_parallel": 1})})
    assert estimate(same_layout).total.peak_memory_bytes > costs.total.peak_memory_bytes
