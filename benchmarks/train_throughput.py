"""Tokens/s and MFU of validate's real training loop (not a timed test).

Trains one stage of a fixed model through ``validate.trainer.Trainer`` (the loop
``python -m validate.run`` uses) and reports the median step time after warm-up.
``--loop bare`` times the same model in a minimal nanoGPT-style loop instead (sample,
forward, backward, clip, AdamW; nothing stored), so the two figures on one machine say
what the product's loop costs over the least a loop can do.
Presets:
  gpt2     GPT-2 small (124M), micro-batch 16 x 1024, vocab 50304
  byte     byte-level d=384, 8 layers, seq 256, batch 64
  tiny     the laptop CPU preset (d=64, 4 layers, seq 64, batch 8)
Run: python benchmarks/train_throughput.py --preset gpt2 --mode compile --steps 60
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from costsim.engine import estimate_many, stage_shape
from costsim.hardware import load_gpu
from costsim.profile import load_profile
from costsim.spec import parse_spec
from costsim.store import Store
from validate.data import open_dataset
from validate.model import GPT
from validate.trainer import WARMUP_STEPS, RunOptions, Trainer, device_gpu_preset, gpt_shape, resolve_device

PRESETS = {
    "gpt2": ({"d_model": 768, "n_heads": 12, "vocab_size": 50304, "seq_len": 1024}, 12, 16),
    "byte": ({"d_model": 384, "n_heads": 6, "vocab_size": 256, "seq_len": 256}, 8, 64),
    "tiny": ({"d_model": 64, "n_heads": 4, "vocab_size": 256, "seq_len": 64}, 4, 8),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--mode", choices=["eager", "compile", "cuda-graphs"], default="eager")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--loop", choices=["trainer", "bare"], default="trainer")
    args = parser.parse_args()
    model, layers, batch = PRESETS[args.preset]
    precision = "fp32" if args.device == "cpu" or args.preset == "tiny" else "bf16-mixed"
    spec = parse_spec({
        "model": model, "training": {"micro_batch_size": batch, "batch_size": batch, "precision": precision},
        "stages": [{"layers": layers, "tokens": args.steps * batch * model["seq_len"]}],
    })
    if args.loop == "bare":
        device, step_time = bare_loop(spec, args.mode, args.steps, resolve_device(args.device))
    else:
        device, step_time = trainer_loop(spec, args.mode, args.device)
    tokens = batch * model["seq_len"]
    preset = device_gpu_preset(device)
    result = {"preset": args.preset, "mode": args.mode, "loop": args.loop, "device": str(device), "gpu": preset,
              "tokens_per_s": tokens / step_time, "step_time_s": step_time}
    if preset:  # costsim predicts GPU steps only
        costs = estimate_many(stage_shape(spec), batch_size=batch, gpu=load_gpu(preset), profile=load_profile(preset),
                              precision=precision)
        result["predicted_step_time_s"] = float(costs.step_time_s[0])
        peak = load_gpu(preset).peak_bf16_flops_per_s
        result["mfu_model"] = float(costs.flops_model_per_step[0]) / step_time / peak
        result["counted_tflops_per_s"] = float(costs.flops_counted_per_step[0]) / step_time / 1e12
    print(json.dumps(result))


def trainer_loop(spec, mode: str, device: str) -> tuple[torch.device, float]:
    """Median step time of validate's Trainer (after its warm-up steps)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        options = RunOptions(device=device, compile=mode == "compile", cuda_graphs=mode == "cuda-graphs",
                             eval_every=10**9, checkpoint_every=10**9, run_dir=Path(tmp), progress=False)
        trainer = Trainer(spec, open_dataset(None), store, options)
        trainer.start()
        trainer.train()
        return trainer.device, store.query("SELECT step_time_s FROM stages")[0]["step_time_s"]


def bare_loop(spec, mode: str, steps: int, device: torch.device) -> tuple[torch.device, float]:
    """The least a training loop does (what the Trainer does per step, minus storing and
    bookkeeping), timed as the median of windows of 10 steps."""
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    model = GPT(gpt_shape(spec, 0)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=device.type == "cuda")
    forward = torch.compile(model, mode="reduce-overhead" if mode == "cuda-graphs" else None) if mode != "eager" \
        else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.training.precision == "bf16-mixed")
    data, generator = open_dataset(None), torch.Generator().manual_seed(0)
    t = spec.training

    def step() -> torch.Tensor:
        x, y = data.get_batch("train", t.micro_batch_size, spec.model.seq_len, generator)
        if device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        with autocast:
            _, loss = forward(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(WARMUP_STEPS):
        float(step())
    windows = []
    for _ in range(max(1, (steps - WARMUP_STEPS) // 10)):
        start = time.perf_counter()
        float(torch.stack([step() for _ in range(10)]).sum())
        windows.append((time.perf_counter() - start) / 10)
    return device, statistics.median(windows)


if __name__ == "__main__":
    main()
