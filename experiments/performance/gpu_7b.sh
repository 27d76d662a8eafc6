#!/usr/bin/env bash
# The 7B QLoRA distillation check on one GPU (no download): run from the repository root with the
# project's venv and a CUDA build of torch. Extra flags go to gpu_7b.py (e.g. --mode cache on a
# 16 GB card, --dtype float16 on a T4, --dry-run for the tiny CPU check).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" experiments/performance/gpu_7b.py --out experiments/performance/gpu_7b.json "$@"
