"""A sweep judged by a benchmark, end to end in real processes: a multirun of the offline task on
tiny_random (learning rates 0 and 1, one step each, final models saved), then `task=benchmark` on
HellaSwag over the base model and the sweep directory. Each job gets its scores beside its weights,
the sweep's summary is ranked by the benchmark, and the lr=0 job (weights unchanged: a control)
scores exactly as the base model does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from test_experiments import FAST_OVERRIDES

from conftest import REPO

ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
METRIC = "benchmark/hellaswag"
BASE = "base (tiny_random)"


def _table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the sweep summary's table."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines[1:]]
    return header, rows


def _recomputed_acc_norm(samples: Path) -> tuple[float, dict[int, list[float]]]:
    """HellaSwag's acc_norm from the harness's logged log-likelihoods (numpy): the choice with the
    highest log-likelihood per character is right; and each item's log-likelihoods."""
    right, lls = [], {}
    for line in samples.read_text().splitlines():
        row = json.loads(line)
        ll = np.array([r[0] for r in row["filtered_resps"]], dtype=float)
        lengths = np.array([len(c) for c in row["doc"]["choices"]], dtype=float)
        right.append(float(np.argmax(ll / lengths) == int(row["target"])))
        lls[int(row["doc_id"])] = ll.tolist()
    return float(np.mean(right)), lls


def test_a_benchmarked_sweep_ranks_its_jobs_and_its_lr_zero_job_scores_as_the_base_model(tmp_path, run_cli):
    sweep, out = tmp_path / "lr_sweep", tmp_path / "bench"
    train = run_cli(["-m", "experiment=offline_demo", *FAST_OVERRIDES["offline_demo"], "trainer.save_final=true",
                     "trainer.lr=0,1", f"hydra.sweep.dir={sweep}"], env=ENV, timeout=600)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    lrs = {}
    for job in ("0", "1"):
        assert (sweep / job / "final" / "config.json").is_file(), job  # trainer.save_final=true
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        [lr] = [o.split("=", 1)[1] for o in overrides if o.startswith("trainer.lr=")]
        lrs[job] = lr
    assert {job: float(lr) for job, lr in lrs.items()} == {"0": 0.0, "1": 1.0}
    # lr=1 moved the weights, lr=0 did not move them: the control is a control
    from safetensors.torch import load_file

    w0, w1 = (load_file(sweep / job / "final" / "model.safetensors") for job in ("0", "1"))
    assert any(not np.array_equal(w0[k].numpy(), w1[k].numpy()) for k in w0)

    bench = run_cli(["task=benchmark", "benchmark=demo_suite", "benchmark.benchmarks=[hellaswag]", "model=tiny_random",
                     f"task.models=[base,{sweep}]", f"hydra.run.dir={out}"], env=ENV, timeout=600)  # fmt: skip
    assert bench.returncode == 0, bench.stderr[-3000:]

    # benchmarks.json: base and both jobs, labelled with the swept learning rate
    result = json.loads((out / "benchmarks.json").read_text())
    labels = [m["label"] for m in result["models"]]
    job_label = {job: f"lr_sweep/{job} (trainer.lr={lrs[job]})" for job in ("0", "1")}
    assert labels == [BASE, job_label["0"], job_label["1"]]
    assert [m["path"] for m in result["models"]] == [
        "",
        str(sweep / "0" / "final"),
        str(sweep / "1" / "final"),
    ]
    cells = {(c["model"], c["metric"]): c for c in result["cells"] if c["benchmark"] == "hellaswag"}

    # every model's score is the one its logged items give (recomputed here from the log-likelihoods)
    lls = {}
    for k, label in enumerate(labels):
        [samples] = (out / "models").glob(f"{k}_*/samples/hellaswag.jsonl")
        value, lls[label] = _recomputed_acc_norm(samples)
        assert cells[(label, "acc_norm")]["value"] == value, label
        assert cells[(label, "acc_norm")]["n"] == len(lls[label]) == 20

    # each job's benchmark_summary.json has its own cell
    scores = {}
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "benchmark_summary.json").read_text())
        cell = cells[(job_label[job], "acc_norm")]
        assert summary[METRIC] == summary[f"{METRIC}/acc_norm"] == cell["value"]
        assert summary[f"{METRIC}/acc"] == cells[(job_label[job], "acc")]["value"]
        assert summary["diff/hellaswag"] == cell["diff"]
        # paired over the same 20 items: the mean difference is the difference of the two scores
        assert cell["diff"] == pytest.approx(cell["value"] - cells[(BASE, "acc_norm")]["value"], abs=1e-12)
        scores[job] = summary[METRIC]

    # the lr=0 job is the base model: the same log-likelihoods, the same score, a difference of 0 ± 0
    control = job_label["0"]
    assert lls[control] == lls[BASE]
    for metric in ("acc_norm", "acc"):
        assert cells[(control, metric)]["value"] == cells[(BASE, metric)]["value"]
        assert (cells[(control, metric)]["diff"], cells[(control, metric)]["diff_se"]) == (0.0, 0.0)
    assert json.loads((sweep / "0" / "benchmark_summary.json").read_text())["diff/hellaswag"] == 0.0

    # the sweep's summary is ranked by the benchmark, best first (ties in job order)
    best_first = sorted(scores, key=lambda job: (-scores[job], int(job)))
    markdown = (sweep / "sweep_summary.md").read_text()
    assert f"Sorted by `{METRIC}` (higher is better)" in markdown
    header, rows = _table(markdown)
    assert header[:3] == ["job", "trainer.lr", METRIC]
    assert [r[0] for r in rows] == best_first
    for row in rows:
        assert float(row[2]) == round(scores[row[0]], 4) and row[3] == "completed"
        assert float(row[1]) == float(lrs[row[0]])

    # the command line prints the same ranking
    cli = subprocess.run([sys.executable, "-m", "sdpo_exp.sweeps", str(sweep), "--metric", METRIC], cwd=REPO,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert f"Sorted by `{METRIC}` (higher is better)" in cli.stdout
    assert [r[0] for r in _table(cli.stdout)[1]] == best_first
    assert _table(cli.stdout) == (header, rows)
