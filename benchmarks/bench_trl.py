"""TRL's SDPO loss path (`trl.experimental.sdpo`, from the optional `bench` extra) on an `SDPOBatch`.

Building TRL's `SDPOTrainer` needs a dataset, generation and reward functions; its loss path does
not. `make_trl_step` calls the trainer's own methods `_compute_teacher_student_logits` (student and
teacher forwards keeping the logits of the completion positions) and `_compute_self_distillation_loss`
on a stand-in for the trainer that carries only the settings they read: top-K logits with a tail
bucket, K, alpha 1 (reverse KL), temperature 1. Inputs follow TRL's layout: left-padded prompts,
then right-padded completions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

SKIP = "TRL with `trl.experimental.sdpo` is not installed (pip install -e '.[bench]'): the TRL comparison is skipped"


def trl_missing() -> str | None:
    """None when TRL's SDPO trainer imports, else why the comparison is skipped."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        import trl.experimental.sdpo.sdpo_trainer  # noqa: F401
    except ImportError as exc:
        return f"{SKIP} ({exc})"
    return None


def _left_padded(rows: list[Any], pad_id: int = 0) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = row
        mask[i, width - len(row) :] = 1
    return ids, mask


def trl_inputs(batch: Any) -> dict[str, Any]:
    """TRL's training inputs for the same contexts and completions as `batch`."""
    import torch

    prompts = [batch.student_input_ids[b, : int(n)] for b, n in enumerate(batch.student_prompt_lens)]
    teachers = [batch.teacher_input_ids[b, : int(n)] for b, n in enumerate(batch.teacher_prompt_lens)]
    prompt_ids, prompt_mask = _left_padded(prompts)
    teacher_ids, teacher_mask = _left_padded(teachers)
    completion_mask = batch.completion_mask.long()
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": batch.completion_ids,
        "completion_mask": completion_mask,
        "teacher_input_ids": torch.cat([teacher_ids, batch.completion_ids], dim=1),
        "teacher_attention_mask": torch.cat([teacher_mask, completion_mask], dim=1),
    }


def make_trl_step(model: Any, batch: Any, k: int) -> Callable[[], float]:
    """One loss step (teacher and student passes, loss, backward) through TRL's code; returns the loss."""
    from trl.experimental.sdpo.sdpo_trainer import SDPOTrainer

    args = SimpleNamespace(
        distillation_mode="topk_logits",
        distillation_topk=k,
        distillation_alpha=1.0,
        distillation_add_tail=True,
        distillation_is_clip=None,
    )
    trainer = SimpleNamespace(
        args=args,
        temperature=1.0,
        model_kwarg_keys={"input_ids", "attention_mask", "logits_to_keep", "use_cache"},
        accelerator=SimpleNamespace(gather=lambda x: x),
        _log_self_distillation_metric=lambda *_: None,
        _get_teacher_context_for_self_distillation=contextlib.nullcontext,
    )
    trainer._forward_logits = partial(SDPOTrainer._forward_logits, trainer)
    inputs = trl_inputs(batch)

    def step() -> float:
        logits = SDPOTrainer._compute_teacher_student_logits(trainer, model, model, inputs)
        loss = SDPOTrainer._compute_self_distillation_loss(trainer, model, inputs, logits)
        loss.backward()
        return float(loss.detach())

    return step


def _no_reward(prompts: list[Any], **_: Any) -> list[float]:
    return [0.0] * len(prompts)


def make_trl_trainer_step(
    model: Any,
    tokenizer: Any,
    rows: int,
    micro_batches: int,
    max_completion: int,
    optimizer: Any,
    scheduler: Any,
    lr: float,
    max_grad_norm: float,
    output_dir: str,
) -> tuple[Callable[[Any], float], dict[str, Any]]:
    """TRL's whole SDPO training step on the rows of an `SDPOBatch`, split into `micro_batches`.

    A real `SDPOTrainer` (self-distillation only: `distillation_weight=1`, `sampled_token` with
    reverse KL, the `pg` loss of this project; live teacher; no autocast; no logging or saving) with
    `optimizer` and `scheduler`, the same kind as the other methods'. Its rollout stage (sampling,
    rewards, building the teacher contexts: `_prepare_training_batch`) is replaced by the
    pre-generated batch laid out as TRL lays out a generation batch (left-padded prompts, right-padded
    completions, all rows of the step padded together); TRL's own `_prepare_inputs` splits it into
    the micro-batches. The step is the body of transformers' training loop: `training_step` (compute
    loss, backward) per micro-batch, gradient clipping, optimiser and scheduler step, `zero_grad`.
    Returns the step (a function of the batch; it returns the step's loss) and the settings.
    """
    from datasets import Dataset
    from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

    if rows % micro_batches:
        raise ValueError(f"{rows} rows do not split into {micro_batches} equal micro-batches")
    args = SDPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=rows // micro_batches,
        gradient_accumulation_steps=micro_batches,
        num_generations=1,
        learning_rate=lr,
        max_grad_norm=max_grad_norm,
        lr_scheduler_type="constant",
        distillation_mode="sampled_token",
        distillation_alpha=1.0,
        distillation_weight=1.0,
        teacher_model_kind="live",
        max_completion_length=max_completion,
        temperature=1.0,
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to="none",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        dataloader_num_workers=0,
        seed=0,
    )
    dataset = Dataset.from_list([{"prompt": f"p{i}"} for i in range(rows)])
    trainer = SDPOTrainer(
        model=model,
        reward_funcs=[_no_reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        optimizers=(optimizer, scheduler),
    )
    current: dict[str, Any] = {}
    trainer._prepare_training_batch = lambda _generation_batch: dict(current)  # pre-generated rollouts
    trainer.current_gradient_accumulation_steps = micro_batches

    def step(batch: Any) -> float:
        current.clear()
        current.update(trl_inputs(batch))
        placeholder = [{"prompt": f"p{i}"} for i in range(len(batch))]
        model.train()
        total = 0.0
        for i in range(micro_batches):
            sync = contextlib.nullcontext() if i == micro_batches - 1 else trainer.accelerator.no_sync(model)
            with sync:
                total += float(trainer.training_step(model, placeholder, None))
        if args.max_grad_norm > 0:
            trainer._clip_grad_norm(model)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad()
        trainer.state.global_step += 1
        return total

    settings = {
        "distillation_mode": args.distillation_mode,
        "distillation_alpha": args.distillation_alpha,
        "distillation_weight": args.distillation_weight,
        "teacher_model_kind": args.teacher_model_kind,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
    }
    return step, settings


def trl_padded_positions(batch: Any) -> int:
    """Token positions (padding included) of TRL's layout of `batch` as one generation batch."""
    inputs = trl_inputs(batch)
    return int(
        inputs["prompt_ids"].numel() + inputs["completion_ids"].numel() + inputs["teacher_input_ids"].numel()
    )
