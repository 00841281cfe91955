"""`task=signal`: per-token hindsight advantages for a file of cases (paper, Section 4.3).

For each case: take its fixed completion or sample one from the policy, score it under x, under
(x, relevant follow-up) and under (x, unrelated follow-up), and write `signals.json`,
`heatmap_followup.png`, `heatmap_unrelated.png`, `side_by_side.png` and `tokens.html` into the run
directory.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sdpo_exp.chat import stop_token_ids
from sdpo_exp.errors import ConfigError, DataError
from sdpo_exp.models import load_model, load_tokenizer, resolve_dtype
from sdpo_exp.sdpo.hindsight import template_text
from sdpo_exp.signal.cases import load_cases
from sdpo_exp.signal.completions import obtain_completions
from sdpo_exp.signal.heatmap import color_limit, plot_heatmap, plot_side_by_side
from sdpo_exp.signal.html import write_tokens_html
from sdpo_exp.signal.records import signals_document, write_signals
from sdpo_exp.signal.scoring import make_builder, score_cases
from sdpo_exp.tasks.context import RunContext

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    return value


def _check(cfg: DictConfig) -> None:
    task = cfg.task
    if not task.cases:
        raise ConfigError(
            "task=signal needs task.cases=<json file> (the shipped one: ${resource:signal_cases.json})"
        )
    if _plain(cfg.generation.backend) != "hf":
        raise ConfigError("task=signal samples with generation.backend=hf only")
    for key in ("min_completion_tokens", "max_resamples"):
        if task[key] < 0:
            raise ConfigError(f"task.{key} must be >= 0, got {task[key]}")
    for key in ("batch_size", "max_prompt_tokens", "chunk_size"):
        if task[key] < 1:
            raise ConfigError(f"task.{key} must be >= 1, got {task[key]}")
    if task.min_completion_tokens > cfg.generation.max_new_tokens:
        raise ConfigError(
            f"task.min_completion_tokens={task.min_completion_tokens} exceeds "
            f"generation.max_new_tokens={cfg.generation.max_new_tokens}"
        )
    if task.max_cases is not None and task.max_cases < 1:
        raise ConfigError(f"task.max_cases must be >= 1 or null, got {task.max_cases}")
    if task.color_limit is not None and task.color_limit <= 0:
        raise ConfigError(f"task.color_limit must be positive, got {task.color_limit}")


def _meta(cfg: DictConfig, dtype: torch.dtype, skipped: dict[str, int]) -> dict[str, Any]:
    gen = cfg.generation
    return {
        "model": {
            "name": cfg.model.name,
            "source": _plain(cfg.model.source),
            "path": cfg.model.path,
            "dtype": str(dtype).removeprefix("torch."),
        },
        "template": _plain(cfg.hindsight.template),
        "template_text": template_text(cfg.hindsight),
        "chat_template_kwargs": _plain(cfg.model.chat_template_kwargs),
        "seed": int(cfg.seed),
        "sampling": {
            "do_sample": bool(gen.do_sample),
            "temperature": float(gen.temperature),
            "top_p": float(gen.top_p),
            "top_k": int(gen.top_k),
            "max_new_tokens": int(gen.max_new_tokens),
            "min_completion_tokens": int(cfg.task.min_completion_tokens),
            "max_resamples": int(cfg.task.max_resamples),
        },
        "cases_file": str(cfg.task.cases),
        "max_cases": cfg.task.max_cases,
        "max_prompt_tokens": int(cfg.task.max_prompt_tokens),
        "fixed_completion_eos": bool(cfg.task.fixed_completion_eos),
        "advantage": "teacher_logprob - student_logprob, per completion token",
        "skipped_cases": skipped,
    }


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    _check(cfg)
    cases, skipped = load_cases(cfg.task.cases)
    if cfg.task.max_cases is not None and len(cases) > cfg.task.max_cases:
        log.info(
            "task.max_cases=%d: using the first %d of %d cases",
            cfg.task.max_cases,
            cfg.task.max_cases,
            len(cases),
        )
        cases = cases[: cfg.task.max_cases]
    log.info("Signal analysis of %d cases from %s", len(cases), cfg.task.cases)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    model = load_model(cfg.model, cfg.paths.cache_dir, tokenizer, device=device, trainable=False)
    model.eval()
    template_kwargs = _plain(cfg.model.chat_template_kwargs) or {}

    stop_ids = stop_token_ids(tokenizer, template_kwargs, model)
    completions = obtain_completions(
        model,
        tokenizer,
        cases,
        cfg.generation,
        template_kwargs,
        int(cfg.task.min_completion_tokens),
        int(cfg.task.max_resamples),
        stop_ids=stop_ids,
    )
    builder = make_builder(tokenizer, cfg.hindsight, template_kwargs, cfg.task.max_prompt_tokens, completions)
    records, score_skipped = score_cases(
        model,
        tokenizer,
        cases,
        completions,
        builder,
        batch_size=int(cfg.task.batch_size),
        chunk_size=int(cfg.task.chunk_size),
        fixed_completion_eos=bool(cfg.task.fixed_completion_eos),
    )
    skipped.update(score_skipped)
    if not records:
        raise DataError(f"no case of {cfg.task.cases} could be scored (skipped: {dict(skipped)})")

    document = signals_document(_meta(cfg, resolve_dtype(cfg.model.dtype, device), dict(skipped)), records)
    limit = float(cfg.task.color_limit) if cfg.task.color_limit is not None else color_limit(document)
    document["meta"]["color_limit"] = limit
    run_dir = ctx.run_dir
    if ctx.is_main_process:
        write_signals(run_dir / "signals.json", document)
        max_tokens = cfg.task.plot_max_tokens
        plot_heatmap(document, "followup", run_dir / "heatmap_followup.png", limit, max_tokens)
        plot_heatmap(document, "unrelated", run_dir / "heatmap_unrelated.png", limit, max_tokens)
        plot_side_by_side(document, run_dir / "side_by_side.png", limit, max_tokens)
        write_tokens_html(document, run_dir / "tokens.html", limit)

    summary = document["summary"]
    ratio = summary["ratio"]
    log.info(
        "mean |A|: relevant follow-up %.4f, unrelated %.4f, ratio %s over %d tokens of %d cases",
        summary["mean_abs_advantage_followup"],
        summary["mean_abs_advantage_unrelated"],
        f"{ratio:.2f}" if ratio is not None else "n/a",
        summary["num_tokens"],
        summary["num_cases"],
    )
    metrics: dict[str, float] = {
        "mean_abs_advantage_followup": summary["mean_abs_advantage_followup"],
        "mean_abs_advantage_unrelated": summary["mean_abs_advantage_unrelated"],
        "num_cases": float(summary["num_cases"]),
        "num_tokens": float(summary["num_tokens"]),
        "cases_followup_larger": float(summary["cases_followup_larger"]),
        "sampled_below_min_tokens": float(
            sum(bool(r.extra.get("below_min_completion_tokens")) for r in records)
        ),
    }
    if ratio is not None:
        metrics["ratio"] = ratio
    metrics.update({f"skipped/{reason}": float(n) for reason, n in sorted(skipped.items())})
    ctx.log(metrics, step=0)  # one row in metrics.jsonl (the run has no steps)
    return metrics
