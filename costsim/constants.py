"""Every constant the cost model uses, in one place."""

BYTES_PER_ELEMENT = {"fp32": 4, "bf16": 2, "int64": 8}

# The reference model keeps fp32 master weights (also under bf16 autocast).
PARAM_BYTES = BYTES_PER_ELEMENT["fp32"]
GRAD_BYTES = BYTES_PER_ELEMENT["fp32"]
# AdamW keeps two fp32 moments per trainable parameter.
ADAMW_STATE_BYTES = 2 * BYTES_PER_ELEMENT["fp32"]
# A trainer whose model weights are bf16 keeps an fp32 master copy with the optimizer (Megatron).
MASTER_WEIGHT_BYTES = BYTES_PER_ELEMENT["fp32"]

# Activation dtypes: the residual stream and norm statistics stay fp32 under autocast;
# matmul inputs and outputs are in the compute dtype.
COMPUTE_BYTES = {"fp32": BYTES_PER_ELEMENT["fp32"], "bf16-mixed": BYTES_PER_ELEMENT["bf16"]}
RESIDUAL_BYTES = BYTES_PER_ELEMENT["fp32"]
STAT_BYTES = BYTES_PER_ELEMENT["fp32"]
INDEX_BYTES = BYTES_PER_ELEMENT["int64"]

SECONDS_PER_HOUR = 3600.0

# Limits of a spec: far beyond any real run, and low enough that no quantity costsim
# computes in int64 (counted FLOPs per step, bytes) can overflow. A spec past one of
# them is refused with the limit named, never answered with a wrapped-around number.
LIMITS = {
    "d_model": 2**17, "n_heads": 2**14, "d_ff": 2**19, "vocab_size": 2**22, "seq_len": 2**22, "layers": 2**12,
    "batch_size": 2**24, "micro_batch_size": 2**24, "n_gpus": 2**20, "gpus_per_node": 2**10,
    "tensor_parallel": 2**10, "pipeline_parallel": 2**12, "virtual_stages": 2**12,
}
MAX_STAGE_TOKENS = 1e16  # per stage; the largest published runs train about 2e13 tokens in all
MAX_INT64_QUANTITY = 2**62  # a per-micro-batch FLOP or byte count above this is refused

# Share of a GPU's memory a plan may fill, wherever "fits" is decided (the search and
# costsim.estimate): the rest is margin for what the memory model leaves out (CUDA context,
# NCCL buffers, fragmentation past the calibrated allocator reserve) and for its error,
# which reaches 14% (allocated) and 12% (reserved) on held-out steps of the H200 profile.
MEMORY_HEADROOM = 0.9
