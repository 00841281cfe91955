"""Two processes (gloo on CPU, through accelerate and the project's launcher) on a global batch give
the same update as one process on the same batch, and write one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from offline_support import (
    REPO,
    fast_overrides,
    final_weights,
    interaction_file,
    metrics_rows,
    run_in_process,
)

from sdpo_exp.models import load_model


def _initial_weights(compose, cache_dir):
    from sdpo_exp.models import load_tokenizer
    from sdpo_exp.seeding import seed_everything

    cfg = compose("model=tiny_random")
    seed_everything(cfg.seed)  # what the runner does before the model is built
    tokenizer = load_tokenizer(cfg.model, cache_dir)
    return {k: v.clone() for k, v in load_model(cfg.model, cache_dir, tokenizer).state_dict().items()}


def test_two_processes_match_one_on_the_same_global_batch(compose, cache_dir, tmp_path):
    # 6 examples, global batch 4: a full step, then a short one (2 examples, an empty slot on one side)
    data = interaction_file(tmp_path / "six.jsonl", 6)
    common = [
        *fast_overrides(data, None, max_steps=2, global_batch_size=4, lr=1e-2, adam_eps=1.0, eval_every=0),
        "task.eval_at_start=false",
        "task.eval_at_end=false",
    ]
    one = tmp_path / "one"
    run_in_process(compose, one, common)

    outputs = tmp_path / "outputs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sdpo_exp.training.launch", "--config", "launchers/accelerate/cpu.yaml",
           "--num-processes", "2", "--", *common, f"paths.output_root={outputs}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dirs = [p.parent for p in outputs.rglob("run.json")]
    assert len(run_dirs) == 1, run_dirs  # both processes wrote to one directory
    two = run_dirs[0]
    assert json.loads((two / "summary.json").read_text())["num_processes"] == 2
    assert "2 processes" in (two / "run.log").read_text()

    start = _initial_weights(compose, cache_dir)
    w1, w2 = final_weights(one), final_weights(two)
    biggest = max((w1[k] - start[k]).abs().max().item() for k in w1)
    assert biggest > 1e-4  # the weights moved
    # float32 rounding of w + delta leaves differences of a few ulps of the weights (~1e-9 here);
    # a wrong weighting of micro-batches or processes would differ by the size of the update itself
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert worst < 1e-3 * biggest, (worst, biggest)

    rows1 = [r for r in metrics_rows(one) if "train/loss" in r]
    rows2 = [r for r in metrics_rows(two) if "train/loss" in r]
    assert [r["train/samples_seen"] for r in rows2] == [4, 6]
    for a, b in zip(rows1, rows2, strict=True):
        for key in ("train/loss", "train/grad_norm", "train/adv_abs_mean", "train/num_tokens"):
            assert abs(a[key] - b[key]) <= 1e-5 * max(1.0, abs(a[key])), (key, a[key], b[key])
