#!/usr/bin/env bash
# The GPU checks of issues [4/5], [5/6] and [6/6], as one prepared run on a lent machine (see
# docs/benchmarks.md). The machine's image has torch, timm, torchvision, scipy…; faiss-cpu and
# pytorch-metric-learning (and pytest, for the CUDA tests) travel as wheels in .whl/ (pip download … -d
# .whl), the synthetic dataset in datasets/synthetic. Writes under $OUT (or ./device-out): bench.log and,
# with STUDY=1, study.log, teacher-study.md, study-records.tar.gz. The benchmarks' timeouts add up to 500 s.
#   STUDY=1: also [4/5]'s teacher study first (STUDY_S more seconds); STUDY_S: seconds the teacher study
#   may take (its runs stop there); JOBS: runs side by side; ONLY: the study's experiments to run
#   (comma-separated; default all); BENCH=0: no benchmarks.
set -u
OUT=${OUT:-device-out}
STUDY=${STUDY:-0}
STUDY_S=${STUDY_S:-250}
JOBS=${JOBS:-16}
ONLY=${ONLY:-}
BENCH=${BENCH:-1}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
started=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
  --target /tmp/site . plugins/tscm plugins/zoo >/dev/null 2>&1 || echo "pip install of the project failed"
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/bench.log"
python3 -c "import torch, timm, faiss; print('torch', torch.__version__, 'timm', timm.__version__, 'faiss', faiss.__version__)" | tee -a "$OUT/bench.log"
echo "setup: $(( $(date +%s) - started )) s" | tee -a "$OUT/bench.log"

# [4/5] why the teacher is weak: the study at equal budget, seed means (the GPU's 16 cores, JOBS at a time)
if [ "$STUDY" = 1 ]; then
  OMP_NUM_THREADS=1 timeout $((STUDY_S + 30)) python3 experiments/teacher_study.py --seeds 1,2,3 \
    --jobs "$JOBS" --device cuda --results results-study --output "$OUT/teacher-study.md" \
    --deadline "$STUDY_S" ${ONLY:+--only "$ONLY"} > "$OUT/study.log" 2>&1
  echo "study: exit $?, $(( $(date +%s) - started )) s since start" | tee -a "$OUT/bench.log"
  find results-study -name '*.json' -o -name '*.csv' -o -name '*.log' | tar czf "$OUT/study-records.tar.gz" -T -
fi
[ "$BENCH" = 1 ] || exit 0

# [5/6] the CUDA paths the CPU tests skip: descriptors kept on the GPU for the search, the resident and
# float16 exact search, the miner's distance blocks on the GPU
if python3 -m pytest --version >/dev/null 2>&1; then
  timeout 90 python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu" tests/evaluation/test_exact.py \
    tests/evaluation/test_device_search.py tests/evaluation/test_engine.py 2>&1 | tail -n 15 | tee -a "$OUT/bench.log"
else
  echo "pytest missing (add its wheel to .whl/): CUDA tests not run" | tee -a "$OUT/bench.log"
fi
# [5/6]+[6/6] exact search vs the GEMM limit on the GPU: host arrays, and resident tensors (target >= 0.8);
# [5/6] a 1 M x 512 float16 memory-mapped database: streamed to the GPU, and resident as float16
timeout 70 python3 benchmarks/matching.py --device cuda --sizes 10000,100000 2>&1 | tee -a "$OUT/bench.log"
timeout 120 python3 benchmarks/scale.py --device cuda 2>&1 | tee -a "$OUT/bench.log"
# engine vs bare forward (target >= 0.8); [4/5]+[5/6]+[6/6] paper-size teacher and student: bare
# forward+backward, a short training of each, the time split (checkpoints: target <= 5 % of the loop)
timeout 80 python3 benchmarks/eval_throughput.py --device cuda --images 512 --workers 8 --batch-size 64 2>&1 | tee -a "$OUT/bench.log"
timeout 140 python3 benchmarks/train_throughput.py --models paper --device cuda --epochs 1 --students 2 2>&1 | tee -a "$OUT/bench.log"
echo "total: $(( $(date +%s) - started )) s" | tee -a "$OUT/bench.log"
