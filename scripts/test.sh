#!/usr/bin/env bash
# Install kshot with its test dependencies and run the test suite (what CI runs).
# Extra arguments go to pytest, e.g. scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
# Lint and format check first: no line over 120 columns, imports sorted, nothing unused (pyproject.toml [tool.ruff]).
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/ruff format --check --quiet src tests benchmarks scripts
# PostgreSQL, Redis and Chromium for the store, queue and dashboard tests (KSHOT_SKIP_SERVICES=1: skip those tests).
if [ "${KSHOT_SKIP_SERVICES:-}" != 1 ]; then scripts/services.sh; fi
exec .venv/bin/python -m pytest "$@"
