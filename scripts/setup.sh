#!/usr/bin/env bash
# Set up everything robbook needs on a fresh machine: Debian packages (when root), a virtual
# environment in .venv with the pinned Python packages, robbook installed editable, and the
# book's JavaScript from npm. Safe to re-run: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
say() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages: Fashion-MNIST (smoke data), Chromium + driver (browser test), Node.js/npm.
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
  else
    say "missing Debian packages: ${need[*]}"
    say "install them with:  sudo apt-get install -y ${need[*]}"
    say "(dataset-fashion-mnist is the smoke profile's data; chromium/chromium-driver run the browser test)"
    [ -n "${ROBBOOK_SETUP_LENIENT:-}" ] || exit 1
  fi
fi

# 2. Python environment. torch is pinned to the build that is on this machine's disk; on another
#    machine pip downloads it (set ROBBOOK_TORCH_SPEC to choose another build).
stamp=.venv/.robbook-setup
want=$(cat settings.ini setup.py scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
if [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  say "installing Python packages (torch first, then robbook[book,dev]); this takes a few minutes"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q ${ROBBOOK_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1} 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q -e ".[book,dev]" 2>&1 | grep -v '^WARNING: Location' || true
  # torchattacks is only a test oracle; its requests pin conflicts with Jupyter, so no deps.
  .venv/bin/python -m pip install -q --no-deps torchattacks==3.5.1 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import torch, torchvision, robbook, nbdev, papermill, jupyter_book, torchattacks" \
    || { say "the Python environment is incomplete; see the pip output above"; exit 1; }
  echo "$want" > $stamp
else
  say ".venv is up to date"
fi

# 3. The book's JavaScript (served by the book itself: no CDN).
if [ ! -d node_modules/@jupyter-widgets/html-manager ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing the book's JavaScript with npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "ready"
