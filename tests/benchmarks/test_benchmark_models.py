"""`task.models` entries resolved to models before any loads: base, a model directory, a run directory,
a sweep directory (jobs labelled by their swept overrides), `latest:<experiment>`, and the errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from sdpo_exp.errors import ConfigError
from sdpo_exp.evaluation.benchmarks.models import ModelEntry, resolve_models

LOGGER = "sdpo_exp.evaluation.benchmarks.models"


def _model_dir(path: Path) -> Path:
    """A directory that resolves as a model (its config.json); nothing here loads it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    return path


def _run(path: Path, experiment: str = "offline_demo", status: str = "completed", end: str | None = None,
         final: bool = True) -> Path:  # fmt: skip
    """A run directory as the runner leaves it: run.json, config.yaml and (optionally) final/."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps({"task": "offline", "status": status, "end_time": end}))
    (path / "config.yaml").write_text(yaml.safe_dump({"experiment_name": experiment, "seed": 0}))
    if final:
        _model_dir(path / "final")
    return path


def _sweep(root: Path, jobs: dict[str, tuple[str, bool]], swept: tuple[str, ...] = ("trainer.lr=1e-5,2e-5",)):
    """A multirun directory: multirun.yaml with the command's overrides; a job per entry of `jobs`
    (job -> (its value of trainer.lr, whether it has final/))."""
    root.mkdir(parents=True)
    task = ["experiment=offline_demo", "model=tiny_random", *swept]
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}, "seed": 0}))
    for job, (lr, final) in jobs.items():
        hydra = root / job / ".hydra"
        hydra.mkdir(parents=True)
        overrides = ["experiment=offline_demo", "model=tiny_random", f"trainer.lr={lr}"]
        (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        _run(root / job, final=final, end=f"2026-01-0{int(job) % 9 + 1}T00:00:00+00:00")
    return root


def test_base_is_the_model_group_itself(tmp_path):
    [entry] = resolve_models(["base"], "tiny_random", tmp_path)
    assert entry == ModelEntry("base (tiny_random)", None)


def test_no_models_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="task.models is empty"):
        resolve_models([], "tiny_random", tmp_path)


def test_a_model_directory_is_used_as_it_is(tmp_path):
    model = _model_dir(tmp_path / "checkpoints" / "my-model")
    [entry] = resolve_models([str(model)], "tiny_random", tmp_path)
    assert entry == ModelEntry("my-model", model, None, None)


def test_a_run_directory_means_its_final_model(tmp_path):
    run = _run(tmp_path / "outputs" / "2026-01-01" / "12-00-00")
    [by_run] = resolve_models([str(run)], "tiny_random", tmp_path)
    assert by_run == ModelEntry("12-00-00", run / "final", run, None)
    # naming the final/ folder itself: the same model, labelled and summarised as that run
    [by_final] = resolve_models([str(run / "final")], "tiny_random", tmp_path)
    assert by_final == ModelEntry("12-00-00", run / "final", run, None)


def test_the_resolved_run_directory_loads_as_the_saved_model(tmp_path, compose, tiny_model, tiny_tokenizer):
    """A real final/ (save_pretrained of tiny_random and its tokenizer) loads through the model group
    pointed at the resolved path, with the saved weights."""
    import torch

    from sdpo_exp.evaluation.benchmarks.suite import model_config
    from sdpo_exp.models import load_model, load_tokenizer

    run = _run(tmp_path / "run", final=False)
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.add_(0.125)  # not what tiny_random builds: the weights must come from the directory
    tiny_model.save_pretrained(run / "final")
    tiny_tokenizer.save_pretrained(run / "final")
    [entry] = resolve_models([str(run)], "tiny_random", tmp_path)
    cfg = compose("task=benchmark", "model=tiny_random")
    model_cfg = model_config(cfg, entry.path)
    loaded = load_model(model_cfg, cfg.paths.cache_dir, load_tokenizer(model_cfg, cfg.paths.cache_dir))
    saved = dict(tiny_model.named_parameters())
    for name, param in loaded.named_parameters():
        assert torch.equal(param, saved[name]), name


def test_a_sweep_directory_gives_each_job_with_a_final_model_labelled_by_the_swept_values(tmp_path, caplog):
    sweep = _sweep(tmp_path / "lr_sweep", {"0": ("1.0e-05", True), "1": ("2.0e-05", False),
                                            "2": ("2.0e-05", True), "10": ("3.0e-05", True)})  # fmt: skip
    caplog.set_level(logging.WARNING, logger=LOGGER)
    entries = resolve_models(["base", str(sweep)], "tiny_random", tmp_path)
    # job order is numeric (10 after 2); job 1 has no final/ and is left out
    assert entries[1:] == [
        ModelEntry("lr_sweep/0 (trainer.lr=1.0e-05)", sweep / "0" / "final", sweep / "0", sweep),
        ModelEntry("lr_sweep/2 (trainer.lr=2.0e-05)", sweep / "2" / "final", sweep / "2", sweep),
        ModelEntry("lr_sweep/10 (trainer.lr=3.0e-05)", sweep / "10" / "final", sweep / "10", sweep),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 have no final/" in warnings[0] and str(sweep) in warnings[0]


def test_only_the_swept_overrides_label_a_sweep_job(tmp_path):
    """Overrides every job shares (experiment, model) stay out of the label; each swept one is shown."""
    sweep = _sweep(tmp_path / "s", {"0": ("1e-5", True)}, swept=("trainer.lr=1e-5,2e-5", "seed=1,2"))
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["experiment=offline_demo", "model=tiny_random", "trainer.lr=1e-5", "seed=2"])
    )
    [entry] = resolve_models([str(sweep)], "tiny_random", tmp_path)
    assert entry.label == "s/0 (trainer.lr=1e-5 seed=2)"


def test_a_list_valued_override_is_not_a_swept_one(tmp_path):
    """`'dataset.tags=[a,b]'` is one value for every job, not a sweep (Hydra's parser says so); it
    must not be shown in the label as if it were swept."""
    sweep = _sweep(
        tmp_path / "s", {"0": ("1e-5", True)}, swept=("trainer.lr=1e-5,2e-5", "dataset.tags=[a,b]")
    )
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["experiment=offline_demo", "trainer.lr=1e-5", "dataset.tags=[a,b]"])
    )
    [entry] = resolve_models([str(sweep)], "tiny_random", tmp_path)
    assert entry.label == "s/0 (trainer.lr=1e-5)"


def test_a_sweep_without_any_final_model_is_refused(tmp_path):
    sweep = _sweep(tmp_path / "s", {"0": ("1e-5", False), "1": ("2e-5", False)})
    with pytest.raises(ConfigError, match="no job with a final/ model") as info:
        resolve_models([str(sweep)], "tiny_random", tmp_path)
    assert str(sweep) in str(info.value)


def test_a_sweep_directory_without_multirun_yaml_is_still_a_sweep(tmp_path):
    """The Optuna sweeper writes no multirun.yaml: the jobs' .hydra folders make it a sweep; with
    nothing known to be swept the labels are the job names."""
    sweep = _sweep(tmp_path / "search", {"0": ("1e-5", True), "1": ("2e-5", True)})
    (sweep / "multirun.yaml").unlink()
    assert [e.label for e in resolve_models([str(sweep)], "tiny_random", tmp_path)] == [
        "search/0",
        "search/1",
    ]


def test_latest_picks_the_newest_completed_run_of_the_experiment_with_a_final_model(tmp_path):
    root = tmp_path / "outputs"
    _run(root / "a" / "old", end="2026-01-01T10:00:00+00:00")
    newest = _run(root / "b" / "newest", end="2026-03-01T09:00:00+00:00")
    _run(root / "a" / "mid", end="2026-02-01T10:00:00+00:00")
    _run(root / "c" / "failed", status="failed", end="2026-04-01T00:00:00+00:00")  # newer, not completed
    _run(root / "c" / "no_final", end="2026-05-01T00:00:00+00:00", final=False)  # newer, no model
    _run(root / "c" / "other", experiment="demo", end="2026-06-01T00:00:00+00:00")  # another experiment
    _run(root / "c" / "running", status="running", end=None)  # still running: no end time
    (root / "c" / "broken").mkdir()
    (root / "c" / "broken" / "run.json").write_text("{not json")  # unreadable: skipped
    [entry] = resolve_models(["latest:offline_demo"], "tiny_random", root)
    assert entry == ModelEntry("offline_demo (newest)", newest / "final", newest)


def test_latest_of_sweep_jobs_finds_them_too(tmp_path):
    sweep = _sweep(tmp_path / "multirun" / "s", {"0": ("1e-5", True), "1": ("2e-5", True)})
    [entry] = resolve_models(["latest:offline_demo"], "tiny_random", tmp_path)
    assert entry.path == sweep / "1" / "final"  # job 1 ended on 2026-01-02, job 0 on 2026-01-01


def test_latest_refuses_when_no_completed_run_has_a_final_model(tmp_path):
    _run(tmp_path / "failed", status="failed", end="2026-01-01T00:00:00+00:00")
    _run(tmp_path / "no_final", end="2026-01-01T00:00:00+00:00", final=False)
    _run(tmp_path / "other", experiment="demo", end="2026-01-01T00:00:00+00:00")
    with pytest.raises(ConfigError, match="no completed run of experiment offline_demo") as info:
        resolve_models(["latest:offline_demo"], "tiny_random", tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ConfigError, match="no completed run of experiment offline_demo"):
        resolve_models(["latest:offline_demo"], "tiny_random", tmp_path / "does_not_exist")


def test_a_missing_path_is_refused_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "final"
    with pytest.raises(ConfigError, match="does not exist") as info:
        resolve_models(["base", str(missing)], "tiny_random", tmp_path)
    assert str(missing) in str(info.value)


def test_a_directory_that_is_no_model_run_or_sweep_is_refused(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match="neither a model directory") as info:
        resolve_models([str(tmp_path / "empty")], "tiny_random", tmp_path)
    assert str(tmp_path / "empty") in str(info.value)


def test_duplicate_labels_are_told_apart(tmp_path):
    a = _model_dir(tmp_path / "x" / "model")
    b = _model_dir(tmp_path / "y" / "model")
    c = _model_dir(tmp_path / "z" / "unique")
    entries = resolve_models([str(a), str(c), str(b), "base", "base"], "tiny_random", tmp_path)
    assert [e.label for e in entries] == ["model [0]", "unique", "model [2]", "base (tiny_random) [3]",
                                          "base (tiny_random) [4]"]  # fmt: skip
    assert [e.path for e in entries] == [a, c, b, None, None]
    assert len({e.label for e in entries}) == len(entries)
