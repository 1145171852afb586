"""Fuzz costsim's spec handling (not a timed test): ``python benchmarks/fuzz.py --n 5000``.

Mutates the shipped example specs (odd values, scaled numbers, deleted and unknown keys,
duplicated stages, deep nesting; ``tests/fuzzing.py``) and feeds each to the spec parser,
the cost engine and the loss model, each case under a time limit. Prints counts by
outcome: refused (an error, one line per mistake), answered (every number finite and non-negative),
bad answer, crash, hang. The goal is 0 of the last three.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzzing import base_specs, check, mutate  # noqa: E402


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit-s", type=int, default=10, help="a case running longer is a hang")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seeds = base_specs()
    outcomes: Counter = Counter()
    examples: dict[str, str] = {}
    signal.signal(signal.SIGALRM, _alarm)
    started = time.monotonic()
    for _ in range(args.n):
        spec = mutate(rng.choice(seeds), rng)
        signal.alarm(args.limit_s)
        try:
            outcome = check(spec)
        except Hang:
            outcome = "hang"
        except AssertionError as exc:
            outcome, examples["bad answer"] = "bad answer", str(exc)[:300]
        except Exception:  # noqa: BLE001 - counting crashes is the point
            outcome, examples["crash"] = "crash", traceback.format_exc(limit=3)[-600:]
        finally:
            signal.alarm(0)
        outcomes[outcome] += 1
    print(f"{args.n} mutated specs in {time.monotonic() - started:.0f} s: " +
          ", ".join(f"{k} {outcomes[k]}" for k in ("refused", "answered", "bad answer", "crash", "hang")))
    for kind, text in examples.items():
        print(f"\nfirst {kind}:\n{text}")


if __name__ == "__main__":
    main()
