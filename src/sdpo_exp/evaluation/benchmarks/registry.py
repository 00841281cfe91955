"""The benchmarks `task=benchmark` knows: what each measures, where its data come from, which files a
local copy needs, how it is scored (the harness's own task, or the project's pairwise judge) and how
its number compares with the paper's (Section 4.1: Figure 3, Tables 2, 3, 4 and 6)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sdpo_exp.errors import ConfigError

HARNESS, JUDGED = "harness", "judged"


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # HARNESS (lm-eval's task and scoring) or JUDGED (pairwise win rate against a reference)
    title: str  # as the paper's tables name it
    metric: str  # the headline metric (the paper's)
    metrics: tuple[str, ...]  # every metric reported
    # Split -> file stem: a local copy is <data_dir>/<folder>/<stem>.{jsonl,json,parquet}.
    files: dict[str, str]
    hub_id: str  # the dataset's repository on the Hugging Face hub
    paper: str  # the paper's protocol, and what makes a score here comparable to it
    cost: str  # what one evaluation costs, roughly
    # HARNESS: the lm-eval task (or group) name and the task YAML files (relative to lm_eval/tasks/)
    # whose data source is replaced by the local files.
    lm_eval_task: str | None = None
    lm_eval_yamls: tuple[str, ...] = ()
    # JUDGED: the categories of the question file kept (empty: all).
    categories: tuple[str, ...] = ()
    folder: str = ""  # the folder of the local copy under data_dir; empty: the benchmark's name
    hub_config: str | None = None  # HARNESS: the dataset's config on the hub
    hub_file: str | None = None  # JUDGED: the file in the hub repository

    @property
    def hub(self) -> str:
        """Where the data live, in words."""
        if self.hub_file:
            return f"{self.hub_id} (file {self.hub_file})"
        return self.hub_id + (f" (config {self.hub_config})" if self.hub_config else "")

    @property
    def data_folder(self) -> str:
        return self.folder or self.name


_MMLU_PRO_SUBJECTS = ("biology", "business", "chemistry", "computer_science", "economics", "engineering",
                      "health", "history", "law", "math", "other", "philosophy", "physics", "psychology")  # fmt: skip

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            name="ifeval",
            kind=HARNESS,
            title="IFEval",
            metric="prompt_level_loose_acc",
            metrics=(
                "prompt_level_loose_acc",
                "prompt_level_strict_acc",
                "inst_level_loose_acc",
                "inst_level_strict_acc",
            ),  # fmt: skip
            files={"train": "train"},
            hub_id="google/IFEval",
            paper="prompt-level loose accuracy, 541 prompts, greedy (Table 2)",
            cost="541 greedy generations of up to 1,280 tokens",
            lm_eval_task="ifeval",
            lm_eval_yamls=("ifeval/ifeval.yaml",),
        ),
        Benchmark(
            name="mmlu_pro",
            kind=HARNESS,
            title="MMLU-Pro",
            metric="exact_match",
            metrics=("exact_match",),
            files={"test": "test", "validation": "validation"},
            hub_id="TIGER-Lab/MMLU-Pro",
            paper="chain-of-thought, 5-shot, exact match of the extracted letter, 12,032 questions (Table 2)",
            cost="12,032 greedy generations of up to 2,048 tokens after a 5-shot CoT prompt: the dearest",
            lm_eval_task="mmlu_pro",
            lm_eval_yamls=tuple(f"mmlu_pro/mmlu_pro_{s}.yaml" for s in _MMLU_PRO_SUBJECTS),
        ),
        Benchmark(
            name="hellaswag",
            kind=HARNESS,
            title="HellaSwag",
            metric="acc_norm",
            metrics=("acc_norm", "acc"),
            files={"validation": "validation"},
            hub_id="Rowan/hellaswag",
            paper="length-normalised accuracy, 0-shot, 10,042 items (Table 6)",
            cost="4 log-likelihoods per item, 40,168 in all; no generation",
            lm_eval_task="hellaswag",
            lm_eval_yamls=("hellaswag/hellaswag.yaml",),
        ),
        Benchmark(
            name="truthfulqa_mc1",
            kind=HARNESS,
            title="TruthfulQA (MC1)",
            metric="acc",
            metrics=("acc",),
            files={"validation": "validation"},
            hub_id="truthfulqa/truthful_qa",
            hub_config="multiple_choice",
            paper="accuracy of the single true answer among the choices, 0-shot after the harness's QA preamble, "
            "817 questions (Table 6)",
            cost="about 5 log-likelihoods per question, 4,114 in all; no generation",
            lm_eval_task="truthfulqa_mc1",
            lm_eval_yamls=("truthfulqa/truthfulqa_mc1.yaml",),
            folder="truthfulqa",
        ),
        Benchmark(
            name="truthfulqa_mc2",
            kind=HARNESS,
            title="TruthfulQA (MC2)",
            metric="acc",
            metrics=("acc",),
            files={"validation": "validation"},
            hub_id="truthfulqa/truthful_qa",
            hub_config="multiple_choice",
            paper="probability mass on the true answers, 0-shot after the harness's QA preamble, 817 questions "
            "(the paper's Table 6 reports MC1)",
            cost="about 7 log-likelihoods per question, 5,882 in all; no generation",
            lm_eval_task="truthfulqa_mc2",
            lm_eval_yamls=("truthfulqa/truthfulqa_mc2.yaml",),
            folder="truthfulqa",
        ),
        Benchmark(
            name="commonsense_qa",
            kind=HARNESS,
            title="CommonsenseQA",
            metric="acc",
            metrics=("acc",),
            files={"validation": "validation"},
            hub_id="tau/commonsense_qa",
            paper="accuracy over the five answer letters, 0-shot, 1,221 validation questions (Table 6)",
            cost="5 log-likelihoods per question, 6,105 in all; no generation",
            lm_eval_task="commonsense_qa",
            lm_eval_yamls=("commonsense_qa/default.yaml",),
        ),
        Benchmark(
            name="alpaca_eval",
            kind=JUDGED,
            title="AlpacaEval 2.0",
            metric="win_rate",
            metrics=("win_rate",),
            files={"eval": "alpaca_eval"},
            hub_id="tatsu-lab/alpaca_eval",
            hub_file="alpaca_eval.json",
            paper="length-controlled win rate against GPT-4 Turbo's answers, judged by GPT-4 Turbo, 805 "
            "instructions (Table 2); here a win rate against the reference answers with the chosen judge",
            cost="805 answers, then 1,610 judge calls (both orders)",
        ),
        Benchmark(
            name="arena_hard",
            kind=JUDGED,
            title="ArenaHard-v2 (hard prompts)",
            metric="win_rate",
            metrics=("win_rate",),
            files={"eval": "question"},
            hub_id="lmarena-ai/arena-hard-auto",
            hub_file="data/arena-hard-v2.0/question.jsonl",
            paper="win rate against the official baseline's answers, judged by GPT-4.1 / Gemini-2.5, "
            "500 hard prompts (Table 2)",
            cost="500 answers, then 1,000 judge calls (both orders)",
            categories=("hard_prompt",),
            folder="arena_hard",
        ),
        Benchmark(
            name="arena_hard_creative",
            kind=JUDGED,
            title="ArenaHard-v2 (creative writing)",
            metric="win_rate",
            metrics=("win_rate",),
            files={"eval": "question"},
            hub_id="lmarena-ai/arena-hard-auto",
            hub_file="data/arena-hard-v2.0/question.jsonl",
            paper="win rate against the official baseline's answers, 250 creative-writing prompts (Table 2)",
            cost="250 answers, then 500 judge calls (both orders)",
            categories=("creative_writing",),
            folder="arena_hard",
        ),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called `name`; ConfigError naming the known ones (and the closest) otherwise."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    close = difflib.get_close_matches(name, list(BENCHMARKS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown benchmark '{name}'{hint}; known: {', '.join(BENCHMARKS)}")
