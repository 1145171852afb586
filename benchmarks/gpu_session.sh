#!/usr/bin/env bash
# Every GPU check costsim needs, in one device session; results under $OUT.
# Run on the device machine from the repo root (wheels for pydantic/duckdb in .whl/).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
DB=/tmp/gpu.duckdb
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, pydantic, duckdb; print('torch', torch.__version__, 'pydantic', pydantic.__version__, 'duckdb', duckdb.__version__)"
} 2>&1 | tee "$OUT/gpu.txt"

# Timeouts add up to under 600 s, one device call; every result is appended as it lands.
echo "== 1. cost sweep (validate.measure)"
timeout 150 python3 -m validate.measure --device cuda --db $DB --out "$OUT/measure.json" 2>&1 | tee "$OUT/measure.log"

echo "== 2. training-loop throughput: validate's Trainer against a bare loop on the same model"
for args in "gpt2 compile trainer 75" "gpt2 compile bare 75" "byte cuda-graphs trainer 60" "byte cuda-graphs bare 60" \
            "gpt2 eager trainer 40" "byte eager trainer 40"; do
  set -- $args
  timeout "$4" python3 benchmarks/train_throughput.py --preset "$1" --mode "$2" --loop "$3" --steps 52 --device cuda \
    2>>"$OUT/errors.log" | tail -1 | tee -a "$OUT/throughput.jsonl"
done

echo "== 3. the study's schedule for real (GPT-2 small, 40 steps of 524,288 tokens)"
timeout 90 python3 -m validate.run examples/paper_s4.yaml --device cuda --max-steps 40 --eval-every 5 \
  --db $DB --run-dir /tmp/runs --no-progress 2>&1 | tail -16 | tee "$OUT/paper_run.log"

cp $DB "$OUT/gpu.duckdb" 2>/dev/null
echo "== done"; cat "$OUT/throughput.jsonl"
