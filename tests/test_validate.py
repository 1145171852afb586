"""Real training on the CPU: growth operators, freezing, measurement, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from costsim.errors import CostsimError
from costsim.growth import DEPTH_OPERATORS, OPERATORS, WIDTH_OPERATORS
from costsim.loss import predict_curve
from costsim.paper import paper_incremental
from costsim.spec import parse_spec
from costsim.store import Store
from validate.data import open_dataset
from validate.model import DEPTH_GROWERS, GPT, WIDTH_GROWERS, GPTShape
from validate.trainer import RunOptions, Trainer, planned_steps, tiny

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny_three_stage.yaml"


def small_shape(**overrides) -> GPTShape:
    base = dict(vocab_size=61, seq_len=16, n_layers=2, d_model=16, n_heads=2, n_kv_heads=2, d_ff=32)
    return GPTShape(**{**base, **overrides})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return open_dataset(None, cache_dir=tmp_path_factory.mktemp("data"), max_bytes=400_000)


def outputs(model, idx):
    with torch.no_grad():
        return model(idx)[0]


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("tied", [True, False])
def test_identity_and_widen_preserving_keep_the_function(mlp, tied):
    torch.manual_seed(0)
    model = GPT(small_shape(mlp=mlp, tied_embeddings=tied, n_kv_heads=1))
    for p in model.parameters():  # away from init, so zero-ish weights hide nothing
        p.data.normal_(0, 0.2)
    idx = torch.randint(0, 61, (3, 16))
    before = outputs(model, idx)
    model.grow_depth(4, "identity")
    torch.testing.assert_close(outputs(model, idx), before, rtol=0, atol=1e-5)
    model.grow_width(48, 6, 96, "widen_preserving")
    torch.testing.assert_close(outputs(model, idx), before, rtol=0, atol=1e-5)
    assert model.shape.d_model == 48 and model.shape.n_layers == 4


def test_every_operator_in_the_table_has_a_weight_operation():
    assert set(DEPTH_GROWERS) == set(DEPTH_OPERATORS)
    assert set(WIDTH_GROWERS) == set(WIDTH_OPERATORS)


@pytest.mark.parametrize("operator", list(OPERATORS))
def test_an_operator_keeps_the_function_exactly_when_the_table_says_so(operator):
    """What the loss model assumes (no jump for a function-preserving operator) must be
    what the weights do."""
    torch.manual_seed(0)
    model = GPT(small_shape())
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    idx = torch.randint(0, 61, (2, 16))
    before = outputs(model, idx)
    if OPERATORS[operator].grows == "depth":
        model.grow_depth(4, operator)
        assert model.shape.n_layers == 4 and len(model.blocks) == 4
    else:
        model.grow_width(32, 4, 64, operator)
        assert model.shape.d_model == 32 and model.blocks[0].attn.c_proj.weight.shape == (32, 32)
    kept = torch.allclose(outputs(model, idx), before, rtol=0, atol=1e-5)
    assert kept == OPERATORS[operator].preserves_function


def test_unknown_operators_are_named_with_the_known_ones():
    model = GPT(small_shape())
    with pytest.raises(ValueError, match="unknown depth growth operator 'stack'.*random_top"):
        model.grow_depth(4, "stack")
    with pytest.raises(ValueError, match="unknown width growth operator 'identity'.*widen_random"):
        model.grow_width(32, 4, 64, "identity")


def test_stack_copy_and_stack_middle_copy_weights():
    torch.manual_seed(0)
    model = GPT(small_shape(n_layers=3))
    old = [b.state_dict() for b in model.blocks]
    model.grow_depth(6, "stack_copy")
    for i in range(3):
        for key, value in old[i].items():
            assert torch.equal(model.blocks[3 + i].state_dict()[key], value)
    assert model.blocks[3].attn.c_attn.weight is not model.blocks[0].attn.c_attn.weight
    model = GPT(small_shape(n_layers=4))
    middle = [b.state_dict() for b in model.blocks]
    model.grow_depth(6, "stack_middle")
    assert len(model.blocks) == 6
    copies = sum(torch.equal(model.blocks[i].mlp.c_fc.weight, middle[j]["mlp.c_fc.weight"])
                 for i in range(6) for j in (1, 2))
    assert copies == 4  # blocks 1 and 2 appear twice each


def test_a_bf16_spec_on_a_cpu_is_predicted_as_the_fp32_it_runs(dataset, tmp_path):
    """A CPU has no bf16 autocast here, so it trains a bf16-mixed spec in fp32; the
    predictions stored beside the measurements must be for fp32 too."""
    spec = parse_spec({
        "model": {"d_model": 32, "n_heads": 4, "vocab_size": 256, "seq_len": 32},
        "training": {"micro_batch_size": 4, "batch_size": 4, "precision": "bf16-mixed"},
        "stages": [{"layers": 2, "tokens": 4 * 32 * 3}],
    })
    store = Store(tmp_path / "b.duckdb")
    trainer = Trainer(spec, dataset, store, RunOptions(progress=False, run_dir=tmp_path))
    trainer.start()
    trainer.train()
    [row] = store.query("SELECT peak_memory_bytes, peak_memory_predicted_bytes FROM stages")
    assert row["peak_memory_bytes"] == row["peak_memory_predicted_bytes"]


def test_frozen_parameters_are_bit_identical_after_training(dataset, tmp_path):
    spec = parse_spec({
        "model": {"d_model": 32, "n_heads": 4, "vocab_size": 256, "seq_len": 32},
        "training": {"micro_batch_size": 4, "batch_size": 4, "precision": "fp32"},
        "stages": [{"layers": 2, "tokens": 4 * 32 * 5}, {"layers": 4, "tokens": 4 * 32 * 6, "train": "new",
                                                        "freeze_embeddings": True}],
    })
    trainer = Trainer(spec, dataset, Store(tmp_path / "s.duckdb"), RunOptions(progress=False, run_dir=tmp_path))
    trainer.start()
    snapshot = {}

    original_enter = trainer._enter_stage

    def enter(index, fresh):
        original_enter(index, fresh)
        if index == 1:
            snapshot.update({n: p.detach().clone() for n, p in trainer.model.named_parameters()})

    trainer._enter_stage = enter
    trainer.train()
    after = dict(trainer.model.named_parameters())
    frozen = [n for n in snapshot if n.startswith(("blocks.0.", "blocks.1.", "wte", "wpe"))]
    trained = [n for n in snapshot if n.startswith(("blocks.2.", "blocks.3.", "ln_f"))]
    assert frozen and trained
    assert all(torch.equal(after[n], snapshot[n]) for n in frozen)
    assert all(not torch.equal(after[n], snapshot[n]) for n in trained if n.endswith("weight"))


def test_study_schedule_freezes_exactly_the_old_blocks():
    spec = paper_incremental(12, 4, tokens=8 * 524_288 * 4)
    trainable = [spec.n_trainable_blocks(i) for i in range(len(spec.stages))]
    assert [s.layers for s in spec.stages] == [3, 6, 6, 9, 9, 12, 12, 12]
    assert trainable == [3, 3, 6, 3, 9, 3, 12, 12]
    model = GPT(small_shape(n_layers=6))
    model.set_trainable(3, True)
    flags = [all(p.requires_grad for p in b.parameters()) for b in model.blocks]
    assert flags == [False, False, False, True, True, True]
    assert model.wte.weight.requires_grad and model.ln_f.weight.requires_grad


def test_tiny_schedule_trains_measures_and_matches_predictions(dataset, tmp_path):
    from costsim.spec import load_spec

    spec = load_spec(TINY)
    store = Store(tmp_path / "t.duckdb")
    trainer = Trainer(spec, dataset, store, RunOptions(progress=False, run_dir=tmp_path, eval_every=20))
    trainer.start()
    state = trainer.train()
    assert state.step == sum(planned_steps(spec))
    stages = store.query("SELECT * FROM stages ORDER BY stage_index")
    assert len(stages) == len(spec.stages)
    for row in stages:
        assert row["flops_counted_per_step"] == row["flops_counted_predicted_per_step"]
        assert row["peak_memory_bytes"] == row["peak_memory_predicted_bytes"]  # saved activations on CPU
        assert row["peak_reserved_bytes"] is None  # no allocator on a CPU
    evals = store.query("SELECT val_loss FROM evals ORDER BY step")
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0
    # the loss model's prediction sits beside every evaluation but the first (at 0 tokens)
    predicted = store.query(
        "SELECT p.val_loss_predicted AS loss, p.val_loss_predicted_lower AS lower, p.val_loss_predicted_upper AS upper "
        "FROM evals AS e LEFT JOIN loss_predictions AS p USING (run_id, step) ORDER BY e.step")
    assert [row["loss"] is None for row in predicted] == [True] + [False] * (len(predicted) - 1)
    assert all(row["lower"] <= row["loss"] <= row["upper"] for row in predicted[1:])
    assert predicted[-1]["loss"] == pytest.approx(predict_curve(spec, steps=trainer.steps).loss[-1])
    assert store.run_status(trainer.run_id) == "complete"
    assert {e["kind"] for e in store.query("SELECT kind FROM events")} == {"grow_depth"}


def test_steps_are_recorded_one_by_one_with_the_lr_they_used(dataset, tmp_path):
    """Steps run in windows between host syncs; every step still gets its own row, with
    the LR it trained with, and windows end at evaluations and checkpoints."""
    from costsim.lr import lr_at

    spec = parse_spec({
        "model": {"d_model": 32, "n_heads": 4, "vocab_size": 256, "seq_len": 32},
        "training": {"micro_batch_size": 4, "batch_size": 4, "precision": "fp32",
                     "lr_schedule": {"kind": "cosine", "warmup_steps": 5, "lr": 1e-3}},
        "stages": [{"layers": 1, "tokens": 4 * 32 * 23}, {"layers": 2, "tokens": 4 * 32 * 14}],
    })
    store = Store(tmp_path / "w.duckdb")
    trainer = Trainer(spec, dataset, store, RunOptions(progress=False, run_dir=tmp_path, eval_every=7,
                                                       checkpoint_every=9))
    windows = []
    original = trainer._train_window

    def spy(index, n_steps, flops_per_step):
        windows.append((trainer.state.step, n_steps))
        return original(index, n_steps, flops_per_step)

    trainer._train_window = spy
    trainer.start()
    trainer.train()
    steps = store.query("SELECT step, stage_index, lr, train_loss, wall_time_s FROM steps ORDER BY step")
    assert [r["step"] for r in steps] == list(range(1, 38))
    assert [r["stage_index"] for r in steps] == [0] * 23 + [1] * 14
    assert [r["lr"] for r in steps] == pytest.approx([lr_at(spec.training.lr_schedule, s, 37) for s in range(37)])
    assert all(r["train_loss"] > 0 for r in steps)
    assert all(b["wall_time_s"] > a["wall_time_s"] for a, b in zip(steps, steps[1:]))
    assert windows[:2] == [(0, 1), (1, 1)]  # warm-up steps are timed alone
    for start, n in windows:  # no window spans an evaluation, a checkpoint or a stage boundary
        assert all((start + k) % 7 and (start + k) % 9 and start + k != 23 for k in range(1, n))
    assert max(n for _, n in windows) > 1
    assert [r["step"] for r in store.query("SELECT step FROM evals ORDER BY step")] == [0, 7, 14, 21, 28, 35, 37]


def test_gpu_report_shows_allocated_and_reserved_against_predictions(tmp_path):
    from validate.run import _report

    store = Store(tmp_path / "g.duckdb")
    store.append("stages", [{
        "run_id": "r", "stage_index": 0, "layers": 12, "d_model": 768, "tokens": 1e6, "steps": 10,
        "flops_counted_per_step": 2e15, "flops_counted_predicted_per_step": 2e15,
        "peak_memory_bytes": 11 * 2**30, "peak_memory_predicted_bytes": 10 * 2**30,
        "peak_reserved_bytes": 12 * 2**30, "peak_reserved_predicted_bytes": 12 * 2**30,
        "step_time_s": 0.5, "step_time_predicted_s": 0.4, "record_id": "r:stage:0"}])
    lines = _report(store, "r", on_gpu=True).splitlines()
    assert "peak allocated" in lines[0] and "peak reserved" in lines[0]
    assert "2P (exact)" in lines[2] and "11.0 GiB (+10.0%)" in lines[2] and "12.0 GiB (exact)" in lines[2]
    assert "500.0 ms (+25.0%)" in lines[2]


def test_tiny_preset_shrinks_any_spec(dataset):
    spec = tiny(paper_incremental(12, 4), dataset.vocab_size)
    assert spec.model.d_model == 64 and spec.model.seq_len == 64 and spec.model.vocab_size == 256
    assert [s.layers for s in spec.stages] == [3, 6, 6, 9, 9, 12, 12, 12]
    assert sum(planned_steps(spec)) <= 12 * len(spec.stages) + len(spec.stages)


def run_cli(*args, cwd, **kwargs):
    env = {**os.environ, "COSTSIM_DATA_DIR": str(cwd / "data")}
    return subprocess.run([sys.executable, "-m", "validate.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, **kwargs)


def test_kill_and_resume_reaches_the_same_number_of_steps(tmp_path):
    args = [str(TINY), "--db", "k.duckdb", "--checkpoint-every", "10", "--no-progress", "--eval-every", "1000"]
    env = {**os.environ, "COSTSIM_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "validate.run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs").glob("*/checkpoint.pt"))
        if found:
            checkpoint = found[0]
            time.sleep(0.3)
            break
        time.sleep(0.05)
    assert checkpoint is not None, "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = checkpoint.parent.name
    store = Store(tmp_path / "k.duckdb")
    assert store.run_status(run_id) == "incomplete"
    done = run_cli("--resume", run_id, "--db", "k.duckdb", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # the report: every stage's counted FLOPs and saved activations equal the prediction
    report = done.stdout.splitlines()
    assert report[0].startswith(f"run {run_id}: ") and "final validation loss" in report[0]
    assert report[1].startswith("loss model (stdlib-bytes): final validation loss ") and "interval" in report[1]
    stage_rows = [line for line in report[3:] if line.split()[0].isdigit()]
    assert len(stage_rows) == 4 and all(line.count("(exact)") == 2 for line in stage_rows), done.stdout
    from costsim.spec import load_spec

    expected = sum(planned_steps(load_spec(TINY)))
    steps = store.query("SELECT count(*) AS n, count(DISTINCT step) AS d, max(step) AS m FROM steps WHERE run_id = ?",
                        [run_id])[0]
    assert steps == {"n": expected, "d": expected, "m": expected}
    assert store.run_status(run_id) == "complete"
    # the resumed run ends exactly where an uninterrupted one does
    straight = run_cli(*args[:1], "--db", "k.duckdb", "--no-progress", "--eval-every", "1000", "--json",
                       cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert json.loads(straight.stdout)["steps"] == expected
    final = store.query("SELECT run_id, val_loss FROM evals e WHERE step = ? ORDER BY run_id", [expected])
    assert len(final) == 2 and final[0]["val_loss"] == final[1]["val_loss"]


@pytest.mark.parametrize("args,needle", [
    (["nosuch.yaml"], "nosuch.yaml"),
    ([str(TINY), "--data", "/nonexistent/corpus"], "does not exist"),
    ([str(TINY), "--max-steps", "0"], "--max-steps"),
    (["--resume", "nope"], "no checkpoint"),
    ([str(TINY), "--max-steps", "2"], "fewer than the 4 stages"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, needle):
    result = run_cli(*args, "--db", "e.duckdb", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_diverging_run_stops_with_one_line_and_is_stored_as_failed(tmp_path):
    import yaml

    spec = {"model": {"d_model": 32, "n_heads": 2, "vocab_size": 256, "seq_len": 32},
            "training": {"micro_batch_size": 4, "batch_size": 4, "precision": "fp32",
                         "lr_schedule": {"kind": "constant", "lr": 1.0e10}},
            "stages": [{"layers": 2, "tokens": 4096}]}
    (tmp_path / "nan.yaml").write_text(yaml.safe_dump(spec))
    result = run_cli("nan.yaml", "--db", "n.duckdb", "--no-progress", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert "training diverged" in line and "lr" in line
    store = Store(tmp_path / "n.duckdb")
    [run] = store.query("SELECT run_id FROM runs")
    assert store.run_status(run["run_id"]) == "failed"


def test_a_model_too_big_for_this_machine_is_refused_before_it_is_built(tmp_path):
    """The check comes before any tensor is allocated, so the error is one line, not an
    out-of-memory kill, and it says by how much the model misses."""
    import yaml

    spec = {"model": {"d_model": 16384, "n_heads": 128, "vocab_size": 256, "seq_len": 64},
            "training": {"micro_batch_size": 1, "batch_size": 1, "precision": "fp32"},
            "stages": [{"layers": 96, "tokens": 64}]}
    (tmp_path / "huge.yaml").write_text(yaml.safe_dump(spec))
    started = time.monotonic()
    result = run_cli("huge.yaml", "--db", "h.duckdb", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert "needs about" in line and "this machine has" in line and "short by" in line and "--tiny" in line
    assert time.monotonic() - started < 60  # nothing of the ~1.2 TB model was allocated


def test_data_parallel_under_torchrun_on_cpu(tmp_path):
    """Two gloo processes train the tiny schedule; rank 0 stores one run with every step."""
    env = {**os.environ, "COSTSIM_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                             "validate.run", str(TINY), "--db", "p.duckdb", "--no-progress", "--eval-every", "1000"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    store = Store(tmp_path / "p.duckdb")
    from costsim.spec import load_spec

    runs = store.query("SELECT run_id FROM runs")
    assert len(runs) == 1
    steps = store.query("SELECT count(*) AS n FROM steps")[0]["n"]
    assert steps == sum(planned_steps(load_spec(TINY)))
    stages = store.query("SELECT flops_counted_per_step, flops_counted_predicted_per_step FROM stages")
    assert all(r["flops_counted_per_step"] == r["flops_counted_predicted_per_step"] for r in stages)


def test_the_memory_check_honours_the_address_space_limit():
    """Two runs passed a check that read only free memory and died in the allocator under
    a ulimit; the room under RLIMIT_AS now bounds what the check allows."""
    code = ("import resource\nfrom pathlib import Path\nimport os\n"
            "from validate.trainer import available_host_memory_bytes as room\n"
            "mapped = int(Path('/proc/self/statm').read_text().split()[0]) * os.sysconf('SC_PAGE_SIZE')\n"
            "resource.setrlimit(resource.RLIMIT_AS, (mapped + 2**30, resource.RLIM_INFINITY))\n"
            "print(room())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 0 < int(done.stdout) <= 2**30


@pytest.mark.parametrize("training,stage,needle", [
    ({"parallelism": "zero3", "shard_group": 1}, {}, "training.shard_group 1: validate trains full sharding only"),
    ({}, {"tensor_parallel": 1, "pipeline_parallel": 1}, None),
    ({"context_parallel": 2}, {}, "training.context_parallel 2: validate trains data parallel only"),
    ({}, {"pipeline_parallel": 2}, "stages[0].tensor_parallel 1 x pipeline_parallel 2: validate trains data parallel"),
])
def test_validate_refuses_layouts_it_cannot_train_in_one_line(training, stage, needle):
    from validate.trainer import gpt_shape

    data = {"model": {"d_model": 32, "n_heads": 2, "vocab_size": 256, "seq_len": 16},
            "training": {"micro_batch_size": 2, "batch_size": 4, **training},
            "hardware": {"gpu": "h200", "n_gpus": 2},
            "stages": [{"layers": 2, "tokens": 1e3, **stage}]}
    spec = parse_spec(data)
    if needle is None:
        assert gpt_shape(spec, 0).n_layers == 2
        return
    with pytest.raises(CostsimError) as caught:
        gpt_shape(spec, 0)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_export_adds_a_stores_runs_to_a_dataset_and_keeps_the_others(dataset, tmp_path):
    from costsim.corpus import export_store, load_dataset
    from costsim.spec import load_spec

    spec = load_spec(TINY)
    store = Store(tmp_path / "x.duckdb")
    trainer = Trainer(spec, dataset, store, RunOptions(progress=False, run_dir=tmp_path, eval_every=20))
    trainer.start()
    trainer.train()
    out = tmp_path / "corpus.json"
    stale = {"run_id": "old", "family": "full", "device": "cpu", "spec": json.loads(spec.model_dump_json()),
             "steps": [1, 1, 1], "tokens": [1], "val_loss": [9.0]}
    other = {**stale, "run_id": "other", "spec": {**stale["spec"], "name": "another run"}}
    out.write_text(json.dumps({"source": "earlier", "runs": [stale, other]}))
    assert export_store(store.path, out) == 2
    runs = {r.run_id: r for r in load_dataset(out)}
    assert set(runs) == {"other", trainer.run_id}  # the stored run replaced the stale one of its name
    assert runs[trainer.run_id].loss[-1] < 9.0
    out.write_text("not json")
    with pytest.raises(CostsimError, match="not a corpus file"):
        export_store(store.path, out)
    assert out.read_text() == "not json"  # nothing overwritten
