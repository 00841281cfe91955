"""Harness benchmarks through EleutherAI's lm-evaluation-harness (`lm-eval`): its own task definitions,
prompts, few-shot examples, filters and scoring, never a re-implementation.

With local files each task's YAML is included unchanged and only its data source is replaced
(`dataset_path: json|parquet` with `data_files`), in task files written to the run directory. The
per-item outputs the harness logs are kept, so that every score can be recomputed, and they give the
standard errors and the paired differences between models."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdpo_exp.errors import ConfigError
from sdpo_exp.evaluation.benchmarks.files import builder, local_files
from sdpo_exp.evaluation.benchmarks.registry import Benchmark

log = logging.getLogger(__name__)


def _import_lm_eval() -> Any:
    try:
        import lm_eval
        import lm_eval.tasks
    except ImportError as exc:
        raise ConfigError(
            f"harness benchmarks need the benchmark extra ({exc.name} is missing): pip install -e '.[benchmark]'"
        ) from exc
    return lm_eval


class _TaggedLoader(yaml.SafeLoader):
    """Reads lm-eval's task YAML (with its `!function` tags) as plain data."""


_TaggedLoader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix}")


def _read_yaml(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_TaggedLoader) or {}  # noqa: S506


def _effective(path: Path) -> dict[str, Any]:
    """A task YAML with the files it includes merged under it (the harness's own `include` rule)."""
    cfg = _read_yaml(path)
    includes = cfg.pop("include", None)
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes] if includes else []:
        merged.update(_effective((path.parent / str(inc)).resolve()))
    merged.update(cfg)
    return merged


_SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


def harness_tasks_root() -> Path:
    return Path(_import_lm_eval().tasks.__file__).parent


def write_local_tasks(benches: list[Benchmark], data_dir: str | Path, task_dir: Path) -> None:
    """Task YAMLs under `task_dir` that include the harness's own and read `data_dir`'s files."""
    root = harness_tasks_root()
    task_dir.mkdir(parents=True, exist_ok=True)
    for bench in benches:
        files = {split: str(path.resolve()) for split, path in local_files(data_dir, bench).items()}
        kind = builder(next(iter(local_files(data_dir, bench).values())))
        names = []
        for rel in bench.lm_eval_yamls:
            source = root / rel
            original = _effective(source)
            name = str(original["task"])
            names.append(name)
            task = {"include": str(source), "task": name, "dataset_path": kind, "dataset_name": None,
                    "dataset_kwargs": {"data_files": files}}  # fmt: skip
            # splits the harness names but the local copy leaves out (a train split that only 0-shot
            # evaluation never reads): not loaded
            task.update(
                {key: None for key in _SPLIT_KEYS if original.get(key) and original[key] not in files}
            )
            (task_dir / f"{name}.yaml").write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
        if bench.lm_eval_task not in names:  # a group: its definition, unchanged, beside its tasks
            folder = root / Path(bench.lm_eval_yamls[0]).parent
            for candidate in sorted(folder.glob("*yaml")):
                group = _read_yaml(candidate)
                if group.get("group") == bench.lm_eval_task:
                    (task_dir / f"{bench.lm_eval_task}.yaml").write_text(
                        yaml.safe_dump(group, sort_keys=False), encoding="utf-8"
                    )
                    break
            else:
                raise ConfigError(f"lm-eval has no group '{bench.lm_eval_task}' in {folder}")


def task_manager(task_dir: Path | None) -> Any:
    """lm-eval's task index: only the local task files (fast), or the harness's own (the hub)."""
    from lm_eval.tasks import TaskManager

    if task_dir is None:
        return TaskManager()
    return TaskManager(include_path=str(task_dir), include_defaults=False)


def hf_lm(model: Any, tokenizer: Any, batch_size: int, chat_template_kwargs: dict[str, Any]) -> Any:
    """The harness's `hf` model around a model already loaded (on CPU or one GPU)."""
    _import_lm_eval()
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                chat_template_args=dict(chat_template_kwargs) or None)  # fmt: skip


