#!/usr/bin/env bash
# Install kshot into ./.venv on a fresh machine: Python venv, PyTorch CPU 2.13.0 where no torch is
# present (a bare `torch` requirement would pull a multi-GB CUDA build), then kshot and its deps.
# Usage: scripts/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
extra=""
if [ "${1:-}" = "--dev" ]; then extra="[dev]"; fi
.venv/bin/python -m pip install --quiet -e ".${extra}"
