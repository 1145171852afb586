"""Tokens/s and MFU of validate's real training loop (not a timed test).

Trains one stage of a fixed model through ``validate.trainer.Trainer`` (the loop
``python -m validate.run`` uses) and reports the median step time after warm-up.
Presets:
  gpt2     GPT-2 small (124M), micro-batch 16 x 1024, vocab 50304
  byte     byte-level d=384, 8 layers, seq 256, batch 64
  tiny     the laptop CPU preset (d=64, 4 layers, seq 64, batch 8)
Run: python benchmarks/train_throughput.py --preset gpt2 --mode compile --steps 60
"""

import argparse
import json
import tempfile
from pathlib import Path

from costsim.engine import estimate_many, stage_shape
from costsim.hardware import load_gpu
from costsim.profile import load_profile
from costsim.spec import parse_spec
from validate.data import open_dataset
from validate.store import Store
from validate.trainer import RunOptions, Trainer, device_gpu_preset

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
    args = parser.parse_args()
    model, layers, batch = PRESETS[args.preset]
    precision = "fp32" if args.device == "cpu" or args.preset == "tiny" else "bf16-mixed"
    spec = parse_spec({
        "model": model, "training": {"micro_batch_size": batch, "batch_size": batch, "precision": precision},
        "stages": [{"layers": layers, "tokens": args.steps * batch * model["seq_len"]}],
    })
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        options = RunOptions(device=args.device, compile=args.mode == "compile", cuda_graphs=args.mode == "cuda-graphs",
                             eval_every=10**9, checkpoint_every=10**9, run_dir=Path(tmp), progress=False)
        trainer = Trainer(spec, open_dataset(None), store, options)
        trainer.start()
        trainer.train()
        row = store.query("SELECT step_time_s, flops_counted_per_step FROM stages")[0]
    tokens = batch * model["seq_len"]
    preset = device_gpu_preset(trainer.device)
    costs = estimate_many(stage_shape(spec), batch_size=batch, gpu=load_gpu(preset or "h200"),
                          profile=load_profile(preset or "generic"), precision=precision)
    result = {"preset": args.preset, "mode": args.mode, "device": str(trainer.device), "gpu": preset,
              "tokens_per_s": tokens / row["step_time_s"], "step_time_s": row["step_time_s"],
              "predicted_step_time_s": float(costs.step_time_s[0])}
    if preset:
        peak = load_gpu(preset).peak_bf16_flops_per_s
        result["mfu_model"] = float(costs.flops_model_per_step[0]) / row["step_time_s"] / peak
        result["counted_tflops_per_s"] = row["flops_counted_per_step"] / row["step_time_s"] / 1e12
    print(json.dumps(result))


if __name__ == "__main__":
    main()