def vllm_lm(path: str, dtype: str, chat_template_kwargs: dict[str, Any], seed: int, **engine: Any) -> Any:
    """The harness's `vllm` model, loading the weights at `path` (a GPU and the vllm extra)."""
    _import_lm_eval()
    from lm_eval.models.vllm_causallms import VLLM

    return VLLM(pretrained=path, tokenizer=path, dtype=dtype, batch_size="auto", seed=seed,
                chat_template_args=dict(chat_template_kwargs) or None, **engine)  # fmt: skip


@dataclass
class HarnessScore:
    """One benchmark's result for one model."""

    benchmark: str
    scores: dict[str, float]  # metric -> the harness's aggregate
    items: dict[str, dict[str, Any]]  # metric -> item key ("task/doc_id") -> per-item value(s)
    n: int  # items evaluated
    available: int  # items in the evaluated split(s) before `limit`
    filter: str = "none"
    samples: list[dict[str, Any]] = field(default_factory=list)  # the harness's logged items


def flat_values(values: Any) -> list[float]:
    """One item's value(s) as floats (an instruction-level item holds one per instruction)."""
    return [float(v) for v in values] if isinstance(values, list | tuple) else [float(values)]


def item_values(score: HarnessScore, metric: str) -> list[float]:
    """The per-item values behind `metric` (instruction-level metrics: one value per instruction)."""
    return [v for key in sorted(score.items[metric]) for v in flat_values(score.items[metric][key])]


def mean_se(values: list[float]) -> float:
    """Standard error of a mean: sample standard deviation / sqrt(n)."""
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _metric_key(result: dict[str, Any], metric: str) -> tuple[str, str]:
    keys = [k for k in result if k.startswith(f"{metric},") and not k.endswith("_stderr")]
    if not keys:
        raise KeyError(f"the harness reported no '{metric}' (got {', '.join(sorted(result))})")
    key = next((k for k in keys if k.endswith(",none")), keys[0])
    return key, key.split(",", 1)[1]


def _scores(bench: Benchmark, out: dict[str, Any]) -> HarnessScore:
    task = str(bench.lm_eval_task)
    result = out["results"][task]
    subtasks = list((out.get("group_subtasks") or {}).get(task) or [task])
    scores, items, chosen = {}, {}, "none"
    for metric in bench.metrics:
        key, chosen = _metric_key(result, metric)
        scores[metric] = float(result[key])
        items[metric] = {
            f"{sub}/{row['doc_id']}": row[metric]
            for sub in subtasks
            for row in out["samples"].get(sub, [])
            if row.get("filter", "none") == chosen
        }
    counts = out.get("n-samples") or {}
    n = sum(int((counts.get(sub) or {}).get("effective", 0)) for sub in subtasks)
    available = sum(int((counts.get(sub) or {}).get("original", 0)) for sub in subtasks)
    samples = [{"task": sub, **row} for sub in subtasks for row in out["samples"].get(sub, [])]
    return HarnessScore(bench.name, scores, items, n or len(items[bench.metric]), available, chosen, samples)


def evaluate(
    lm: Any,
    benches: list[Benchmark],
    task_dir: Path | None,
    limit: int | None = None,
    apply_chat_template: bool = True,
    fewshot_as_multiturn: bool = True,
    max_gen_toks: int | None = None,
    seed: int = 0,
) -> dict[str, HarnessScore]:
    """Run the harness's tasks of `benches` on `lm`; one HarnessScore per benchmark."""
    if not benches:
        return {}
    from lm_eval import simple_evaluate

    logging.getLogger("lm_eval").setLevel(logging.WARNING)  # its progress bars stay; its chatter goes
    log.info(
        "lm-eval: %s%s",
        ", ".join(str(b.lm_eval_task) for b in benches),
        f" (first {limit} items)" if limit else "",
    )
    out = simple_evaluate(
        model=lm,
        tasks=[str(b.lm_eval_task) for b in benches],
        task_manager=task_manager(task_dir),
        limit=limit,
        apply_chat_template=apply_chat_template,
        fewshot_as_multiturn=fewshot_as_multiturn if apply_chat_template else False,
        gen_kwargs={"max_gen_toks": int(max_gen_toks)} if max_gen_toks else None,
        log_samples=True,
        bootstrap_iters=0,  # standard errors come from the logged items (`mean_se`)
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    if out is None:  # only on a non-zero rank of the harness's own multi-process mode
        return {}
    return {b.name: _scores(b, out) for b in benches}
