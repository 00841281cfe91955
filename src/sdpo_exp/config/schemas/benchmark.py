"""Schema of the `benchmark` group (which benchmarks, read from where, how) and of `task=benchmark`
(which models): the paper's benchmark table (Section 4.1) from the framework itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.task import TaskConfig


class BenchmarkBackend(Enum):
    hf = "hf"  # transformers (CPU or one GPU)
    vllm = "vllm"  # vLLM (a GPU and the vllm extra): the harness's vllm model, vLLM generation for answers


@dataclass
class JudgedSettings:
    """The judged benchmarks (AlpacaEval- and ArenaHard-style): answers judged pairwise by `judge`."""

    # What each model's answers are compared with: `first` (the answers of the first model in
    # task.models, usually the base model), `file` (the reference answers in the benchmark's file, as
    # AlpacaEval ships them), or a model directory / run directory.
    reference: str = "first"
    max_new_tokens: int = 1024  # answers are greedy, up to this many tokens
    bootstrap_samples: int = 1000


@dataclass
class BenchmarkSuiteConfig:
    name: str = MISSING
    # Names from sdpo_exp.evaluation.benchmarks.registry: ifeval, mmlu_pro, hellaswag, truthfulqa_mc2,
    # commonsense_qa (through lm-eval), alpaca_eval, arena_hard, arena_hard_creative (judged).
    benchmarks: list[str] = MISSING
    # Local copies: <data_dir>/<benchmark>/<split>.{jsonl,json,parquet} (python -m
    # sdpo_exp.evaluation.benchmarks.download writes them); null: read the Hugging Face hub.
    data_dir: str | None = None
    # The first N items of each benchmark (of each MMLU-Pro subject); null: all. The report marks
    # scores on a subset.
    limit: int | None = None
    backend: BenchmarkBackend = BenchmarkBackend.hf
    batch_size: int = 8
    # Caps the generation length of the harness's generative tasks (IFEval 1,280, MMLU-Pro 2,048);
    # null: the harness's own (the paper's protocol).
    max_gen_toks: int | None = None
    # The model's chat template around every prompt (the paper's instruct models need it).
    apply_chat_template: bool = True
    fewshot_as_multiturn: bool = True
    judged: JudgedSettings = field(default_factory=JudgedSettings)


@schema("task", "benchmark")
@dataclass
class BenchmarkTaskConfig(TaskConfig):
    name: str = "benchmark"
    # The models, in table order; the first is the one the differences are taken against. Each is
    # `base` (the `model` group), a Hugging Face model directory, a run directory (its final/), a
    # sweep directory (each job's final/), or `latest:<experiment_name>` (the newest completed run of
    # that experiment under paths.output_root).
    models: list[str] = field(default_factory=lambda: ["base"])
    # The metric a benchmarked sweep's jobs are ranked by in its sweep_summary.md; null: the first
    # benchmark's headline metric (benchmark/<name>).
    rank_by: str | None = None
