"""The parts of `make bench`; `step.py` runs each in a worker process of its own.

- step: the whole offline step (tokenise, teacher, student, loss, backward, clipping, optimiser and
  scheduler step) through the project's `Learner.step`, against the naive reference step followed by
  the same clipping and optimiser step on the same model and optimiser.
- teacher: the teacher pass alone: naive (full logits), plain (chunked) and shared prefix (keys/values
  recorded by a student forward that runs anyway, outside the timed region).
- trl: the loss step (teacher, student, loss, backward) of `loss=topk` against TRL's SDPO loss path.
- scaling: loss-step time and peak memory over context and completion lengths, batch 1.
- realistic: whole optimiser steps on lengths of logged conversations, ours (defaults), ours (plain),
  naive and TRL's whole training step (`bench_realistic.py`).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench_measure import alternate
from bench_realistic import part_realistic
from bench_setup import (
    CONF,
    HEADROOM,
    Sizes,
    batch_shape,
    build_batch,
    cache_dir,
    load_model_and_tokenizer,
    make_builder,
    make_interactions,
    naive_loss_step,
)
from bench_trl import make_trl_step, trl_missing


def _vocab(model: Any, tokenizer: Any) -> int:
    return min(int(model.config.vocab_size), len(tokenizer))


def part_step(sizes: Sizes, loss: str = "pg") -> dict[str, Any]:
    import torch

    from sdpo_exp.config.check import compose_config
    from sdpo_exp.models import load_tokenizer
    from sdpo_exp.sdpo.batching import BatchBuilder
    from sdpo_exp.training.distributed import make_accelerator
    from sdpo_exp.training.learner import Learner

    cfg = compose_config(
        CONF,
        [
            "task=offline",
            f"model={sizes.model}",
            f"model.dtype={sizes.dtype}",
            f"loss={loss}",
            "loss.shared_prefix=true",
            f"trainer.per_device_batch_size={sizes.batch}",
            "trainer.grad_accum_steps=1",
            f"trainer.max_prompt_tokens={sizes.context + HEADROOM}",
            f"trainer.max_completion_tokens={sizes.completion}",
            "trainer.precision=no",
            f"paths.cache_dir={cache_dir()}",
        ],
    )
    accelerator = make_accelerator(cfg.trainer)
    builder = BatchBuilder.from_config(cfg, load_tokenizer(cfg.model, cfg.paths.cache_dir))
    with tempfile.TemporaryDirectory() as run_dir:
        torch.manual_seed(0)
        learner = Learner(cfg, accelerator, builder, 1000, Path(run_dir))
        model = learner.model
        interactions = make_interactions(
            builder.tokenizer, cfg.model.chat_template_kwargs, sizes, _vocab(model, builder.tokenizer)
        )
        batch = builder.collate([builder.encode_one(i) for i in interactions])

        def ours() -> float:
            return float(learner.step([interactions], interactions[0])["loss"])

        def naive() -> float:
            model.train()
            fresh = builder.collate([builder.encode_one(i) for i in interactions])  # it tokenises too
            value = naive_loss_step(model, fresh, loss)
            accelerator.clip_grad_norm_(model.parameters(), float(cfg.trainer.max_grad_norm))
            learner.optimizer.step()
            learner.scheduler.step()
            learner.optimizer.zero_grad(set_to_none=True)
            return value

        methods = alternate({"naive": naive, "ours": ours}, sizes.repeats)
    tokens = batch.num_completion_tokens
    for found in methods.values():
        found["completion_tokens_per_s"] = tokens / found["wall_s"]
    return {"sizes": sizes.to_dict(), "loss": loss, "shape": batch_shape(batch), "methods": methods}


def _naive_teacher_logprobs(model: Any, batch: Any) -> Any:
    """What the naive reference does for the teacher: full (B, T, V) logits, cross_entropy over them."""
    import torch
    import torch.nn.functional as F

    logits = model(
        input_ids=batch.teacher_input_ids, attention_mask=batch.teacher_attention_mask
    ).logits.float()
    vocab = logits.shape[-1]
    ids = batch.teacher_input_ids
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1), reduction="none")
    width = batch.completion_ids.shape[1]
    cols = (batch.teacher_prompt_lens[:, None] + torch.arange(width) - 1).clamp(max=ids.shape[1] - 2)
    return -nll.view(ids.shape[0], -1).gather(1, cols)[batch.completion_mask]


def _rowwise_difference(model: Any, batch: Any, batched: Any) -> float:
    """Largest |difference| between the plain teacher log-probs of the batch and those of each row run
    alone (no padding): the rounding noise of the model's dtype between two equivalent passes."""
    import torch

    from sdpo_exp.sdpo.logprobs import completion_logprobs, scatter_to_rows
    from sdpo_exp.sdpo.teacher import eval_mode

    rows = scatter_to_rows(batched, batch.completion_mask)
    worst = 0.0
    with torch.no_grad(), eval_mode(model):
        for b in range(len(batch)):
            width = int(batch.teacher_attention_mask[b].sum())
            alone = completion_logprobs(
                model,
                batch.teacher_input_ids[b : b + 1, :width],
                batch.teacher_attention_mask[b : b + 1, :width],
                batch.teacher_prompt_lens[b : b + 1],
                batch.completion_ids[b : b + 1],
                batch.completion_mask[b : b + 1],
            )
            mask = batch.completion_mask[b]
            worst = max(worst, float((alone[0][mask] - rows[b][mask]).abs().max()))
    return worst


