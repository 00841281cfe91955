"""Value checks of the composed run config: ranges and cross-field rules the types cannot express,
and keys that `+key=value` slipped past the schema. They run before anything loads (run.py's
pre-check, every value of a sweep included, and the task wrapper), and each failure is one line
naming the key and what it may be."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sdpo_exp.config.paths import CONF_DIR
from sdpo_exp.errors import ConfigError

Check = tuple[str, Callable[[Any], bool], str]  # (key, predicate on its value, what it may be)


def _v(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _positive(x: Any) -> bool:
    return x is not None and float(x) > 0


def _non_negative(x: Any) -> bool:
    return x is not None and float(x) >= 0


def _at_least_one(x: Any) -> bool:
    return x is not None and int(x) >= 1


def _unit_interval(x: Any) -> bool:
    return x is not None and 0.0 <= float(x) <= 1.0


TRAINER: list[Check] = [
    ("lr", _non_negative, "a number >= 0 (0: every step runs and nothing changes, a control)"),
    ("weight_decay", _non_negative, ">= 0"),
    ("adam_beta1", lambda x: 0 <= float(x) < 1, "in [0, 1)"),
    ("adam_beta2", lambda x: 0 <= float(x) < 1, "in [0, 1)"),
    ("adam_eps", _positive, "> 0"),
    ("warmup_ratio", _unit_interval, "in [0, 1]"),
    ("max_grad_norm", _non_negative, ">= 0 (0: no clipping)"),
    ("epochs", _at_least_one, "an integer >= 1"),
    (
        "max_steps",
        lambda x: x is None or int(x) == -1 or int(x) >= 1,
        "null or -1 (no limit: trainer.epochs decides), or >= 1",
    ),
    ("per_device_batch_size", _at_least_one, "an integer >= 1"),
    ("grad_accum_steps", _at_least_one, "an integer >= 1"),
    ("global_batch_size", lambda x: x is None or int(x) >= 1, "null or an integer >= 1"),
    ("max_prompt_tokens", _at_least_one, "an integer >= 1"),
    ("max_completion_tokens", _at_least_one, "an integer >= 1"),
    (
        "max_tokens_per_micro_batch",
        lambda x: x is None or int(x) >= 1,
        "null (micro-batches of per_device_batch_size rows) or an integer >= 1",
    ),
    ("log_every", _at_least_one, "an integer >= 1"),
    ("eval_every", _non_negative, ">= 0 (0: never)"),
    ("save_every", _non_negative, ">= 0 (0: never)"),
    ("keep_last", _non_negative, ">= 0 (0: keep all)"),
]
LOSS: list[Check] = [
    ("chunk_size", _at_least_one, "an integer >= 1"),
    ("kl_to_ref_beta", _non_negative, ">= 0"),
    ("teacher.ema_rate", lambda x: 0 < float(x) <= 1, "in (0, 1]"),
    ("teacher.trust_region_r", _unit_interval, "in [0, 1]"),
    ("is_clip", lambda x: x is None or float(x) > 0, "null (off) or > 0"),
]
LOSS_BY_NAME: dict[str, list[Check]] = {
    "pg": [
        ("ignore_first_k", _non_negative, "an integer >= 0"),
        ("clip_advantages", lambda x: x is None or float(x) > 0, "null or > 0"),
    ],
    "topk": [("k", _at_least_one, "an integer >= 1")],
    "sft": [("is_clip", lambda x: x is None, "null (sft has no sampler to correct for)")],
    "jsd": [
        ("alpha", _unit_interval, "in [0, 1] (0: forward KL, 1: reverse KL)"),
        ("temperature", _positive, "> 0"),
        ("top_k", lambda x: x is None or int(x) >= 1, "null (full vocabulary) or an integer >= 1"),
    ],
}
GENERATION: list[Check] = [
    ("max_new_tokens", _at_least_one, "an integer >= 1"),
    ("top_p", lambda x: 0 < float(x) <= 1, "in (0, 1]"),
    ("top_k", _non_negative, "an integer >= 0 (0: off)"),
    ("batch_size", _at_least_one, "an integer >= 1"),
]
ONLINE: list[Check] = [
    ("num_interactions", _at_least_one, "an integer >= 1"),
    ("updates_per_batch", _at_least_one, "an integer >= 1"),
    ("eval_every", _non_negative, ">= 0 (0: only at the start and the end)"),
    ("switch_every", _at_least_one, "an integer >= 1"),
    ("report_examples", _non_negative, ">= 0"),
]
SERVE: list[Check] = [
    ("port", lambda x: 0 <= int(x) <= 65535, "in [0, 65535] (0: any free port)"),
    ("update_every", _at_least_one, "an integer >= 1"),
    ("max_updates", lambda x: x is None or int(x) >= 1, "null or an integer >= 1"),
    ("save_every", _non_negative, ">= 0 (0: no checkpoints)"),
    ("max_request_bytes", _at_least_one, "an integer >= 1"),
    ("max_concurrency", _at_least_one, "an integer >= 1"),
    ("max_tokens", _at_least_one, "an integer >= 1"),
    ("max_prompt_tokens", _at_least_one, "an integer >= 1"),
    ("max_messages", _at_least_one, "an integer >= 1"),
    ("color_limit", lambda x: x is None or float(x) > 0, "null or > 0"),
    ("chunk_size", _at_least_one, "an integer >= 1"),
]
EVAL: list[Check] = [
    ("num_eval_prompts", _at_least_one, "an integer >= 1"),
    ("bootstrap_samples", _non_negative, ">= 0"),
    ("max_new_tokens", lambda x: x is None or int(x) >= 1, "null or an integer >= 1"),
    ("batch_size", lambda x: x is None or int(x) >= 1, "null or an integer >= 1"),
]
BENCHMARK: list[Check] = [
    ("limit", lambda x: x is None or int(x) >= 1, "null (every item) or an integer >= 1"),
    ("batch_size", _at_least_one, "an integer >= 1"),
    ("max_gen_toks", lambda x: x is None or int(x) >= 1, "null (the harness's own) or an integer >= 1"),
    ("judged.max_new_tokens", _at_least_one, "an integer >= 1"),
    ("judged.bootstrap_samples", _non_negative, ">= 0"),
]
ANTHROPIC: list[Check] = [
    ("max_tokens", _at_least_one, "an integer >= 1"),
    ("timeout_s", _positive, "> 0"),
    ("max_retries", _non_negative, "an integer >= 0"),
    ("backoff_base_s", _non_negative, ">= 0"),
    ("backoff_max_s", _non_negative, ">= 0"),
    ("max_concurrency", _at_least_one, "an integer >= 1"),
    ("max_failure_rate", _unit_interval, "in [0, 1]"),
]


def _run(node: Any, prefix: str, checks: list[Check]) -> None:
    if not isinstance(node, DictConfig):
        return
    for key, ok, allowed in checks:
        value = OmegaConf.select(node, key)
        if OmegaConf.select(node, key, default="__absent__") == "__absent__":
            continue
        try:
            good = ok(_v(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ConfigError(f"{prefix}.{key}={value} is out of range: it must be {allowed}")


def loss_checks(loss: Any) -> None:
    """The loss group's ranges (used at composition and again when an objective is built)."""
    _run(loss, "loss", LOSS + LOSS_BY_NAME.get(str(loss.name), []))


