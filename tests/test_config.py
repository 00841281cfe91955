"""The config tree composes, every group is typed, and mistakes give one readable line."""

from __future__ import annotations

import dataclasses
import time

import pytest
from omegaconf import OmegaConf

from sdpo_exp.config.check import group_options
from sdpo_exp.errors import ConfigError

GROUPS = [
    "task",
    "model",
    "dataset",
    "user_profile",
    "simulator",
    "judge",
    "loss",
    "trainer",
    "generation",
    "logger",
]


def test_default_config_composes(compose):
    cfg = compose()
    for group in GROUPS:
        assert group in cfg, group
    assert cfg.seed == 1234


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_to_a_typed_node(compose, conf_dir, group):
    options = group_options(conf_dir, group)
    assert options, f"group {group} has no options"
    for option in options:
        cfg = compose(f"{group}={option}")
        node_type = OmegaConf.get_type(cfg, group)
        assert node_type is not None and dataclasses.is_dataclass(node_type), (group, option, node_type)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.lrr=1", "unknown key 'trainer.lrr' (did you mean 'trainer.lr'?)"),
        ("task=nonexistent", "unknown task 'nonexistent'"),
        ("model=qwen3_9b", "did you mean 'qwen3_8b'?"),
        ("trainer.lr=abc", "invalid value for 'trainer.lr'"),
        ("model.dtype=float8", "expected one of [auto, float32, bfloat16, float16]"),
        ("loss=pg", None),
        # values the types accept but the run cannot use: caught before anything loads
        ("loss=jsd loss.alpha=3", "loss.alpha=3.0 is out of range: it must be in [0, 1]"),
        ("loss.chunk_size=0", "loss.chunk_size=0 is out of range: it must be an integer >= 1"),
        ("trainer.lr=-1e-5", "trainer.lr=-1e-05 is out of range: it must be a number >= 0"),
        ("trainer.lr=0", None),  # the simplest control: everything runs, nothing changes
        ("trainer.warmup_ratio=2", "trainer.warmup_ratio=2.0 is out of range: it must be in [0, 1]"),
        ("trainer.max_steps=0", "trainer.max_steps=0 is out of range"),
        ("trainer.max_steps=-1", None),  # -1: no limit, as in transformers and TRL
        ("+trainer.lrr=1", "unknown key 'trainer.lrr' (added with '+'?)"),
        ("trainer.global_batch_size=6 trainer.per_device_batch_size=4", "is not a multiple of"),
        ("generation.top_p=0", "generation.top_p=0.0 is out of range: it must be in (0, 1]"),
        ("generation.temperature=0", "generation.temperature=0.0 must be > 0 when generation.do_sample=true"),
        ("loss=topk loss.k=0", "loss.k=0 is out of range"),
        ("loss.teacher.ema_rate=0", "loss.teacher.ema_rate=0.0 is out of range: it must be in (0, 1]"),
        ("task=online task.num_interactions=0", "task.num_interactions=0 is out of range"),
        ("task=online task.schedule=flip task.flip_after=900", "task.flip_after=900 must lie between 0 and"),
        ("task=online task.eval.num_eval_prompts=0", "task.eval.num_eval_prompts=0 is out of range"),
        (
            "simulator=claude_haiku simulator.max_failure_rate=2",
            "simulator.max_failure_rate=2.0 is out of range",
        ),
    ],
)
def test_bad_overrides_raise_config_error(conf_dir, override, expected):
    from sdpo_exp.config.check import check_overrides

    if expected is None:
        check_overrides(conf_dir, override.split())
        return
    with pytest.raises(ConfigError) as err:
        check_overrides(conf_dir, override.split())
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_sweep_values_are_each_checked(conf_dir):
    from sdpo_exp.config.check import check_overrides

    check_overrides(conf_dir, ["trainer.lr=1e-6,2e-6", "model=tiny_random,smollm2_135m"])
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        check_overrides(conf_dir, ["model=tiny_random,nope"])
    with pytest.raises(ConfigError, match="trainer.lr=-2.0 is out of range"):
        check_overrides(conf_dir, ["trainer.lr=1e-6,-2"])  # the second value of a sweep


def test_a_value_out_of_range_exits_2_before_loading_anything(run_cli, tmp_path):
    proc = run_cli(["loss=jsd", "loss.alpha=3", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "error: loss.alpha=3.0 is out of range: it must be in [0, 1] (0: forward KL, 1: reverse KL)"
    )
    assert not (tmp_path / "run.json").exists()  # nothing started


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["task=nonexistent"], "valid choices:"),
        (["trainer.lrr=1"], "valid keys in 'trainer':"),
        (["experiment=does_not_exist"], "unknown experiment 'does_not_exist'"),
    ],
)
def test_cli_reports_one_line_and_exits_nonzero(run_cli, args, needle):
    proc = run_cli(args)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_help_lists_groups_and_options(run_cli):
    proc = run_cli(["--help"])
    assert proc.returncode == 0
    for group in GROUPS + ["experiment", "hydra/launcher"]:
        assert f"  {group} " in proc.stdout
    assert "smollm2_135m*" in proc.stdout
    assert "tiny_random" in proc.stdout


