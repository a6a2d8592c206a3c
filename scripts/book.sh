#!/usr/bin/env bash
# README command 1: set up, execute every page with the CPU smoke profile (reusing up-to-date
# executed copies) and render the HTML book into _build/html. Extra arguments go to
# `python -m robbook book` (e.g. --profile quick --device cuda, or --execute all).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m robbook book "$@"
