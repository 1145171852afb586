import os

# Tests must be fast and deterministic on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
