"""zero3 under torchrun trains with FSDP2 and matches DDP step for step, across growth."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from costsim.store import Store

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")

# Both runs see the same batches and the same weights, and FSDP2 computes every forward
# with the same full weights as DDP; only the order of float32 additions differs
# (gradients summed over micro-batches then ranks under DDP, ranks then micro-batches
# under FSDP; the clipping norm summed over shards). That moves a loss by an ulp
# (measured: validation losses identical, one train loss off by 1e-7 relative). The
# slips this test is for move them far more: new blocks drawn from an RNG that
# rebuilding the model had advanced, or AdamW's state dropped at a re-shard, moved them
# by 5e-4 to 5e-3 here, and the RNG slip by only 2e-5 to 5e-5 in a smaller schedule,
# which 1e-4 would have let through. 1e-6 is ten ulps above the noise, below them all.
RELATIVE_TOLERANCE = 1e-6

SPEC = {
    "model": {"d_model": 64, "n_heads": 4, "vocab_size": 256, "seq_len": 32},
    # 16 sequences = micro-batch 4 x 2 ranks x 2 accumulated micro-batches
    "training": {"micro_batch_size": 4, "batch_size": 16, "precision": "fp32", "grad_clip": 1.0,
                 "lr_schedule": {"kind": "constant", "lr": 3.0e-3}},
    "stages": [
        {"layers": 1, "tokens": 16 * 32 * 8, "d_model": 32, "n_heads": 2, "d_ff": 128},
        # fresh blocks on top train alone, everything below (embeddings too) frozen
        {"layers": 2, "tokens": 16 * 32 * 8, "d_model": 32, "n_heads": 2, "d_ff": 128, "growth": "random_top",
         "train": "new", "freeze_embeddings": True},
        # widening: every tensor changes shape and the optimizer starts afresh
        {"layers": 2, "tokens": 16 * 32 * 8, "growth": "widen_preserving"},
    ],
}


def train_under_torchrun(tmp_path: Path, parallelism: str) -> tuple[Store, str]:
    spec = {**SPEC, "training": {**SPEC["training"], "parallelism": parallelism}}
    (tmp_path / f"{parallelism}.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "COSTSIM_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "validate.run",
         f"{parallelism}.yaml", "--db", f"{parallelism}.duckdb", "--run-dir", f"runs-{parallelism}", "--no-progress",
         "--eval-every", "4"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    store = Store(tmp_path / f"{parallelism}.duckdb")
    [run] = store.query("SELECT run_id FROM runs")
    return store, run["run_id"]


def losses(store: Store, table: str, column: str) -> dict[int, float]:
    return {row["step"]: row[column] for row in store.query(f"SELECT step, {column} FROM {table} ORDER BY step")}


def checkpoint(tmp_path: Path, parallelism: str, run_id: str) -> dict:
    return torch.load(tmp_path / f"runs-{parallelism}" / run_id / "checkpoint.pt", weights_only=False)


def test_zero3_trains_sharded_and_matches_ddp_across_growth(tmp_path):
    ddp, ddp_run = train_under_torchrun(tmp_path, "ddp")
    zero3, zero3_run = train_under_torchrun(tmp_path, "zero3")

    # the same losses, every step (rank 0's) and every evaluation, before and after each boundary
    for table, column in (("steps", "train_loss"), ("evals", "val_loss")):
        expected, measured = losses(ddp, table, column), losses(zero3, table, column)
        assert list(measured) == list(expected) and len(expected) >= 7
        assert measured == pytest.approx(expected, rel=RELATIVE_TOLERANCE, abs=0)

    # the store says the zero3 run trained sharded, stage by stage, and the DDP run did not:
    # 1 block, then 2 blocks, each alone, the final norm, and the root with the embeddings
    shards = zero3.query("SELECT step, detail FROM events WHERE kind = 'fully_shard' ORDER BY step")
    assert [(row["step"], row["detail"]) for row in shards] == [
        (0, "3 FSDP2 groups over 2 ranks"), (8, "4 FSDP2 groups over 2 ranks"), (16, "4 FSDP2 groups over 2 ranks")]
    assert not ddp.query("SELECT * FROM events WHERE kind = 'fully_shard'")
    growth = "SELECT step, kind, detail FROM events WHERE kind <> 'fully_shard' ORDER BY step, kind"
    assert zero3.query(growth) == ddp.query(growth) and len(ddp.query(growth)) == 3

    # measured on the plain model, not through FSDP's gathered weights: still the predictions
    for row in zero3.query("SELECT * FROM stages"):
        assert row["flops_counted_per_step"] == row["flops_counted_predicted_per_step"]
        assert row["peak_memory_bytes"] == row["peak_memory_predicted_bytes"]  # saved activations on a CPU

    # the checkpoint holds the gathered, whole model and optimizer state, as DDP's does
    expected, saved = checkpoint(tmp_path, "ddp", ddp_run), checkpoint(tmp_path, "zero3", zero3_run)
    assert saved["shape"] == expected["shape"] and saved["optimizer_groups"] == expected["optimizer_groups"]
    assert all(type(t) is torch.Tensor for t in saved["model"].values())
    torch.testing.assert_close(saved["model"], expected["model"], check_device=False)
    torch.testing.assert_close(saved["optimizer"]["state"], expected["optimizer"]["state"], check_device=False)


def test_a_checkpoint_keeps_every_ranks_place_in_its_batches(tmp_path):
    """Each rank draws its own batches; a checkpoint that kept rank 0's generator only
    would have every rank draw rank 0's batches after a resume."""
    _, run_id = train_under_torchrun(tmp_path, "ddp")
    saved = checkpoint(tmp_path, "ddp", run_id)
    first, second = saved["generators"]
    assert torch.equal(first, saved["generator"]) and not torch.equal(first, second)
