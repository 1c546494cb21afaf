#!/usr/bin/env bash
# The GPU checks of issues [4/5] and [6/6], as one prepared run on a lent machine (see README,
# "Benchmarks"). The machine's image has torch, timm, torchvision, scipy…; faiss-cpu and
# pytorch-metric-learning travel as wheels in .whl/ (pip download … -d .whl), the synthetic dataset in
# datasets/synthetic. Writes under $OUT (or ./device-out): bench.log, study.log, teacher-study.md,
# study-records.tar.gz.
#   STUDY_S: seconds the teacher study may take (its runs stop there); JOBS: runs side by side;
#   ONLY: the study's experiments to run (comma-separated; default all); BENCH=0: no benchmarks.
set -u
OUT=${OUT:-device-out}
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
OMP_NUM_THREADS=1 timeout $((STUDY_S + 30)) python3 experiments/teacher_study.py --seeds 1,2,3 \
  --jobs "$JOBS" --device cuda --results results-study --output "$OUT/teacher-study.md" \
  --deadline "$STUDY_S" ${ONLY:+--only "$ONLY"} > "$OUT/study.log" 2>&1
echo "study: exit $?, $(( $(date +%s) - started )) s since start" | tee -a "$OUT/bench.log"
find results-study -name '*.json' -o -name '*.csv' -o -name '*.log' | tar czf "$OUT/study-records.tar.gz" -T -
[ "$BENCH" = 1 ] || exit 0

# [6/6] exact search vs the GEMM limit on the GPU; engine vs bare forward; [4/5]+[6/6] paper-size
# teacher and student: bare forward+backward, a short training of each, the time split
timeout 70 python3 benchmarks/matching.py --device cuda --sizes 10000,100000 2>&1 | tee -a "$OUT/bench.log"
timeout 80 python3 benchmarks/eval_throughput.py --device cuda --images 512 --workers 8 --batch-size 64 2>&1 | tee -a "$OUT/bench.log"
timeout 140 python3 benchmarks/train_throughput.py --models paper --device cuda --epochs 1 --students 2 2>&1 | tee -a "$OUT/bench.log"
echo "total: $(( $(date +%s) - started )) s" | tee -a "$OUT/bench.log"
