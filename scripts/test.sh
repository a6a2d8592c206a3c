#!/usr/bin/env bash
# README command 2: set up, then run the whole test suite (unit tests, export and notebook checks,
# every chapter under the smoke profile through papermill, the book build, the browser test).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
