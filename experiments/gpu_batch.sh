#!/usr/bin/env bash
# A time-boxed batch of msr commands on a GPU machine without internet, in one command. Such a machine
# may have torch but not all of msr's dependencies: wheels in $WHEELS (.whl/) are installed first when
# present (pip download them elsewhere). Writes everything under $OUT (or ./gpu_out):
#   1. experiments/benchmarks/gpu.py at 800x1333 (precisions x batches, inference, MaskIoU overhead),
#      for at most GPU_BENCH_S seconds (0: skipped);
#   2. the msr-train runs named in RUNS (space-separated; each a comma-separated list of overrides) at
#      EXPERIMENT (synthetic_converged), one after another (six side by side on one H200 ran no faster
#      than one alone); each gets an equal share of STUDY_S seconds (+trainer.max_time), is evaluated
#      when it stops, and its folder, without checkpoints, is archived as soon as it ends, so that a batch
#      cut short still brings back every run that finished.
#   RUNS="head=maskiou,seed=1 head=none,seed=1" STUDY_S=420 GPU_BENCH_S=120 bash experiments/gpu_batch.sh
# Data outside the checkout (e.g. the balloon set copied to data/balloon):
#   EXPERIMENT=balloon_cpu_study RUNS="head=maskiou,seed=0,data.root=data/balloon ..." GPU_BENCH_S=0 bash ...
# TRAINER (gpu), PYTHON (python3), STUDY_DIR (/tmp/study) and WHEELS (.whl) can be changed; with TRAINER=cpu
# tests/experiments/test_gpu_batch.py runs this same script on a CPU.
set -u
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
TRAINER=${TRAINER:-gpu}; PYTHON=${PYTHON:-python3}; STUDY_DIR=${STUDY_DIR:-/tmp/study}; WHEELS=${WHEELS:-.whl}
RUNS=${RUNS:-"head=maskiou,seed=1 head=none,seed=1"}; EXPERIMENT=${EXPERIMENT:-synthetic_converged}; STUDY_S=${STUDY_S:-420}; GPU_BENCH_S=${GPU_BENCH_S:-120}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 MSR_CACHE_DIR=${MSR_CACHE_DIR:-/tmp/msr_cache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.txt" 2>&1
"$PYTHON" -c "import torch, torchvision, lightning; print(torch.__version__, torchvision.__version__, lightning.__version__)" >> "$OUT/device.txt" 2>&1
if [ "$GPU_BENCH_S" -gt 0 ]; then   # GPU_BENCH_S=0 skips the benchmark
  timeout "$GPU_BENCH_S" "$PYTHON" experiments/benchmarks/gpu.py --batches 2 8 --iters 5 --warmup 2 \
    --json "$OUT/gpu.json" --markdown "$OUT/gpu.md" > "$OUT/gpu.log" 2>&1
  echo "gpu.py exit $?" >> "$OUT/gpu.log"
fi
set -- $RUNS
share=$(( STUDY_S / ($# > 0 ? $# : 1) - 25 ))   # seconds of training per run; start-up and evaluation outside
for run in "$@"; do
  name=${run//[=,\/]/_}   # a long one is cut and given a checksum of the whole (file names have 255 bytes)
  [ ${#name} -le 100 ] || name="${name:0:80}_$(printf %s "$run" | cksum | cut -d" " -f1)"
  timeout $(( share + 60 )) "$PYTHON" -m msr.cli.train experiment="$EXPERIMENT" trainer="$TRAINER" logger=csv \
    ${run//,/ } "+trainer.max_time='$(printf '00:00:%02d:%02d' $(( share / 60 )) $(( share % 60 )))'" hydra.run.dir="$STUDY_DIR/$name" \
    > "$OUT/$name.log" 2>&1
  echo "$run exit $?" >> "$OUT/runs.txt"
  # archived after every run: a call stopped at its limit still brings back the runs that finished
  tar --exclude='*.ckpt' --exclude='checkpoints' -czf "$OUT/study.tgz.part" -C "$(dirname "$STUDY_DIR")" "$(basename "$STUDY_DIR")" && mv "$OUT/study.tgz.part" "$OUT/study.tgz"
done
