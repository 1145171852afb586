"""Throughput of the vectorised cost path: stage-estimates per second.

The search evaluates many candidate schedules; this is its inner loop.
Run: python benchmarks/estimate_many.py [--n 200000]
"""

import argparse
import time

import numpy as np

from costsim import StageShape, estimate_many, load_gpu, load_profile


def random_stages(n: int, rng: np.random.Generator) -> StageShape:
    heads = rng.choice([8, 12, 16, 32], n)
    d_model = heads * rng.choice([64, 128], n)
    layers = rng.integers(2, 48, n)
    return StageShape.of(
        layers=layers, d_model=d_model, n_heads=heads, n_kv_heads=heads, d_ff=4 * d_model, vocab_size=50304,
        seq_len=rng.choice([1024, 2048, 4096], n), micro_batch_size=rng.choice([1, 2, 4, 8, 16], n),
        n_trainable=np.maximum(1, layers - rng.integers(0, 8, n)).clip(max=layers),
        train_embeddings=rng.random(n) < 0.8, tied=rng.random(n) < 0.5, swiglu=rng.random(n) < 0.5,
        recompute=rng.random(n) < 0.3, compute_bytes=2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="stages per call")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = random_stages(args.n, rng)
    gpu, profile = load_gpu("h200"), load_profile("h200")
    estimate_many(shape, batch_size=256, gpu=gpu, profile=profile, n_gpus=8)  # warm-up
    timings = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        costs = estimate_many(shape, batch_size=256, gpu=gpu, profile=profile, n_gpus=8)
        timings.append(time.perf_counter() - start)
    assert np.isfinite(costs.step_time_s).all()
    best = min(timings)
    print(f"estimate_many: {args.n} stages in {best * 1e3:.1f} ms (best of {args.repeats}) "
          f"= {args.n / best:,.0f} stage-estimates/s")


if __name__ == "__main__":
    main()