def unknown_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Keys of schema-typed nodes that their dataclass does not declare (added with `+key=...`)."""
    found: list[str] = []
    if not isinstance(cfg, DictConfig):
        return found
    kind = OmegaConf.get_type(cfg)
    declared = {f.name for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else None
    for key in cfg.keys():
        full = f"{prefix}{key}"
        if declared is not None and key not in declared:
            found.append(full)
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not OmegaConf.is_missing(cfg, key):
            found += unknown_keys(node, full + ".")
    return found


def _check_controls(task: Any) -> None:
    controls = [str(c) for c in task.get("controls") or []]
    options = sorted(p.stem for p in (CONF_DIR / "simulator").glob("*.yaml"))
    for name in controls:
        if name not in options:
            raise ConfigError(
                f"task.controls names '{name}', which is not a simulator; valid choices: {', '.join(options)}"
            )
        if name == "user":
            raise ConfigError("task.controls: 'user' is the name of the run's own arm")
    if len(set(controls)) != len(controls):
        raise ConfigError(f"task.controls lists a simulator twice: {controls}")


def check_values(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for the first value out of range or key outside its schema."""
    extra = [k for k in unknown_keys(cfg) if not k.startswith("hydra.")]
    if extra:
        raise ConfigError(
            f"unknown key '{extra[0]}' (added with '+'?): it is not a setting of its group and would be ignored"
        )
    _run(cfg.get("trainer"), "trainer", TRAINER)
    trainer = cfg.get("trainer")
    if trainer is not None and trainer.global_batch_size is not None:
        per = int(trainer.per_device_batch_size)
        if int(trainer.global_batch_size) % per:
            raise ConfigError(
                f"trainer.global_batch_size={trainer.global_batch_size} is not a multiple of "
                f"trainer.per_device_batch_size={per}"
            )
    if cfg.get("loss") is not None:
        loss_checks(cfg.loss)
    generation = cfg.get("generation")
    _run(generation, "generation", GENERATION)
    if generation is not None and bool(generation.do_sample) and not float(generation.temperature) > 0:
        raise ConfigError(
            f"generation.temperature={generation.temperature} must be > 0 when generation.do_sample=true"
        )
    task = cfg.get("task")
    if task is not None and str(task.name) == "online":
        _run(task, "task", ONLINE)
        _check_controls(task)
        if str(_v(task.schedule)) == "flip" and not 0 < int(task.flip_after) < int(task.num_interactions):
            raise ConfigError(
                f"task.flip_after={task.flip_after} must lie between 0 and task.num_interactions={task.num_interactions}"
            )
    if task is not None and str(task.name) == "serve":
        _run(task, "task", SERVE)
    if task is not None and str(task.name) == "benchmark":
        _run(cfg.get("benchmark"), "benchmark", BENCHMARK)
        if not cfg.benchmark.benchmarks:
            raise ConfigError("benchmark.benchmarks is empty: name at least one benchmark")
    if task is not None and isinstance(task.get("eval"), DictConfig):
        _run(task.eval, "task.eval", EVAL)
    for role in ("simulator", "judge"):
        node = cfg.get(role)
        if isinstance(node, DictConfig) and str(_v(node.get("backend"))) == "anthropic":
            _run(node, role, ANTHROPIC)
