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
