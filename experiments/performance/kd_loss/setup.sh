#!/usr/bin/env bash
# The peers' environment for run.py: its own venv, so TRL, torchtune and Liger never touch .venv.
# torch==2.13.0 is pinned first (on this kind of machine a CPU build that lies on disk; a bare `torch`
# would pull a CUDA build of several GB). Liger is installed without its deps: its chunked losses are
# plain PyTorch, and its declared `triton` is only for the GPU kernels.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${VENV_PEERS:-$root/experiments/performance/.venv-peers}"
test -x "$venv/bin/python" || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" "trl==1.16.0" "torchtune==0.6.1" "torchao==0.14.1" psutil "torch==2.13.0"
"${pip[@]}" --no-deps "liger-kernel==0.8.5"
# Our package, without its deps: run.py needs only distill.losses.chunked (plain torch).
"${pip[@]}" --no-deps -e "$root"
"$venv/bin/python" -c "import torch, trl, torchtune, liger_kernel; print('peers ok: torch', torch.__version__, 'trl', trl.__version__, 'torchtune', torchtune.__version__)"
