#!/usr/bin/env bash
# The demo command: set up what is missing, then run driftsvakt on the example estate.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
exec .venv/bin/driftsvakt demo "$@"
