#!/usr/bin/env bash
# The GPU checks of issue 12 in one run, for a machine with a CUDA device and only torch,
# torchvision, scikit-learn (and pytest) installed: no Prefect, MLflow, DVC or GX needed.
#
#   OUT=gpu-results bash benchmarks/gpu.sh          # about 8 minutes on an H100/H200
#
# Writes under $OUT: the CUDA tests, the trainer against the hand-written loop at 16 px batch 64 and
# 32 px batch 256 (the product's CUDA defaults, then per-update reads with torch's default Adam, the
# previous behaviour, then train.compile), and the default digits run trained on the GPU and scored with its gates.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
export PYTHONPATH=. OMP_NUM_THREADS=1
python - <<'PY' | tee "$OUT/device.txt"
import torch
print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")
PY
python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_train.py 2>&1 | tail -15 | tee "$OUT/tests.txt"
for shape in "16 64" "32 256"; do
  set -- $shape
  python -m benchmarks.train_throughput --device cuda --resolution "$1" --batch "$2" --steps 300 --repeats 3 \
    2>&1 | tee "$OUT/throughput_${1}px_b${2}.txt"
  python -m benchmarks.train_throughput --device cuda --resolution "$1" --batch "$2" --steps 300 --repeats 3 \
    --sync-every 1 --optimizer-impl for-loop 2>&1 | tee "$OUT/throughput_${1}px_b${2}_sync1_forloop.txt"
  python -m benchmarks.train_throughput --device cuda --resolution "$1" --batch "$2" --steps 300 --repeats 3 \
    --compile 2>&1 | grep -v "^W" | tee "$OUT/throughput_${1}px_b${2}_compile.txt"
done
python -m benchmarks.digits_quality --seeds 0 --configs stabilised --device cuda 2>&1 \
  | tee "$OUT/digits_default_cuda.txt"
