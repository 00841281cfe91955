"""task=benchmark's config: the suites compose, their values are checked at composition, metrics
can be optimised, the demo experiment reads the shipped demo files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpo_exp.config.values import check_values
from sdpo_exp.errors import ConfigError
from sdpo_exp.evaluation.benchmarks.files import check_data, is_demo_data
from sdpo_exp.evaluation.benchmarks.registry import BENCHMARKS, get_benchmark
from sdpo_exp.tasks import check_optimized_metric


@pytest.mark.parametrize("suite", ["paper_suite", "demo_suite"])
def test_suites_name_known_benchmarks(compose, suite):
    cfg = compose("task=benchmark", f"benchmark={suite}")
    benches = [get_benchmark(n) for n in cfg.benchmark.benchmarks]
    assert benches
    if suite == "demo_suite":  # every demo file is shipped, in the layout the local reader expects
        assert Path(cfg.benchmark.data_dir).is_dir() and is_demo_data(cfg.benchmark.data_dir)
        check_data(cfg.benchmark.data_dir, [*benches, get_benchmark("mmlu_pro"), get_benchmark("arena_hard")])
    else:
        assert not is_demo_data(cfg.benchmark.data_dir) and not is_demo_data("/tmp")
        assert (
            cfg.benchmark.data_dir is None
            and cfg.benchmark.max_gen_toks is None
            and cfg.benchmark.limit is None
        )


def test_the_paper_suite_is_the_papers_tables():
    from omegaconf import OmegaConf

    suite = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "benchmark" / "paper_suite.yaml")
    assert set(suite.benchmarks) == {"alpaca_eval", "ifeval", "arena_hard", "arena_hard_creative", "mmlu_pro",
                                     "truthfulqa_mc1", "hellaswag", "commonsense_qa"}  # fmt: skip
    assert BENCHMARKS["ifeval"].metric == "prompt_level_loose_acc"  # the paper reports prompt-level loose


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("benchmark.limit=0", "benchmark.limit=0 is out of range"),
        ("benchmark.batch_size=0", "benchmark.batch_size=0 is out of range"),
        ("benchmark.max_gen_toks=0", "benchmark.max_gen_toks=0 is out of range"),
        ("benchmark.judged.max_new_tokens=0", "benchmark.judged.max_new_tokens=0 is out of range"),
        ("benchmark.benchmarks=[]", "benchmark.benchmarks is empty"),
    ],
)
def test_values_out_of_range_fail_at_composition(compose, override, message):
    cfg = compose("task=benchmark", "benchmark=demo_suite", override)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        check_values(cfg)


def test_unknown_keys_fail_at_composition(compose):
    with pytest.raises(ConfigError, match="benchmark.limt"):
        compose("task=benchmark", "benchmark.limt=3")


def test_benchmark_metrics_can_be_optimised():
    check_optimized_metric("benchmark", "benchmark/ifeval")
    check_optimized_metric("benchmark", "benchmark/ifeval/prompt_level_strict_acc")
    check_optimized_metric("benchmark", "diff/hellaswag")
    with pytest.raises(ConfigError, match="not a metric that task=benchmark returns"):
        check_optimized_metric("benchmark", "win_rate/x")