def part_teacher(sizes: Sizes) -> dict[str, Any]:
    import torch

    from sdpo_exp.sdpo.prefix import recorded_hidden_states, shared_prefix_lengths
    from sdpo_exp.sdpo.teacher import CURRENT, Teacher, eval_mode

    model, tokenizer, mcfg = load_model_and_tokenizer(sizes)
    batch = build_batch(
        make_builder(tokenizer, mcfg.chat_template_kwargs, sizes),
        make_interactions(tokenizer, mcfg.chat_template_kwargs, sizes, _vocab(model, tokenizer)),
    )
    lengths = shared_prefix_lengths(
        batch.student_input_ids, batch.student_prompt_lens, batch.teacher_input_ids, batch.teacher_prompt_lens
    )
    with torch.no_grad():  # the student's forward records these in a training step
        _, prefix = recorded_hidden_states(
            model, batch.student_input_ids, batch.student_attention_mask, lengths
        )
    targets = batch.completion_ids[batch.completion_mask]
    teacher = Teacher()

    def chunked(prefixes: dict[str, Any]) -> Any:
        with torch.no_grad(), eval_mode(model):
            return teacher.mixture(model, batch, prefixes).token_logprobs(targets, 128)

    def naive() -> Any:
        with torch.no_grad():
            return _naive_teacher_logprobs(model, batch)

    def timed(run: Any) -> Any:
        def call() -> None:
            run()

        return call

    plain, shared = chunked({}), chunked({CURRENT: prefix})
    noise = _rowwise_difference(model, batch, plain)
    methods = alternate(
        {
            "naive": timed(naive),
            "plain": timed(lambda: chunked({})),
            "shared": timed(lambda: chunked({CURRENT: prefix})),
        },
        sizes.repeats,
    )
    return {
        "sizes": sizes.to_dict(),
        "shape": batch_shape(batch),
        "prefix_mean": float(lengths.float().mean()),
        "max_abs_diff_plain_shared": float((plain - shared).abs().max()),
        "max_abs_diff_naive_plain": float((naive() - plain).abs().max()),
        "max_abs_diff_plain_rowwise": noise,
        "methods": methods,
    }


def part_trl(sizes: Sizes, k: int = 50) -> dict[str, Any]:
    missing = trl_missing()
    if missing is not None:
        return {"sizes": sizes.to_dict(), "skipped": missing}
    from sdpo_exp.config.schemas.loss import LengthNorm, TopKLossConfig
    from sdpo_exp.sdpo.objective import SDPOObjective

    model, tokenizer, mcfg = load_model_and_tokenizer(sizes)
    batch = build_batch(
        make_builder(tokenizer, mcfg.chat_template_kwargs, sizes),
        make_interactions(tokenizer, mcfg.chat_template_kwargs, sizes, _vocab(model, tokenizer)),
    )
    # TRL averages each sequence's tokens, then the sequences: the same normalisation here
    objective = SDPOObjective(model, TopKLossConfig(k=k, length_norm=LengthNorm.sequence, shared_prefix=True))
    trl_step = make_trl_step(model, batch, k)

    def cleared(step: Any) -> Any:
        def run() -> float:
            value = step()
            model.zero_grad(set_to_none=True)
            return value

        return run

    def ours() -> float:
        out = objective(batch)
        out.loss.backward()
        return float(out.loss.detach())

    methods = alternate(
        {
            "naive": cleared(lambda: naive_loss_step(model, batch, "topk")),
            "ours": cleared(ours),
            "trl": cleared(trl_step),
        },
        sizes.repeats,
    )
    return {"sizes": sizes.to_dict(), "k": k, "shape": batch_shape(batch), "methods": methods}


def part_scaling(sizes: Sizes, contexts: list[int], completions: list[int]) -> dict[str, Any]:
    """The loss step (pg) at each context length (completion `sizes.completion`) and each completion
    length (context `sizes.context`)."""
    from sdpo_exp.config.schemas.loss import PGLossConfig
    from sdpo_exp.sdpo.objective import SDPOObjective

    model, tokenizer, mcfg = load_model_and_tokenizer(sizes)
    objective = SDPOObjective(model, PGLossConfig(shared_prefix=True))
    points = [("context", c, sizes.completion) for c in contexts]
    points += [("completion", sizes.context, n) for n in completions]
    results = []
    for index, (sweep, context, completion) in enumerate(points):
        point = replace(sizes, context=context, completion=completion)
        batch = build_batch(
            make_builder(tokenizer, mcfg.chat_template_kwargs, point),
            make_interactions(tokenizer, mcfg.chat_template_kwargs, point, _vocab(model, tokenizer)),
        )

        def ours(batch: Any = batch) -> float:
            out = objective(batch)
            out.loss.backward()
            model.zero_grad(set_to_none=True)
            return float(out.loss.detach())

        def naive(batch: Any = batch) -> float:
            value = naive_loss_step(model, batch, "pg")
            model.zero_grad(set_to_none=True)
            return value

        methods = alternate({"naive": naive, "ours": ours}, sizes.repeats, warmup=index == 0)
        results.append(
            {
                "sweep": sweep,
                "context": context,
                "completion": completion,
                "shape": batch_shape(batch),
                "methods": methods,
            }
        )
    return {"sizes": sizes.to_dict(), "points": results}


PARTS = {
    "step": part_step,
    "teacher": part_teacher,
    "trl": part_trl,
    "scaling": part_scaling,
    "realistic": part_realistic,
}
