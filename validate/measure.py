"""``python -m validate.measure``: time single training steps of many shapes on this device.

The same quantities as ../shared/calibration describes (counted FLOPs, median step
time, peak allocated and reserved memory, parameter counts), plus the saved-activation
bytes, for a sweep of shapes, train policies and recompute settings. Results go to the
store's ``cost_measurements`` table and, with ``--out``, to a JSON file in the shared
format that ``python -m costsim.calibrate`` fits a profile to.

A step is forward + backward + AdamW step + zero_grad(set_to_none=True); warm-up steps
first, then timed steps with a device synchronise around each; fp32 weights under bf16
autocast on a GPU, plain fp32 on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from costsim.calibration import CostCase
from costsim.errors import CostsimError, cli_errors
from costsim.store import Store

if TYPE_CHECKING:  # torch loads inside the functions, so a missing torch is one line from cli_errors
    import torch

    from validate.model import GPTShape


def gpt_shape(case: CostCase) -> GPTShape:
    from validate.model import GPTShape

    return GPTShape(vocab_size=case.V, seq_len=case.T, n_layers=case.L, d_model=case.d, n_heads=case.h,
                    n_kv_heads=case.n_kv_heads or case.h, d_ff=4 * case.d, mlp=case.mlp, tied_embeddings=case.tied)


def _case(d, h, L, T, B, V=50304, **kw) -> CostCase:
    tags = "".join(f"_{k}" if v is True else f"_no{k}" if v is False else f"_{k}{v}" for k, v in kw.items())
    return CostCase(name=f"{'byte_' if V == 256 else ''}d{d}_L{L}_T{T}_B{B}{tags}", V=V, d=d, h=h, L=L, T=T, B=B, **kw)


GPU_SWEEP = [
    _case(256, 4, 4, 512, 32), _case(512, 8, 6, 1024, 16), _case(768, 12, 12, 1024, 16),
    _case(768, 12, 12, 1024, 16, frozen=9), _case(768, 12, 12, 1024, 16, ckpt=True),
    _case(768, 12, 6, 1024, 16, frozen=3), _case(768, 12, 12, 1024, 8, tied=False, freeze_emb=True, frozen=6),
    _case(1024, 16, 8, 2048, 4), _case(1024, 16, 8, 1024, 8, mlp="swiglu"), _case(1024, 16, 8, 1024, 8, n_kv_heads=4),
    _case(1536, 12, 8, 1024, 8), _case(2048, 16, 6, 1024, 8), _case(2048, 16, 6, 2048, 4, ckpt=True),
    _case(384, 6, 8, 256, 64, V=256), _case(512, 8, 12, 512, 32, V=256), _case(768, 12, 4, 512, 64, V=256),
    _case(1280, 20, 12, 1024, 8), _case(640, 10, 10, 1024, 32), _case(896, 14, 16, 512, 16, frozen=8),
    _case(3072, 24, 4, 1024, 4),
]
CPU_SWEEP = [
    _case(64, 4, 2, 64, 4, V=256), _case(64, 4, 4, 64, 8, V=256, frozen=2), _case(96, 4, 3, 128, 4, V=256, ckpt=True),
    _case(128, 8, 2, 64, 8, V=512, tied=False, freeze_emb=True, frozen=1),
]


def measure_case(case: CostCase, device: torch.device, warmup: int = 3, repeats: int = 10) -> dict:
    import torch

    from validate.counting import count_micro_batch
    from validate.model import GPT

    torch.manual_seed(0)
    model = GPT(gpt_shape(case)).to(device)
    model.set_trainable(case.L - case.frozen, not case.freeze_emb)
    model.checkpoint_blocks(case.ckpt)
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    x = torch.randint(0, case.V, (case.B, case.T), device=device)
    y = torch.randint(0, case.V, (case.B, case.T), device=device)
    with autocast:
        count = count_micro_batch(model, x, y)
    model.zero_grad(set_to_none=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=cuda)

    def step() -> None:
        with autocast:
            _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    counts = model.parameter_counts()
    result = {
        **case.model_dump(), "precision": "bf16-mixed" if cuda else "fp32", "counted_flops": count.counted_flops,
        "saved_activation_bytes": count.saved_activation_bytes,
        "step_s_median": statistics.median(times), "step_s_min": min(times), "step_s_max": max(times),
        "params": counts["total"], "trainable": counts["trainable"], "non_embedding": counts["non_embedding"],
        "peak_alloc_bytes": float(torch.cuda.max_memory_allocated(device)) if cuda else None,
        "peak_reserved_bytes": float(torch.cuda.max_memory_reserved(device)) if cuda else None,
    }
    result["achieved_tflops"] = count.counted_flops / result["step_s_median"] / 1e12
    return result


def store_rows(results: list[dict], device_name: str) -> list[dict]:
    return [{
        "measurement_id": uuid.uuid4().hex, "device": device_name, "name": r["name"], "vocab_size": r["V"],
        "d_model": r["d"], "n_heads": r["h"], "n_layers": r["L"], "seq_len": r["T"], "micro_batch_size": r["B"],
        "frozen_blocks": r["frozen"], "freeze_embeddings": r["freeze_emb"], "tied_embeddings": r["tied"],
        "recompute": r["ckpt"], "mlp": r["mlp"], "n_kv_heads": r["n_kv_heads"], "precision": r["precision"],
        "counted_flops": float(r["counted_flops"]),
        "step_time_s": r["step_s_median"], "peak_alloc_bytes": r["peak_alloc_bytes"] or 0.0,
        "peak_reserved_bytes": r["peak_reserved_bytes"] or 0.0,
        "saved_activation_bytes": float(r["saved_activation_bytes"]), "source": "validate.measure",
    } for r in results]


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validate.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--db", default="costsim.duckdb", help="DuckDB store (default ./costsim.duckdb)")
    parser.add_argument("--out", help="also write the measurements as JSON (the costsim.calibrate format)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per case")
    parser.add_argument("--only", help="comma-separated case names to run (default: the device's sweep)")
    args = parser.parse_args(argv)
    import torch

    from validate.trainer import resolve_device

    device = resolve_device(args.device)
    cases = GPU_SWEEP if device.type == "cuda" else CPU_SWEEP
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {c.name for c in cases}
        if unknown:
            raise CostsimError(
                f"--only: unknown case {sorted(unknown)[0]!r}; known: {', '.join(c.name for c in cases)}")
        cases = [c for c in cases if c.name in wanted]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = []
    for case in cases:
        results.append(measure_case(case, device, repeats=args.repeats))
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the case's model is gone; don't let its blocks skew the next peak
        r = results[-1]
        print(f"{r['name']:36s} {r['step_s_median'] * 1e3:8.2f} ms  {r['achieved_tflops']:7.1f} TFLOP/s  "
              f"peak {(r['peak_alloc_bytes'] or r['saved_activation_bytes']) / 2**30:6.2f} GiB", flush=True)
    store = Store(args.db)
    store.append("cost_measurements", store_rows(results, device_name))
    store.flush()
    if args.out:
        info = {"gpu": device_name, "torch": torch.__version__, "source": "python -m validate.measure"}
        Path(args.out).write_text(json.dumps({"info": info, "cases": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
