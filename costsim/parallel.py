"""Parallel layouts and the network: who talks to whom, over which link, for how long.

A layout splits the GPUs into tensor (tp), pipeline (pp) and data (dp) parallel groups,
tp x pp x dp = n_gpus, ranked as Megatron-LM and torchtitan rank them: tensor innermost
(consecutive GPUs), then data, then pipeline outermost. A group of ``size`` GPUs ``stride``
apart spans ``size x stride`` consecutive GPUs, and crosses nodes when that span exceeds
``gpus_per_node``: TP spans tp, DP spans tp x dp, PP spans tp x dp x pp (every GPU).

The network (per GPU, one direction, costsim/data/gpus/*.json): inside a node the
``interconnect`` (NVLink, PCIe), between nodes the ``inter_node`` link (InfiniBand,
Ethernet), each with a bandwidth and a latency a step. A collective runs as a ring on the
slowest link its group spans (between nodes: the network ports of the group's GPUs in a
node together, ``link``):

    all-reduce of B bytes over n GPUs:             2(n-1)/n x B / bw + 2(n-1) x latency
    all-gather or reduce-scatter (B the whole):     (n-1)/n x B / bw +  (n-1) x latency
    point-to-point (a pipeline send):                        B / bw +          latency

What each parallelism sends (the callers in costsim/engine.py add them to the step):
- tensor parallel (Megatron): per block, the attention and MLP outputs are all-reduced in
  forward and the inputs' gradients of their first matmuls in backward, each one
  activation (tokens x d in the compute dtype): 2 forward, 2 backward, 2 more forward
  when the block is recomputed; the embedding's output (forward) and the head's input
  gradient (backward) once each. Sequence parallelism replaces each all-reduce by an
  all-gather and a reduce-scatter: the same bytes. Exposed: added to the micro-batch.
- pipeline parallel: each micro-batch sends its activation forward and its gradient back
  across each rank boundary (v times with v virtual stages); sharded by tp under sequence
  parallelism. Exposed.
- data parallel: the gradient reduction (and ZeRO-3's weight gathers) of each pipeline
  rank's share over the DP group, overlapped with the backward of the last micro-batch as
  DDP does; only what sticks out is added to the step.

A trainer profile (costsim/trainers.py) may overlap more, each transfer then exposed only
past the compute that hides it, max(0, comm - compute), never simply zero:
- ``tp_comm_overlap`` (with sequence parallelism): each of a block's all-gathers and
  reduce-scatters is pipelined with the GEMM beside it (Transformer Engine userbuffers);
  a block pass (forward, backward, recomputed forward) pairs one of them with each of the
  block's four matmuls: exposed = sum over them of max(0, collective - GEMM).
- ``overlap_param_sync`` (zero1/zero2): the gradients are reduce-scattered behind the last
  micro-batch's backward and the updated weights all-gathered behind the first
  micro-batch's forward, each window on its own.
- ``overlap_p2p_comm`` (interleaved): each send behind the next model chunk's compute.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from costsim.constants import GRAD_BYTES, PARAM_BYTES
from costsim.ops import StageShape

Array = np.ndarray

PIPELINE_SCHEDULES = ("1f1b", "interleaved")


@dataclass(frozen=True)
class Layout:
    """How the GPUs are split (numpy arrays that broadcast with a ``StageShape``'s):
    ``tp`` tensor-parallel GPUs, ``pp`` pipeline ranks, ``dp`` data-parallel replicas,
    ``sp`` sequence parallelism, ``v`` virtual stages (model chunks) per pipeline rank
    (1: plain 1F1B), ``gpus_per_node`` the node's size, ``cp`` context-parallel GPUs (each
    sequence split over them), ``shard`` the GPUs ZeRO / FSDP shards its states over (all
    the ``weight_replicas``, dp x cp: full shard; fewer: hybrid sharding, the shards
    replicated over the rest, as FSDP's HYBRID_SHARD and HSDP)."""

    tp: Array
    pp: Array
    dp: Array
    sp: Array
    v: Array
    gpus_per_node: Array
    shard: Array
    cp: Array

    @classmethod
    def of(cls, n_gpus=1, tensor_parallel=1, pipeline_parallel=1, sequence_parallel=False, virtual_stages=1,
           gpus_per_node=8, shard_group=None, context_parallel=1) -> Layout:
        """The layout of ``n_gpus``; the data-parallel size is what tp x cp x pp leaves, which
        must divide ``n_gpus`` (the spec checks); ``shard_group`` (default: all the GPUs the
        weights are replicated on, dp x cp) must divide them."""
        tp, pp, cp, n = (np.asarray(x, dtype=np.int64)
                         for x in (tensor_parallel, pipeline_parallel, context_parallel, n_gpus))
        dp = n // (tp * pp * cp)
        replicated = dp * cp
        shard = replicated if shard_group is None else np.minimum(np.asarray(shard_group, dtype=np.int64), replicated)
        return cls(tp=tp, pp=pp, dp=dp, sp=np.asarray(sequence_parallel, dtype=bool) & (tp > 1),
                   v=np.asarray(virtual_stages, dtype=np.int64), gpus_per_node=np.asarray(gpus_per_node),
                   shard=np.broadcast_to(shard, np.broadcast(replicated, shard).shape), cp=cp)

    @property
    def weight_replicas(self) -> Array:
        """GPUs holding the same weights: the data-parallel replicas and, inside each, the
        context-parallel ranks (which split the sequence, not the model). Gradients are
        reduced, and ZeRO shards, over them."""
        return self.dp * self.cp

    @property
    def replicas(self) -> Array:
        """Copies of each shard under hybrid sharding (1: full shard)."""
        return self.weight_replicas // self.shard

    @property
    def hybrid(self) -> bool:
        return bool(np.any(self.shard < self.weight_replicas))

    @property
    def n_gpus(self) -> Array:
        return self.tp * self.cp * self.pp * self.dp

    def tokens(self, tokens: Array) -> Array:
        """One GPU's tokens of a micro-batch: context parallelism splits the sequence (each
        rank two load-balanced chunks of a causal sequence, so every rank's attention costs
        the same)."""
        return tokens // self.cp

    @property
    def sequence_shards(self) -> Array:
        """What splits the activations outside the tensor-parallel regions: tp under
        sequence parallelism, else nothing."""
        return np.where(self.sp, self.tp, 1)

    def _size_stride(self, group: str) -> tuple[Array, Array]:
        # Megatron's order: tensor innermost, then context, data, pipeline. The gradients' and
        # ZeRO's group ("data") is every GPU with the same weights: context x data ranks; a
        # hybrid shard group is consecutive ones.
        return {"tensor": (self.tp, 1), "context": (self.cp, self.tp), "data": (self.weight_replicas, self.tp),
                "pipeline": (self.pp, self.tp * self.cp * self.dp),
                "shard": (self.shard, self.tp), "replica": (self.replicas, self.tp * self.shard)}[group]

    def crosses_nodes(self, group: str) -> Array:
        """Whether the ``tensor``, ``context``, ``data``, ``pipeline``, ``shard`` or ``replica``
        group spans more than a node."""
        size, stride = self._size_stride(group)
        return size * stride > self.gpus_per_node

    def members_per_node(self, group: str) -> Array:
        """GPUs of one such group inside a node: the NICs its collectives share between nodes."""
        size, stride = self._size_stride(group)
        return np.minimum(size, np.maximum(self.gpus_per_node // stride, 1))

    def bubble_fraction(self, micro_batches) -> Array:
        """Pipeline bubble over the ideal time: (p - 1) / (m v), m micro-batches a step per replica."""
        return (self.pp - 1) / (np.asarray(micro_batches) * self.v)


def suits(tensor_parallel, pipeline_parallel, sizes, layers) -> Array:
    """Whether a (tensor, pipeline) layout can hold a shape (numpy broadcasting): tensor
    parallelism divides each of ``sizes`` (heads, key/value heads, d_ff) and the pipeline
    has no more ranks than ``layers`` blocks."""
    divides = np.logical_and.reduce([np.asarray(size) % tensor_parallel == 0 for size in sizes])
    return divides & (np.asarray(pipeline_parallel) <= layers)


def tokens_on_gpu(tokens, layout: Layout | None) -> Array:
    """One GPU's tokens of a micro-batch: all of them without a layout, else ``Layout.tokens``."""
    return tokens if layout is None else layout.tokens(tokens)


@dataclass(frozen=True)
class PipelineRank:
    """A pipeline rank whose memory or time may be the step's worst: ``shape`` holds its blocks
    (its own layers and n_trainable), ``embedding`` and ``head`` whether it holds the embeddings
    and the final norm, LM head and loss, ``in_flight`` the micro-batches of activations it
    keeps at its peak."""

    shape: StageShape
    embedding: Array | bool
    head: Array | bool
    in_flight: Array | int


def pipeline_ranks(s: StageShape, layout: Layout, micro_batches=None) -> list[PipelineRank]:
    """The first and the last pipeline rank (one rank, the whole model, without a pipeline).

    The L blocks split as evenly as they go: the first rank takes ceil(L/p), the bottom ones,
    with the embeddings; the last L//p, the top ones, with the head; the ranks between hold
    no more than the first and fewer micro-batches. Training the top K blocks, a rank trains
    those of its blocks among them (and runs backward through those the backward reaches).
    1F1B keeps min(p, m) micro-batches in flight on the first rank and one on the last;
    the interleaved schedule with v chunks a rank keeps p + (p-1)/v on the first and
    ((v-1)p + 1)/v on the last (Korthikanti et al. 2022, sec. 4.2.3; Megatron's warm-up
    counts), its chunks taken as contiguous blocks. ``micro_batches``: m per replica a step
    (default: a full pipeline)."""
    if np.all(layout.pp == 1):
        return [PipelineRank(s, True, True, 1)]
    L, K, p, v = s.layers, s.n_trainable, layout.pp, layout.v
    m = p if micro_batches is None else np.maximum(micro_batches, 1)
    first_layers, last_layers = -(-L // p), L // p
    first = replace(s, layers=first_layers, n_trainable=np.maximum(K - (L - first_layers), 0))
    last = replace(s, layers=last_layers, n_trainable=np.minimum(K, last_layers))
    whole = p == 1
    interleaved = v > 1
    return [
        PipelineRank(first, True, whole, np.where(interleaved, p + (p - 1) / v, np.minimum(p, m))),
        PipelineRank(last, whole, True, np.where(interleaved, ((v - 1) * p + 1) / v, 1)),
    ]


@dataclass(frozen=True)
class Link:
    """The slowest link a group spans: bandwidth per GPU per direction, latency per ring step."""

    bandwidth_bytes_per_s: Array
    latency_s: Array


def link(gpu, crosses_nodes, nics=1) -> Link:
    """The inter-node link where the group crosses nodes, else the node's interconnect. A GPU
    without an inter-node bandwidth is taken to have the interconnect's (one node's network).

    ``nics``: the group's GPUs in one node, each with its own network port. NCCL splits a
    collective over channels, one ring each, and lays each channel's one crossing between
    two nodes on a different port, so a ring collective moves across nodes at the ports'
    sum, up to the node's interconnect (nccl-tests on 8-port DGX nodes reach about the
    node's total network bandwidth as bus bandwidth). A point-to-point send uses one port."""
    inter_bw = gpu.inter_node_bandwidth_bytes_per_s or gpu.interconnect_bandwidth_bytes_per_s
    across = np.minimum(gpu.interconnect_bandwidth_bytes_per_s, inter_bw * np.asarray(nics))
    return Link(np.where(crosses_nodes, across, gpu.interconnect_bandwidth_bytes_per_s),
                np.where(crosses_nodes, gpu.inter_node_latency_s, gpu.interconnect_latency_s))


def group_link(gpu, layout: Layout, group: str) -> Link:
    """The link the ring collectives of a ``tensor``, ``data``, ``shard`` or ``replica`` group
    run on (a ``context`` ring's point-to-point sends use ``link`` with one port)."""
    return link(gpu, layout.crosses_nodes(group), layout.members_per_node(group))


# --- ring collectives: bytes each GPU sends, and time -------------------------------------


def all_reduce_bytes(buffer_bytes, n) -> Array:
    """Bytes each GPU sends in a ring all-reduce of ``buffer_bytes`` over ``n`` GPUs."""
    n = np.asarray(n, dtype=float)
    return 2 * (n - 1) / n * buffer_bytes


def all_gather_bytes(buffer_bytes, n) -> Array:
    """Bytes each GPU sends in a ring all-gather (or reduce-scatter) whose whole result is ``buffer_bytes``."""
    n = np.asarray(n, dtype=float)
    return (n - 1) / n * buffer_bytes


def all_reduce_s(buffer_bytes, n, via: Link) -> Array:
    return all_reduce_bytes(buffer_bytes, n) / via.bandwidth_bytes_per_s + 2 * (np.asarray(n) - 1) * via.latency_s


def all_gather_s(buffer_bytes, n, via: Link) -> Array:
    return all_gather_bytes(buffer_bytes, n) / via.bandwidth_bytes_per_s + (np.asarray(n) - 1) * via.latency_s


def send_s(buffer_bytes, via: Link) -> Array:
    return buffer_bytes / via.bandwidth_bytes_per_s + via.latency_s


# --- what each parallelism sends -----------------------------------------------------------


def communication_bytes_per_gpu(trainable_params, total_params, n_gpus, parallelism: str,
                                gather_bytes=PARAM_BYTES, reduce_bytes=GRAD_BYTES) -> Array:
    """Data parallelism's bytes a GPU sends a step over ``n_gpus`` replicas (the DP group):
    ``gather_bytes``: a parameter as ZeRO-3 all-gathers it (the dtype the model runs on,
    costsim/trainers.py); ``reduce_bytes``: a gradient as it is reduced. ZeRO-3 gathers the
    weights for the forward and again for the backward and reduce-scatters the gradients;
    the others all-reduce the gradients (ZeRO-1/2 as a reduce-scatter and an all-gather)."""
    if parallelism == "zero3":
        return (2 * all_gather_bytes(total_params * gather_bytes, n_gpus)
                + all_gather_bytes(trainable_params * reduce_bytes, n_gpus))
    return all_reduce_bytes(trainable_params * reduce_bytes, n_gpus)


def data_parallel_steps(n_gpus, parallelism: str) -> Array:
    """Ring steps of the data-parallel collectives a step (each paying the link's latency)."""
    n = np.asarray(n_gpus)
    return 3 * (n - 1) if parallelism == "zero3" else 2 * (n - 1)


def exposed_communication_s(comm_bytes, bandwidth_bytes_per_s, overlappable_s, latency_s=0.0) -> Array:
    """Communication time not hidden behind the backward pass."""
    return np.maximum(comm_bytes / bandwidth_bytes_per_s + latency_s - overlappable_s, 0.0)


def tensor_parallel_all_reduces(blocks, backward_blocks, recompute, embedding, head) -> Array:
    """Activation all-reduces of one micro-batch on a pipeline rank: 2 per block forward,
    2 per block in backward, 2 per recomputed block, the embedding's output, the head's
    input gradient (``embedding``, ``head``: whether the rank holds them)."""
    return 2 * blocks + 2 * backward_blocks + 2 * recompute * backward_blocks + embedding + head


def tensor_parallel_s(all_reduces, activation_bytes, layout: Layout, gpu) -> Array:
    """Exposed tensor-parallel time of one micro-batch: ``all_reduces`` of ``activation_bytes``."""
    return all_reduces * all_reduce_s(activation_bytes, layout.tp, group_link(gpu, layout, "tensor"))


def tensor_parallel_overlapped_s(block_passes, gemm_s, all_reduces, activation_bytes, layout: Layout, gpu) -> Array:
    """Exposed tensor-parallel time of one micro-batch when each collective of a block is
    pipelined with the GEMM beside it (``tp_comm_overlap``: Transformer Engine userbuffers).

    Under sequence parallelism a block pass (``block_passes``: forward, backward and
    recomputed-forward passes of the micro-batch's blocks) runs four half all-reduces of one
    activation, each beside one of the block's matmuls: forward, the all-gathers before the
    QKV and FC1 GEMMs and the reduce-scatters after the output and FC2 GEMMs; backward, the
    same four beside the output and FC2 input-gradient GEMMs and the QKV and FC1
    weight-gradient GEMMs, each of its forward GEMM's FLOPs. ``gemm_s``: one GEMM of each of
    the block's matmuls, one GPU's share of a micro-batch. A collective costs only what its
    GEMM cannot hide, max(0, collective - GEMM). The rest of ``all_reduces`` (the
    embedding's output and the head's input gradient, which no userbuffer GEMM covers)
    stays exposed. Without sequence parallelism the overlap does not apply (NeMo turns it
    off): every all-reduce is exposed, as ``tensor_parallel_s``."""
    via = group_link(gpu, layout, "tensor")
    half = all_gather_s(activation_bytes, layout.tp, via)
    per_pass = sum(np.maximum(half - g, 0.0) for g in gemm_s)
    plain = all_reduce_s(activation_bytes, layout.tp, via)
    outside = all_reduces - 2 * block_passes  # the block's two all-reduces a pass are the four halves above
    return np.where(layout.sp, block_passes * per_pass + outside * plain, all_reduces * plain)


def pipeline_send_s(activation_bytes, layout: Layout, gpu, forward_s=None, backward_s=None) -> Array:
    """Exposed pipeline time of one micro-batch on a rank: the activation sent forward and its
    gradient sent back, at each of the v chunk boundaries (none without a pipeline).

    ``forward_s``, ``backward_s`` (``overlap_p2p_comm``): the micro-batch's forward and
    backward compute on the rank. Under the interleaved schedule an activation's send then
    runs beside the next chunk's backward and a gradient's beside the next chunk's forward,
    each exposed only past that chunk's time (1/v of the pass); plain 1F1B waits on each."""
    sends = 2 * layout.v * (layout.pp > 1)
    one = send_s(activation_bytes / layout.sequence_shards, link(gpu, layout.crosses_nodes("pipeline")))
    if forward_s is None:
        return sends * one
    hidden = (np.maximum(one - backward_s / layout.v, 0.0) + np.maximum(one - forward_s / layout.v, 0.0)) / 2
    return sends * np.where(layout.v > 1, hidden, one)


def data_parallel_s(trainable_params, total_params, layout: Layout, parallelism: str,
                    via: Link | tuple[Link, Link], backward_s, forward_s=None, gather_bytes=PARAM_BYTES,
                    reduce_bytes=GRAD_BYTES, param_bytes=None, overlap_grad_sync=True) -> Array:
    """Exposed data-parallel time of a step on a pipeline rank (its parameters over the GPUs
    holding the same weights, ``layout.weight_replicas``; under hybrid sharding ``via`` is the
    shard group's link and the replicas', ``hybrid_data_parallel_s``).

    By default the gradient reduction (``communication_bytes_per_gpu``) is hidden behind the
    last micro-batch's backward (``backward_s``; none without ``overlap_grad_sync``).
    ``param_bytes`` with ``forward_s`` (``overlap_param_sync``; zero1 and zero2 only): a
    distributed optimizer's traffic is two collectives with two windows, the gradients'
    reduce-scatter (``reduce_bytes`` a parameter) behind the last backward, and the updated
    weights' all-gather (``param_bytes`` a parameter, the dtype the model runs on) behind
    the first micro-batch's forward."""
    window = backward_s if overlap_grad_sync else 0.0
    n = layout.weight_replicas
    if parallelism != "ddp" and layout.hybrid:
        return hybrid_data_parallel_s(trainable_params, total_params, layout, parallelism, via, backward_s,
                                      forward_s, gather_bytes, reduce_bytes, param_bytes, window)
    if param_bytes is None or parallelism not in ("zero1", "zero2"):
        comm = communication_bytes_per_gpu(trainable_params, total_params, n, parallelism, gather_bytes=gather_bytes,
                                           reduce_bytes=reduce_bytes)
        return exposed_communication_s(comm, via.bandwidth_bytes_per_s, window,
                                       data_parallel_steps(n, parallelism) * via.latency_s)
    reduce = all_gather_s(trainable_params * reduce_bytes, n, via)
    gather = all_gather_s(trainable_params * param_bytes, n, via)
    return np.maximum(reduce - window, 0.0) + np.maximum(gather - forward_s, 0.0)


def hybrid_data_parallel_s(trainable_params, total_params, layout: Layout, parallelism: str, via: tuple[Link, Link],
                           backward_s, forward_s, gather_bytes, reduce_bytes, param_bytes, window) -> Array:
    """``data_parallel_s`` under hybrid sharding: ZeRO's collectives run inside a shard group
    of ``layout.shard`` GPUs (``via[0]``), and each GPU's reduced gradient shard is then
    all-reduced over the ``layout.replicas`` copies of that shard (``via[1]``), 1/shard of the
    gradients. ZeRO-3 gathers the weights twice and reduce-scatters the gradients in its
    group; ZeRO-1/2 reduce-scatter the gradients and all-gather the updated weights in it
    (with ``param_bytes`` and ``forward_s``, behind the next forward). What the window (the
    last backward) does not hide is exposed."""
    inside, across = via
    k = layout.shard
    reduce = (all_gather_s(trainable_params * reduce_bytes, k, inside)
              + all_reduce_s(trainable_params * reduce_bytes / k, layout.replicas, across))
    if parallelism == "zero3":
        return np.maximum(2 * all_gather_s(total_params * gather_bytes, k, inside) + reduce - window, 0.0)
    if param_bytes is None or forward_s is None:
        return np.maximum(reduce + all_gather_s(trainable_params * reduce_bytes, k, inside) - window, 0.0)
    return np.maximum(reduce - window, 0.0) + np.maximum(all_gather_s(trainable_params * param_bytes, k, inside)
                                                         - forward_s, 0.0)
