"""The `realistic` part of `benchmarks/step.py`: whole optimiser steps on a batch whose lengths follow
logged conversations (`lengths.py`), several micro-batches, four methods on the same interactions:

- ours (defaults): `Learner.step` with the composed config's defaults (`task=offline`; whatever
  `loss.shared_prefix`, `trainer.packing` and `trainer.max_tokens_per_micro_batch` default to when it
  runs; their resolved values are recorded);
- ours (plain): the same with `loss.shared_prefix=false` and, where those keys exist,
  `trainer.packing=false`, `trainer.max_tokens_per_micro_batch=null`;
- naive: the naive reference step (full logits) on each micro-batch, tokenising included, then the
  same clipping, AdamW and scheduler step;
- trl: TRL's `SDPOTrainer` training step (`bench_trl.make_trl_trainer_step`).

All use the `pg` loss (TRL: `sampled_token`, reverse KL, the same per-token term (log pi_s - log
pi_t).detach() * log pi_s and the same per-sequence mean), a live teacher, no autocast, and the
project's AdamW and scheduler built from the same trainer config, each method on its own copy of the
model (the same initial weights, so the warm-up runs' loss values are comparable).
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from bench_measure import alternate
from bench_setup import CONF, HEADROOM, Sizes, batch_shape, cache_dir, naive_loss_step, realistic_interactions
from bench_trl import make_trl_trainer_step, trl_missing, trl_padded_positions
from lengths import SOURCE, describe, parameters, sample_rows

KEYS = ("loss.shared_prefix", "trainer.packing", "trainer.max_tokens_per_micro_batch")


def _compose(sizes: Sizes, per_device: int, accumulation: int, extra: list[str]) -> Any:
    from sdpo_exp.config.check import compose_config

    return compose_config(
        CONF,
        [
            "task=offline",
            f"model={sizes.model}",
            f"model.dtype={sizes.dtype}",
            "loss=pg",
            f"trainer.per_device_batch_size={per_device}",
            f"trainer.grad_accum_steps={accumulation}",
            f"trainer.max_prompt_tokens={sizes.context + HEADROOM}",
            f"trainer.max_completion_tokens={sizes.completion}",
            "trainer.precision=no",
            f"paths.cache_dir={cache_dir()}",
            *extra,
        ],
    )


def _resolved(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return {key: OmegaConf.select(cfg, key, default=None) for key in KEYS}


def plain_overrides(defaults_cfg: Any) -> list[str]:
    """Shared prefix off, and packing off where the config has it."""
    from omegaconf import OmegaConf

    extra = ["loss.shared_prefix=false"]
    if OmegaConf.select(defaults_cfg, "trainer.packing", default=None) is not None:
        extra.append("trainer.packing=false")
    if "max_tokens_per_micro_batch" in defaults_cfg.trainer:
        extra.append("trainer.max_tokens_per_micro_batch=null")
    return extra


def part_realistic(
    sizes: Sizes, per_device: int = 4, max_followup: int = 256, seed: int = 0, scale: float = 1.0
) -> dict[str, Any]:
    """`sizes.batch` interactions of `lengths.sample_rows` (contexts up to `sizes.context` tokens,
    completions up to `sizes.completion`), micro-batches of `per_device`."""
    import torch

    from sdpo_exp.models import load_model, load_tokenizer
    from sdpo_exp.sdpo.batching import BatchBuilder
    from sdpo_exp.training.distributed import make_accelerator
    from sdpo_exp.training.learner import Learner, split_micro_batches
    from sdpo_exp.training.optim import build_optimizer, build_scheduler

    rows = sizes.batch
    if rows % per_device:
        raise ValueError(f"batch {rows} is not a multiple of the micro-batch {per_device}")
    accumulation = rows // per_device
    cfg = _compose(sizes, per_device, accumulation, [])
    cfg_plain = _compose(sizes, per_device, accumulation, plain_overrides(cfg))
    accelerator = make_accelerator(cfg.trainer)
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    builder = BatchBuilder.from_config(cfg, tokenizer)
    builder_plain = BatchBuilder.from_config(cfg_plain, tokenizer)
    lengths = sample_rows(
        rows, seed, max_context=sizes.context, max_completion=sizes.completion, max_followup=max_followup,
        scale=scale,
    )  # fmt: skip
    trl_skipped = trl_missing()
    with tempfile.TemporaryDirectory() as run_dir:
        torch.manual_seed(0)
        ours = Learner(cfg, accelerator, builder, 1000, Path(run_dir) / "defaults")
        torch.manual_seed(0)
        plain = Learner(cfg_plain, accelerator, builder_plain, 1000, Path(run_dir) / "plain")
        vocab = min(int(ours.model.config.vocab_size), len(tokenizer))
        interactions = realistic_interactions(tokenizer, lengths, vocab, seed)
        batch, skipped = builder.build(interactions)
        if batch is None or skipped or len(batch) != rows:
            raise RuntimeError(f"the sampled interactions did not fit the batch builder: {dict(skipped)}")
        micro = split_micro_batches(interactions, per_device, accumulation)
        micro_shapes = [builder.collate([builder.encode_one(i) for i in m]) for m in micro]
        padded = sum(int(b.student_input_ids.numel() + b.teacher_input_ids.numel()) for b in micro_shapes)

        # the warm-up: each method once on the first interactions, a micro-batch of one each (TRL's
        # trainer splits its batch into `accumulation` micro-batches, none of which may be empty)
        warm = split_micro_batches(interactions[:accumulation], 1, accumulation)
        warm_batch = builder.collate([builder.encode_one(i) for i in interactions[:accumulation]])

        def run_ours(micro: list[list[Any]] = micro) -> float:
            return float(ours.step(micro, interactions[0])["loss"])

        def run_plain(micro: list[list[Any]] = micro) -> float:
            return float(plain.step(micro, interactions[0])["loss"])

        torch.manual_seed(0)
        naive_model = load_model(cfg.model, cfg.paths.cache_dir, tokenizer, trainable=True)
        naive_optimizer = build_optimizer(naive_model, cfg.trainer, accelerator.device)
        naive_scheduler = build_scheduler(naive_optimizer, cfg.trainer, 1000)

        def run_naive(micro: list[list[Any]] = micro) -> float:
            naive_model.train()
            values = []
            for m in (m for m in micro if m):  # the naive reference step per micro-batch, tokenising included
                fresh = builder_plain.collate([builder_plain.encode_one(i) for i in m])
                values.append(naive_loss_step(naive_model, fresh, "pg"))
            accelerator.clip_grad_norm_(naive_model.parameters(), float(cfg.trainer.max_grad_norm))
            naive_optimizer.step()
            naive_scheduler.step()
            naive_optimizer.zero_grad(set_to_none=True)
            return sum(values) / len(values)

        methods = {"naive": run_naive, "ours_defaults": run_ours, "ours_plain": run_plain}
        warmups = {name: partial(run, warm) for name, run in methods.items()}
        trl_settings: dict[str, Any] = {}
        if trl_skipped is None:
            torch.manual_seed(0)
            trl_model = load_model(cfg.model, cfg.paths.cache_dir, tokenizer, trainable=True)
            trl_model.train()
            optimizer = build_optimizer(trl_model, cfg.trainer, accelerator.device)
            scheduler = build_scheduler(optimizer, cfg.trainer, 1000)
            trl_step, trl_settings = make_trl_trainer_step(
                trl_model,
                tokenizer,
                rows,
                accumulation,
                sizes.completion,
                optimizer,
                scheduler,
                float(cfg.trainer.lr),
                float(cfg.trainer.max_grad_norm),
                str(Path(run_dir) / "trl"),
            )
            trl_settings["padded_tokens"] = trl_padded_positions(batch)
            methods["trl"] = partial(trl_step, batch)
            warmups["trl"] = partial(trl_step, warm_batch)
        values = {name: run() for name, run in warmups.items()}
        found = alternate(methods, sizes.repeats, warmup=False)
        for name, result in found.items():
            result["value"] = values[name]
    tokens = int(batch.student_attention_mask.sum() + batch.teacher_attention_mask.sum())
    for result in found.values():
        result["tokens_per_s"] = tokens / result["wall_s"]
        result["completion_tokens_per_s"] = batch.num_completion_tokens / result["wall_s"]
    return {
        "sizes": sizes.to_dict(),
        "loss": "pg",
        "per_device": per_device,
        "micro_batches": accumulation,
        "config": {"defaults": _resolved(cfg), "plain": _resolved(cfg_plain)},
        "lengths": {
            "source": SOURCE,
            "parameters": parameters(),
            "seed": seed,
            "scale": scale,
            "max_context": sizes.context,
            "max_completion": sizes.completion,
            "max_followup": max_followup,
            "rows": [
                {
                    "context": r.context,
                    "completion": r.completion,
                    "followup": r.followup,
                    "messages": len(r.history),
                    "dropped_exchanges": r.dropped_exchanges,
                }
                for r in lengths
            ],
            "summary": describe(lengths),
            "student_context_tokens": [int(n) for n in batch.student_prompt_lens],
            "teacher_context_tokens": [int(n) for n in batch.teacher_prompt_lens],
            "completion_tokens": [int(n) for n in batch.completion_mask.sum(1)],
        },
        "shape": batch_shape(batch),
        "tokens": tokens,
        "padded_tokens": {
            "micro_batches": padded,
            **({"trl": trl_settings["padded_tokens"]} if trl_settings else {}),
        },
        "trl": trl_settings if trl_skipped is None else {"skipped": trl_skipped},
        "methods": found,
    }
