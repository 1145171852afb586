"""Every constant the cost model uses, in one place."""

BYTES_PER_ELEMENT = {"fp32": 4, "bf16": 2, "int64": 8}

# The reference model keeps fp32 master weights (also under bf16 autocast).
PARAM_BYTES = BYTES_PER_ELEMENT["fp32"]
GRAD_BYTES = BYTES_PER_ELEMENT["fp32"]
# AdamW keeps two fp32 moments per trainable parameter.
ADAMW_STATE_BYTES = 2 * BYTES_PER_ELEMENT["fp32"]

# Activation dtypes: the residual stream and norm statistics stay fp32 under autocast;
# matmul inputs and outputs are in the compute dtype.
COMPUTE_BYTES = {"fp32": BYTES_PER_ELEMENT["fp32"], "bf16-mixed": BYTES_PER_ELEMENT["bf16"]}
RESIDUAL_BYTES = BYTES_PER_ELEMENT["fp32"]
STAT_BYTES = BYTES_PER_ELEMENT["fp32"]
INDEX_BYTES = BYTES_PER_ELEMENT["int64"]

SECONDS_PER_HOUR = 3600.0
