#!/usr/bin/env bash
# The GPU checks of issue 12 in one run, for a machine with a CUDA device and only torch,
# torchvision, scikit-learn (and pytest) installed: no Prefect, MLflow, DVC or GX needed.
#
#   OUT=gpu-results bash benchmarks/gpu.sh          # about 12 minutes on an H100/H200 (estimated)
#
# Most important first, each result written as soon as it exists (a run cut short keeps what it has):
# the CUDA tests (train.cuda_graph captured and replayed against eager, resume, rollback); the trainer
# with train.cuda_graph against the hand-written eager loop and the hand-written whole-step CUDA graph
# (16 px batch 64, then 32 px batch 256); the default digits run trained on the GPU with and without
# train.cuda_graph and scored with its gates; then the trainer with the CUDA defaults, captured with NCHW
# batches instead of channels_last (train.memory_format), with per-update reads and torch's default Adam
# (the previous behaviour), and with train.compile. One Adam update per implementation (benchmarks.adam_impl)
# sits among them: seconds, and it checks train.optimizer_impl's CUDA default.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
export PYTHONPATH=. OMP_NUM_THREADS=1
python - <<'PY' | tee "$OUT/device.txt"
import torch
print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")
PY
python -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_graphs.py 2>&1 | tail -25 \
  | tee "$OUT/tests_cuda.txt"
throughput() {  # throughput <file stem> <resolution> <batch> [flags...]
  local stem=$1 res=$2 batch=$3
  shift 3
  python -m benchmarks.train_throughput --device cuda --resolution "$res" --batch "$batch" --steps 200 \
    --repeats 3 "$@" 2>&1 | grep -v "^W" | tee "$OUT/throughput_${res}px_b${batch}${stem}.txt"
}
throughput _cuda_graph 16 64 --cuda-graph
python -m benchmarks.digits_quality --seeds 0 --configs stabilised --device cuda --cuda-graph 2>&1 \
  | tee "$OUT/digits_default_cuda_graph.txt"
throughput _cuda_graph 32 256 --cuda-graph
throughput "" 16 64
python -m benchmarks.digits_quality --seeds 0 --configs stabilised --device cuda 2>&1 \
  | tee "$OUT/digits_default_cuda.txt"
python -m pytest -q -p no:cacheprovider tests/test_train.py 2>&1 | tail -5 | tee "$OUT/tests_train.txt"
python -m benchmarks.adam_impl --device cuda --model stylegan2 2>&1 | tee "$OUT/adam_impl_stylegan2.txt"
throughput "" 32 256
throughput _cuda_graph_contiguous 32 256 --cuda-graph --memory-format contiguous
throughput _sync1_forloop 16 64 --sync-every 1 --optimizer-impl for-loop
throughput _compile 16 64 --compile
throughput _sync1_forloop 32 256 --sync-every 1 --optimizer-impl for-loop
throughput _compile 32 256 --compile
