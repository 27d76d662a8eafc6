#!/usr/bin/env bash
# The peer environment for run.py's TRL arms: the shared peer venv of experiments/performance
# (kd_loss/setup.sh makes it with trl==1.16.0 and torch==2.13.0 CPU), plus PEFT and bitsandbytes
# at the versions of our own .venv, so both sides quantise and wrap the student with the same code.
# torch is pinned again so pip never swaps the CPU build for a CUDA one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${VENV_PEERS:-$root/experiments/performance/.venv-peers}"
test -x "$venv/bin/python" || bash "$root/experiments/performance/kd_loss/setup.sh"
"$venv/bin/python" -m pip install -q "torch==2.13.0" "trl==1.16.0" "peft==0.21.2" \
    "bitsandbytes==0.50.2" psutil
"$venv/bin/python" -c "import torch, trl, peft, bitsandbytes; print('peers ok: torch', \
torch.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'bnb', bitsandbytes.__version__)"
