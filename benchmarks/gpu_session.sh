#!/usr/bin/env bash
# Every GPU check costsim needs, in one device session; results under $OUT.
# Run on the device machine from the repo root (wheels for pydantic/duckdb in .whl/).
# DEVICE=cpu runs the same steps at laptop sizes: a smoke test of this script
# (tests/test_benchmarks.py), not a measurement.
set -u
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DB=$WORK/gpu.duckdb
if [ "$DEVICE" = cuda ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
if [ "$DEVICE" = cuda ]; then
  # preset mode loop timeout(s); the timeouts add up to under 600 s, one device call
  THROUGHPUT=("gpt2 compile trainer 75" "gpt2 compile bare 75" "byte cuda-graphs trainer 60"
              "byte cuda-graphs bare 60" "gpt2 eager trainer 40" "byte eager trainer 40")
  STUDY_ARGS=(--max-steps 40)
else
  THROUGHPUT=("tiny eager trainer 60" "tiny eager bare 60")
  STUDY_ARGS=(--tiny)
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, pydantic, duckdb; print('torch', torch.__version__, 'pydantic', pydantic.__version__, 'duckdb', duckdb.__version__)"
} 2>&1 | tee "$OUT/gpu.txt"

echo "== 1. cost sweep (validate.measure)"
timeout 150 python3 -m validate.measure --device "$DEVICE" --db "$DB" --out "$OUT/measure.json" 2>&1 | tee "$OUT/measure.log"

echo "== 2. training-loop throughput: validate's Trainer against a bare loop on the same model"
for args in "${THROUGHPUT[@]}"; do
  set -- $args
  timeout "$4" python3 benchmarks/train_throughput.py --preset "$1" --mode "$2" --loop "$3" --steps 52 \
    --device "$DEVICE" 2>>"$OUT/errors.log" | tail -1 | tee -a "$OUT/throughput.jsonl"
done

echo "== 3. the study's schedule for real (${STUDY_ARGS[*]}; on a GPU: GPT-2 small, 40 steps of 524,288 tokens)"
timeout 90 python3 -m validate.run examples/paper_s4.yaml --device "$DEVICE" "${STUDY_ARGS[@]}" --eval-every 5 \
  --db "$DB" --run-dir "$WORK/runs" --no-progress 2>&1 | tail -16 | tee "$OUT/paper_run.log"

cp "$DB" "$OUT/gpu.duckdb" 2>/dev/null
echo "== done"; cat "$OUT/throughput.jsonl"
