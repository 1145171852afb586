"""Real counters for what one training step executes: counted FLOPs and saved activations.

Counted FLOPs are what ``torch.utils.flop_counter.FlopCounterMode`` reports. On a GPU
it knows the fused attention kernels; on the CPU, PyTorch dispatches
``F.scaled_dot_product_attention`` to ``_scaled_dot_product_flash_attention_for_cpu``,
which the counter does not know and would count as zero. We register the CPU kernel
and its backward with the very formulas PyTorch uses for the GPU kernels (forward:
two full matmuls; backward: five, because the scores are recomputed), so a CPU count
equals the GPU count for the same model. ../shared/calibration's H200 counts confirm it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _cpu_sdpa_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _cpu_attention_mapping() -> dict:
    mapping = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    # FlopCounterMode turns tensors into shapes for custom_mapping entries itself.
    if forward is not None:
        mapping[forward] = _cpu_sdpa_forward
    if backward is not None:
        mapping[backward] = _cpu_sdpa_backward
    return mapping


def flop_counter_mode() -> FlopCounterMode:
    """A FlopCounterMode that also counts the CPU attention kernels."""
    return FlopCounterMode(display=False, custom_mapping=_cpu_attention_mapping())


@dataclass(frozen=True)
class SavedTensors:
    """Activations autograd saved for backward, each storage counted once.

    Parameters (and views of them, such as a transposed weight) are not activations
    and are left out.
    """

    bytes: int
    n_tensors: int


class _Held:
    """What autograd stores instead of the tensor, so we can see when it is released."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class SavedActivationCounter:
    """Counts activations saved for backward that are still held when asked.

    Wrap a forward pass; read ``result`` before calling backward. Tensors that were
    packed but already released (a checkpointed block whose inputs need no grad saves
    its input, then drops it with its frame) are not resident and are not counted.
    """

    def __init__(self, module: torch.nn.Module):
        self._skip = {p.untyped_storage().data_ptr() for p in module.parameters()}
        self._held: list[weakref.ref[_Held]] = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda held: held.tensor)

    def _pack(self, tensor: torch.Tensor) -> _Held:
        held = _Held(tensor)
        if tensor.untyped_storage().data_ptr() not in self._skip:
            self._held.append(weakref.ref(held))
        return held

    def __enter__(self) -> SavedActivationCounter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def result(self) -> SavedTensors:
        storages = {}
        for ref in self._held:
            held = ref()
            if held is not None:
                storage = held.tensor.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
        return SavedTensors(bytes=sum(storages.values()), n_tensors=len(storages))


@dataclass(frozen=True)
class MicroBatchCount:
    counted_flops: int
    saved_activation_bytes: int


def count_micro_batch(model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> MicroBatchCount:
    """Counted FLOPs of forward+backward and activations held for backward, one micro-batch."""
    with flop_counter_mode() as flops:
        with SavedActivationCounter(model) as saved:
            _, loss = model(idx, targets)
        held = saved.result.bytes
        loss.backward()
    return MicroBatchCount(counted_flops=flops.get_total_flops(), saved_activation_bytes=held)
