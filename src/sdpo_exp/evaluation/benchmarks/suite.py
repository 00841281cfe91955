"""One model through the suite: load it, run the harness benchmarks, write the judged benchmarks'
answers, free it. Results are kept per model in the run directory, so that a run stopped part-way
(preemption, a SLURM time limit) starts again with the first model it has not finished."""

from __future__ import annotations

import gc
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sdpo_exp.data.jsonl import AtomicJsonlWriter, write_json
from sdpo_exp.data.prompt_files import Prompt
from sdpo_exp.evaluation.benchmarks import harness
from sdpo_exp.evaluation.benchmarks.harness import HarnessScore
from sdpo_exp.evaluation.benchmarks.judged import JudgedItem
from sdpo_exp.evaluation.benchmarks.models import ModelEntry
from sdpo_exp.evaluation.benchmarks.registry import Benchmark
from sdpo_exp.evaluation.replies import policy_replies

log = logging.getLogger(__name__)


def slug(k: int, label: str) -> str:
    return f"{k}_{re.sub(r'[^A-Za-z0-9._-]+', '_', label).strip('_')[:60]}"


@dataclass
class ModelResult:
    label: str
    harness: dict[str, HarnessScore] = field(default_factory=dict)
    answers: dict[str, list[str]] = field(default_factory=dict)  # judged benchmark -> one answer per item


def model_config(cfg: DictConfig, path: Path | None) -> DictConfig:
    """The `model` group pointed at `path` (None: as configured), evaluated as saved (no LoRA added)."""
    updates: dict[str, Any] = {"lora": {"enabled": False}, "gradient_checkpointing": False}
    if path is not None:
        updates["path"] = str(path)
    return OmegaConf.merge(cfg.model, updates)


@contextmanager
def loaded(cfg: DictConfig, path: Path | None, device: torch.device) -> Iterator[tuple[Any, Any]]:
    from sdpo_exp.models import load_model, load_tokenizer

    model_cfg = model_config(cfg, path)
    tokenizer = load_tokenizer(model_cfg, cfg.paths.cache_dir)
    model = load_model(model_cfg, cfg.paths.cache_dir, tokenizer, device=device, trainable=False).eval()
    try:
        yield model, tokenizer
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def weights_dir(cfg: DictConfig, path: Path | None) -> str:
    """The directory a vLLM engine loads (the base model's converted checkpoint for `base`)."""
    from sdpo_exp.errors import ConfigError
    from sdpo_exp.models.loader import pretrained_dir

    found = str(path) if path is not None else pretrained_dir(model_config(cfg, None), cfg.paths.cache_dir)
    if found is None:
        raise ConfigError("benchmark.backend=vllm needs weights on disk; model=tiny_random has none (use hf)")
    return found


def _harness_settings(cfg: DictConfig) -> dict[str, Any]:
    b = cfg.benchmark
    return {"limit": b.limit, "apply_chat_template": bool(b.apply_chat_template),
            "fewshot_as_multiturn": bool(b.fewshot_as_multiturn), "max_gen_toks": b.max_gen_toks}  # fmt: skip


def _fingerprint(cfg: DictConfig, entry: ModelEntry, benches: list[Benchmark]) -> dict[str, Any]:
    b = cfg.benchmark
    return {"path": str(entry.path) if entry.path else f"base:{cfg.model.name}", "benchmarks": [x.name for x in benches],
            "data_dir": b.data_dir, "backend": str(getattr(b.backend, "value", b.backend)),
            "judged_max_new_tokens": int(b.judged.max_new_tokens), **_harness_settings(cfg)}  # fmt: skip


def _load_cached(folder: Path, fingerprint: dict[str, Any], label: str) -> ModelResult | None:
    path = folder / "result.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    if data.get("fingerprint") != fingerprint:
        return None
    scores = {k: HarnessScore(**v) for k, v in data["harness"].items()}
    return ModelResult(label, scores, data["answers"])


def _save(folder: Path, result: ModelResult, fingerprint: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, score in result.harness.items():
        with AtomicJsonlWriter(folder / "samples" / f"{name}.jsonl") as out:
            for row in score.samples:
                out.write(json.loads(json.dumps(row, default=str)))
    harness_json = {k: {**asdict(v), "samples": []} for k, v in result.harness.items()}
    write_json(folder / "result.json", {"fingerprint": fingerprint, "label": result.label,
                                        "harness": harness_json, "answers": result.answers})  # fmt: skip


def score_model(
    cfg: DictConfig,
    entry: ModelEntry,
    folder: Path,
    harness_benches: list[Benchmark],
    judged_items: dict[str, list[JudgedItem]],
    task_dir: Path | None,
    device: torch.device,
) -> ModelResult:
    """The model's harness scores and judged answers (from `folder` when an earlier attempt of this
    run finished them with the same settings)."""
    fingerprint = {**_fingerprint(cfg, entry, harness_benches), "judged": sorted(judged_items)}
    cached = _load_cached(folder, fingerprint, entry.label)
    if cached is not None:
        log.info("%s: scores from an earlier attempt (%s)", entry.label, folder / "result.json")
        return cached
    result = ModelResult(entry.label)
    backend = str(getattr(cfg.benchmark.backend, "value", cfg.benchmark.backend))
    chat_kwargs = dict(cfg.model.chat_template_kwargs or {})
    max_new = int(cfg.benchmark.judged.max_new_tokens)
    prompts = {name: [Prompt(i.id, i.prompt) for i in items] for name, items in judged_items.items()}
    if backend == "vllm":
        path = weights_dir(cfg, entry.path)
        if harness_benches:
            lm = harness.vllm_lm(path, str(cfg.generation.vllm.dtype), chat_kwargs, int(cfg.seed))
            result.harness = harness.evaluate(lm, harness_benches, task_dir, **_harness_settings(cfg))
            del lm
            gc.collect()
        if prompts:
            from sdpo_exp.generation import make_generator
            from sdpo_exp.models import load_tokenizer

            tokenizer = load_tokenizer(model_config(cfg, entry.path), cfg.paths.cache_dir)
            options = dict(OmegaConf.to_container(cfg.generation.vllm, resolve=True))
            options["gpu_memory_utilization"] = 0.85  # alone on the GPU here (0.3 shares it with training)
            generator = make_generator(
                "vllm", None, tokenizer, chat_kwargs, model_dir=path, vllm_options=options
            )
            try:
                result.answers = {n: policy_replies(generator, p, max_new) for n, p in prompts.items()}
            finally:
                generator.close()
    else:
        with loaded(cfg, entry.path, device) as (model, tokenizer):
            if harness_benches:
                lm = harness.hf_lm(model, tokenizer, int(cfg.benchmark.batch_size), chat_kwargs)
                result.harness = harness.evaluate(lm, harness_benches, task_dir, **_harness_settings(cfg))
                del lm
            if prompts:
                from sdpo_exp.generation import make_generator

                generator = make_generator("hf", model, tokenizer, chat_kwargs, int(cfg.benchmark.batch_size))
                for name, items in prompts.items():
                    log.info(
                        "%s: %d answers for %s (greedy, up to %d tokens)",
                        entry.label,
                        len(items),
                        name,
                        max_new,
                    )
                    result.answers[name] = policy_replies(generator, items, max_new)
    _save(folder, result, fingerprint)
    return result
