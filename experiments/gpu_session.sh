#!/usr/bin/env bash
# One lent-GPU session's work, in one command (the device tool's machine has torch but not all of msr's
# dependencies: wheels in .whl/ are installed first when present). Writes everything under $OUT (or ./gpu_out):
#   1. study (a)+(e) end to end at experiment=synthetic_converged: head=maskiou and head=none, seeds 0-2,
#      the six runs side by side on the one GPU (experiments/parallel_runs.py, epochs sized to STUDY_S);
#   2. experiments/benchmarks/gpu.py at 800x1333 (precisions x batches, inference, MaskIoU overhead);
#   3. the study's run folders without checkpoints, as one archive.
#   STUDY_S=380 GPU_BENCH_S=130 bash experiments/gpu_session.sh
set -u
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
STUDY_S=${STUDY_S:-380}; GPU_BENCH_S=${GPU_BENCH_S:-130}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 MSR_CACHE_DIR=${MSR_CACHE_DIR:-/tmp/msr_cache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.txt" 2>&1
python3 -c "import torch, torchvision, lightning; print(torch.__version__, torchvision.__version__, lightning.__version__)" >> "$OUT/device.txt" 2>&1
# the synthetic set once, before six jobs would each want it
python3 -c "from msr.data.synthetic import generate_synthetic_coco as g; g(num_train=2000, num_val=200, \
image_size=128, min_objects=1, max_objects=4, min_object_size=0.25, max_object_size=0.6, seed=0)" >> "$OUT/device.txt" 2>&1
STUDY=/tmp/study_a_converged
python3 experiments/parallel_runs.py --out $STUDY --variants head=maskiou head=none --seeds 0 1 2 \
  --budget-s "$STUDY_S" --steps-per-epoch 250 -- experiment=synthetic_converged trainer=gpu logger=csv \
  > "$OUT/study.log" 2>&1
echo "study exit $?" >> "$OUT/study.log"
tar --exclude='*.ckpt' --exclude='checkpoints' -czf "$OUT/study_a_converged.tgz" -C /tmp study_a_converged
timeout "$GPU_BENCH_S" python3 experiments/benchmarks/gpu.py --batches 2 8 --iters 5 --warmup 2 \
  --json "$OUT/gpu.json" --markdown "$OUT/gpu.md" > "$OUT/gpu.log" 2>&1
echo "gpu.py exit $?" >> "$OUT/gpu.log"
