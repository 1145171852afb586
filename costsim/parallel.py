"""Data parallelism: gradient (and, for ZeRO-3, weight) traffic between GPUs.

Ring collectives move 2(n-1)/n of the buffer per GPU for an all-reduce (a
reduce-scatter plus an all-gather, which is also what ZeRO-1/2 do) and (n-1)/n for
either half. ZeRO-3 gathers the weights for the forward and again for the backward,
and reduce-scatters the gradients. DDP overlaps the gradient traffic with the
backward pass of the last micro-batch; only what sticks out is added to the step.
"""

from __future__ import annotations

import numpy as np

from costsim.constants import GRAD_BYTES, PARAM_BYTES

Array = np.ndarray


def communication_bytes_per_gpu(trainable_params, total_params, n_gpus, parallelism: str,
                                gather_bytes=PARAM_BYTES, reduce_bytes=GRAD_BYTES) -> Array:
    """``gather_bytes``: a parameter as ZeRO-3 all-gathers it (the dtype the model runs on,
    costsim/trainers.py); ``reduce_bytes``: a gradient as it is reduced."""
    n = np.asarray(n_gpus, dtype=float)
    half = (n - 1) / n  # one reduce-scatter or one all-gather
    if parallelism == "zero3":
        return 2 * half * total_params * gather_bytes + half * trainable_params * reduce_bytes
    return 2 * half * trainable_params * reduce_bytes


def exposed_communication_s(comm_bytes, interconnect_bytes_per_s, overlappable_s) -> Array:
    """Communication time not hidden behind the backward pass."""
    return np.maximum(comm_bytes / interconnect_bytes_per_s - overlappable_s, 0.0)
