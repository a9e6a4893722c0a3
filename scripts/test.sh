#!/usr/bin/env bash
# Install kshot with its test dependencies and run the test suite (what CI runs).
# Extra arguments go to pytest, e.g. scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
exec .venv/bin/python -m pytest "$@"
