#!/usr/bin/env bash
# One GPU check, sized for a short lease: the training, attack and evaluation benchmarks on CUDA, then one
# chapter's `quick` profile (Fashion-MNIST stands in for MNIST when MNIST is absent). Logs go to $OUT
# (default gpu_check/). Usage: OUT=dir CHAPTER=kamath CHAPTER_TIMEOUT=330 bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
# A bare GPU machine without network: install the carried wheels (pip download'ed for its Python).
if [ -d .devwheels ] && ! $PY -c "import papermill, ipykernel, ipywidgets, platformdirs" 2>/dev/null; then
  $PY -m pip install -q --no-index --find-links .devwheels papermill ipykernel 'ipywidgets>=8,<9' nbformat \
      platformdirs 2>&1 | tail -3
  $PY -m pip install -q --no-index --no-deps --find-links .devwheels torchattacks 2>&1 | tail -3   # an oracle only
fi
[ -d .devdata ] && export ROBBOOK_DATA=${ROBBOOK_DATA:-$PWD/.devdata}
t0=$(date +%s); stamp() { echo "=== $* (t=$(( $(date +%s) - t0 )) s)"; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/env.txt"
stamp "bench train"
[ -n "${SKIP_BENCH:-}" ] || timeout 150 $PY -m robbook bench train --device cuda --compile 2>&1 | grep -v Warning | tee "$OUT/bench_train.log"
stamp "bench attacks"
[ -n "${SKIP_ATTACKS:-}${SKIP_BENCH:-}" ] || timeout 70 $PY -c "from robbook.bench import attack_benchmark
for b in (256, 4096): attack_benchmark(batch=b, device='cuda', compile=True)" 2>&1 | grep -v Warning | tee "$OUT/bench_attacks.log"
stamp "bench eval"
[ -n "${SKIP_BENCH:-}" ] || timeout 80 $PY -c "from robbook.bench import eval_benchmark; eval_benchmark(n=500, device='cuda')" 2>&1 \
  | grep -v Warning | tee "$OUT/bench_eval.log"
CHAPTER=${CHAPTER:-kamath}
stamp "run $CHAPTER quick"
extra=()
[ "$CHAPTER" = kamath ] && extra=(-p slots '["mnist"]' -p mnist_data fashion_mnist)
timeout "${CHAPTER_TIMEOUT:-330}" $PY -m robbook run "$CHAPTER" --profile quick --device cuda "${extra[@]}" \
  > "$OUT/run_$CHAPTER.log" 2>&1
echo "exit $?" >> "$OUT/run_$CHAPTER.log"; tail -5 "$OUT/run_$CHAPTER.log"
stamp "done"
cp executed/*.json "$OUT/" 2>/dev/null; cp executed/*kamath*.ipynb executed/failed/*.ipynb "$OUT/" 2>/dev/null
ls executed executed/failed 2>/dev/null | head
true
