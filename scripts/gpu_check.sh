#!/usr/bin/env bash
# One GPU check for a short lease (<= 10 minutes on one H100-class GPU): the three benchmarks and each chapter's
# quick estimate at the measured speed on CUDA, every
# chapter under `smoke` on CUDA, and every chapter's tiny `full` (the full structure with every size cut, on
# generated data in the real formats: tests/fakedata.py), then a one-page summary (per chapter: time, verdict
# counts, error). Logs and the summary go to $OUT (default gpu_check/).
# Usage: OUT=dir [SKIP_BENCH=1] [CHAPTERS="tsipras kamath ilyas moayeri"] bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
export ROBBOOK_CACHE=${ROBBOOK_CACHE:-$PWD/$OUT/cache}
# A bare GPU machine without network: install the carried wheels (pip download'ed for its Python).
if [ -d .devwheels ] && ! $PY -c "import papermill, ipykernel, ipywidgets, platformdirs" 2>/dev/null; then
  $PY -m pip install -q --no-index --find-links .devwheels papermill ipykernel 'ipywidgets>=8,<9' nbformat \
      platformdirs 2>&1 | tail -3
  $PY -m pip install -q --no-index --no-deps --find-links .devwheels torchattacks 2>&1 | tail -3   # an oracle only
fi
[ -d .devdata ] && export ROBBOOK_DATA=${ROBBOOK_DATA:-$PWD/.devdata}
t0=$(date +%s); stamp() { echo "=== $* (t=$(( $(date +%s) - t0 )) s)" | tee -a "$OUT/times.txt"; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/env.txt"
if [ -z "${SKIP_BENCH:-}" ]; then
  stamp "bench train"
  timeout 60 $PY -m robbook bench train --device cuda 2>&1 | grep -v Warning > "$OUT/bench_train.log"
  stamp "bench attacks"
  timeout 30 $PY -c "from robbook.bench import attack_benchmark
for b in (256, 4096): attack_benchmark(batch=b, device='cuda')" 2>&1 | grep -v Warning > "$OUT/bench_attacks.log"
  stamp "bench eval"
  timeout 120 $PY -c "from robbook.bench import eval_benchmark   # one model: the published reference takes minutes
eval_benchmark(n=500, device='cuda', models=('pgd-linf-0.2',))" 2>&1 \
    | grep -v Warning > "$OUT/bench_eval.log"
  stamp "estimates"                 # each chapter's quick: the FLOP floor and the time at this GPU's measured speed
  for ch in tsipras ilyas kamath moayeri; do
    timeout 60 $PY -m robbook estimate "$ch" --profile quick --device cuda --measure 2>/dev/null
  done > "$OUT/estimates.log"
fi
# generated data in the real formats for the tiny full runs (tests/fakedata.py: MNIST IDX, CIFAR-10 pickles, an
# ImageNet folder, Ilyas et al.'s released datasets, robustness checkpoints, Moayeri et al.'s ImageNet suite)
FAKE=$PWD/$OUT/fakedata
$PY -c "import sys; sys.path.insert(0, 'tests'); import fakedata as F; F.write_all('$FAKE')"
CHAPTERS=${CHAPTERS:-"kamath moayeri tsipras ilyas"}
for ch in $CHAPTERS; do
  stamp "run $ch smoke"
  timeout -s INT -k 10 "${SMOKE_TIMEOUT:-70}" $PY -m robbook run "$ch" --profile smoke --device cuda > "$OUT/run_${ch}_smoke.log" 2>&1
  echo "exit $?" >> "$OUT/run_${ch}_smoke.log"
  stamp "run $ch tiny full"
  mapfile -t extra < <($PY -c "import sys; sys.path.insert(0, 'tests'); import fakedata as F
for k, v in F.tiny_run_params('$ch', 'full', '$FAKE').items(): print(*(['--data-root'] if k == 'data_root' else ['-p', k]), v, sep=chr(10))")
  timeout -s INT -k 10 "${TINY_TIMEOUT:-40}" $PY -m robbook run "$ch" --profile full --tiny --device cuda \
    "${extra[@]}" > "$OUT/run_${ch}_tiny_full.log" 2>&1
  echo "exit $?" >> "$OUT/run_${ch}_tiny_full.log"
done
stamp "done"
# the one-page summary: per chapter and run, wall time, verdict counts, the error if any
$PY - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, sys
from collections import Counter
from pathlib import Path
out = Path(sys.argv[1])
print(open(out / "env.txt").read().strip())
print(open(out / "times.txt").read().strip())
if (out / "estimates.log").exists():
    print(open(out / "estimates.log").read().strip())
for log in sorted(out.glob("run_*.log")):
    text = log.read_text().strip().splitlines()
    status = text[-1] if text else "no log"
    err = next((l for l in text if l.startswith("robbook:")), "")
    print(f"{log.stem:<28} {status:<8} {err[:160]}")
for js in sorted(Path("executed/runs").glob("*cuda*/*.json")):
    d = json.loads(js.read_text())
    c = Counter(x.get("verdict") for x in d["results"].get("claims", []))
    print(f"{js.parent.name:<40} {js.stem:<8} {d['provenance'].get('wall_time_s', 0):7.0f} s  {dict(c)}")
PY
cp -r executed/runs "$OUT/runs" 2>/dev/null; cp executed/failed/*.ipynb "$OUT/" 2>/dev/null
true
