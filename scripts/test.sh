#!/usr/bin/env bash
# The test command: set up what is missing, then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,demo
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