def test_print_config_is_fast_and_loads_nothing_heavy(run_cli):
    start = time.perf_counter()
    proc = run_cli(["model=qwen3_8b", "--cfg", "job"])
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "path: Qwen/Qwen3-8B" in proc.stdout
    assert elapsed < 10


def test_run_py_does_not_import_torch_to_compose():
    import subprocess
    import sys

    code = (
        "import sys, runpy; sys.argv=['run.py','--cfg','job']; "
        "import run; run.register_configs(); "
        "from sdpo_exp.config.check import compose_config; compose_config(run.CONF_DIR); "
        "print('torch' in sys.modules)"
    )
    from conftest import REPO

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_online_task_without_prompt_files_says_what_to_do(run_cli, tmp_path):
    proc = run_cli(["task=online", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 1
    assert "dataset.train_path is not set for dataset 'interactions'" in proc.stdout + proc.stderr
    assert "dataset=online_demo" in proc.stdout + proc.stderr


def test_a_misspelt_optimized_metric_fails_before_training(run_cli, tmp_path):
    proc = run_cli(["task=offline", "optimized_metric=eval/adv_abs_men", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 2
    assert "optimized_metric='eval/adv_abs_men' is not a metric that task=offline returns" in proc.stderr
    assert "(did you mean 'eval/adv_abs_mean'?)" in proc.stderr
    assert not (tmp_path / "run.json").exists()
    from sdpo_exp.tasks import check_optimized_metric

    check_optimized_metric("online", "final/no_emojis/vs_base/win_rate")
    check_optimized_metric("evaluate", "win_rate/outputs/run/no_emojis")
    with pytest.raises(ConfigError):
        check_optimized_metric("online", "final/no_emojis/win_rate")


def test_cfg_job_shows_only_the_groups_the_task_reads(run_cli, tmp_path):
    proc = run_cli(["experiment=offline_demo", "--cfg", "job"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, *rest = proc.stdout.splitlines()
    assert (
        first
        == "# task=offline does not read: user_profile, simulator, judge, generation, benchmark (left out)"
    )
    body = OmegaConf.create("\n".join(rest))
    assert "simulator" not in body and "judge" not in body and body.trainer.lr == 2e-5
    online = run_cli(["--cfg", "job"])  # the demo: an online run reads every group but the benchmarks
    assert online.stdout.startswith("# task=online does not read: benchmark (left out)")
    assert "simulator:" in online.stdout
    bench = run_cli(["experiment=benchmark_demo", "--cfg", "job"])
    first, *rest = bench.stdout.splitlines()
    assert first == "# task=benchmark does not read: dataset, simulator, loss, trainer, hindsight (left out)"
    body = OmegaConf.create("\n".join(rest))
    assert body.benchmark.name == "demo_suite" and list(body.task.models) == ["base", "latest:offline_demo"]


@pytest.mark.parametrize(
    "args",
    [[], ["seed=3"], ["hydra.run.dir=/tmp/any_dir"], ["model.lora.enabled=true", "seed=3"]],
)
def test_the_default_run_with_any_override_is_the_demo(run_cli, args):
    proc = run_cli([*args, "--cfg", "job"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.task.name == "online" and cfg.experiment_name == "demo"
    assert list(cfg.task.controls) == ["unrelated"] and cfg.task.oracle is True
    assert cfg.simulator.name == "rule_based" and cfg.dataset.name == "online_demo"
    assert cfg.seed == (3 if "seed=3" in args else 1234)


@pytest.mark.parametrize(
    ("args", "task"),
    [
        (["task=offline"], "offline"),
        (["experiment=offline_demo"], "offline"),
        (["task=signal", "seed=2"], "signal"),
    ],
)
def test_choosing_a_task_or_an_experiment_leaves_the_demo(run_cli, args, task):
    proc = run_cli([*args, "--cfg", "job"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("#"))
    cfg = OmegaConf.create(body)
    assert cfg.task.name == task and cfg.get("experiment_name") != "demo"


def test_task_controls_must_name_simulators(conf_dir):
    from sdpo_exp.config.check import check_overrides

    with pytest.raises(ConfigError, match="task.controls names 'unrelatd', which is not a simulator"):
        check_overrides(conf_dir, ["task=online", "task.controls=[unrelatd]"])
    with pytest.raises(ConfigError, match="lists a simulator twice"):
        check_overrides(conf_dir, ["task=online", "task.controls=[neutral,neutral]"])
    check_overrides(conf_dir, ["task=online", "task.controls=[unrelated,neutral]"])
