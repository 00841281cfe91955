"""SDPOObjective: one student + teacher loss step on an SDPOBatch, as the `loss` config describes.

Per call: the teacher pass(es) on (x, o) under torch.no_grad with dropout off, then the student pass
on x with gradient; log-probs and divergences are computed chunk by chunk at completion positions
only (see `logprobs`). With `loss.shared_prefix` the student pass (and the `kl_to_ref` reference
pass) runs first and records the keys/values of the context x shares with (x, o); a teacher with the
same weights then computes only its suffix (see `prefix` and `teacher`). On its own, a batch's loss
is `LossOutput.loss`; a training step that spans several micro-batches or processes divides
`LossOutput.loss_sum` by the step's total of `loss_units` instead (see `losses`). The caller calls
`on_optimizer_step()` after each optimiser step (EMA teacher). Build the objective on the freshly
loaded initial model, before loading checkpoint weights into it: base and reference weights are the
weights it sees then.
"""

from __future__ import annotations

import dataclasses
import logging
from enum import Enum
from typing import Any

import torch
from torch import nn

from sdpo_exp.config.values import loss_checks
from sdpo_exp.errors import ConfigError
from sdpo_exp.sdpo import losses
from sdpo_exp.sdpo.batching import SDPOBatch
from sdpo_exp.sdpo.distillation import chunked_divergence
from sdpo_exp.sdpo.divergences import make_divergence
from sdpo_exp.sdpo.logprobs import LogitHead, check_alignment, chunked_token_logprobs, scatter_to_rows
from sdpo_exp.sdpo.packing import PackedPrefix, context_hidden_states, packing_problem
from sdpo_exp.sdpo.prefix import PrefixKV, reuse_problem, shared_prefix_lengths
from sdpo_exp.sdpo.sharding import is_sharded
from sdpo_exp.sdpo.teacher import (
    CURRENT,
    INITIAL,
    BaseTeacher,
    EMATeacher,
    InitialWeights,
    Teacher,
    TrustRegionTeacher,
    eval_mode,
)

log = logging.getLogger(__name__)

Prefix = PrefixKV | PackedPrefix

LOSSES = ("pg", "topk", "full_kl", "jsd", "sft")
DIVERGENCE_LOSSES = ("topk", "full_kl", "jsd")


def _value(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    value = getattr(cfg, key, default) if not hasattr(cfg, "get") else cfg.get(key, default)
    return _value(value)


def validate_loss_config(cfg: Any) -> None:
    """The loss name and the ranges of its options (`config.values`); raises ConfigError naming the key."""
    name = str(cfg.name)
    if name not in LOSSES:
        raise ConfigError(f"loss.name={name!r} is not one of {LOSSES}")
    loss_checks(cfg)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class SDPOObjective:
    """The configured loss with its teacher; see the module docstring for the calling protocol."""

    def __init__(
        self, model: nn.Module, loss_cfg: Any, chunk_size: int | None = None, packing: bool = False
    ) -> None:
        validate_loss_config(loss_cfg)
        self.model = model
        self.cfg = loss_cfg
        self.name = str(loss_cfg.name)
        self.chunk_size = int(chunk_size or loss_cfg.chunk_size)
        self.length_norm = str(_get(loss_cfg, "length_norm", "token"))
        self.beta = float(loss_cfg.kl_to_ref_beta)
        kind = str(_value(loss_cfg.teacher.kind))
        needs_initial = self.beta > 0 or (self.name != "sft" and kind in ("base", "trust_region"))
        if needs_initial or (self.name != "sft" and kind == "ema"):
            try:  # other weights' heads are captured as tensors: the LM head must be a plain Linear
                LogitHead.of(model).frozen()
            except ValueError as exc:
                raise ConfigError(f"loss.teacher.kind={kind} / loss.kl_to_ref_beta: {exc}") from None
        self.initial = InitialWeights(model) if needs_initial else None
        self.teacher = None if self.name == "sft" else self._build_teacher(kind)
        self.divergence, self.temperature = (
            make_divergence(loss_cfg) if self.name in DIVERGENCE_LOSSES else (None, 1.0)
        )
        self.shared_prefix = bool(_get(loss_cfg, "shared_prefix", False)) and self.teacher is not None
        self.packing = bool(packing)
        if self.packing and (problem := packing_problem(model, self.shared_prefix)) is not None:
            log.warning("trainer.packing: %s; padded passes", problem)
            self.packing = False
        self._reported: set[tuple[str, str]] = set()
        log.info(
            "SDPO objective: loss=%s teacher=%s kl_to_ref_beta=%g chunk_size=%d shared_prefix=%s packing=%s",
            self.name,
            "none" if self.teacher is None else self.teacher.kind,
            self.beta,
            self.chunk_size,
            self.shared_prefix,
            self.packing,
        )

    def _build_teacher(self, kind: str) -> Teacher:
        if kind == "live":
            return Teacher()
        if kind == "ema":
            return EMATeacher(self.model, self.cfg.teacher.ema_rate)
        if kind == "base":
            return BaseTeacher(self.initial)
        if kind == "trust_region":
            return TrustRegionTeacher(self.initial, self.cfg.teacher.trust_region_r)
        raise ConfigError(f"unknown loss.teacher.kind={kind!r}")

    # -- one step -------------------------------------------------------------------------------
    def __call__(self, batch: SDPOBatch) -> losses.LossOutput:
        model = self.model
        device = _model_device(model)
        if batch.student_input_ids.device != device:
            batch = batch.to(device)
        mask = batch.completion_mask
        targets = batch.completion_ids[mask]
        check_alignment(batch.student_input_ids, batch.student_prompt_lens, batch.completion_ids, mask)
        check_alignment(batch.teacher_input_ids, batch.teacher_prompt_lens, batch.completion_ids, mask)

        if self.packing and not batch.packed:
            batch = dataclasses.replace(batch, packed=True)
        lengths = self._prefix_lengths(batch)
        hidden, prefixes = None, {}
        if lengths is not None and CURRENT in self.teacher.prefix_weights():
            if self._reusable(model.training, "the student's forward") is None:
                hidden, prefixes[CURRENT] = self._context_pass(model, batch, lengths)

        teacher_mix, teacher_tok, ref_tok = None, None, None
        with torch.no_grad(), eval_mode(model):
            if self.beta > 0:
                record = lengths is not None and INITIAL in self.teacher.prefix_weights()
                ref_tok, prefixes[INITIAL] = self._reference_logprobs(
                    batch, targets, lengths if record else None
                )
            if self.teacher is not None:
                teacher_mix = self.teacher.mixture(
                    model, batch, {k: v for k, v in prefixes.items() if v is not None}
                )
                if self.divergence is None:
                    teacher_tok = teacher_mix.token_logprobs(targets, self.chunk_size)
        del prefixes

        if hidden is None:
            hidden, _ = self._context_pass(model, batch)
        head = LogitHead.of(model)
        divergence = None
        if self.divergence is not None:
            div_tok, student_det, teacher_tok = chunked_divergence(
                hidden, head, teacher_mix, targets, self.divergence, self.temperature, self.chunk_size
            )
            divergence = scatter_to_rows(div_tok, mask)
            student = scatter_to_rows(student_det, mask)
            if self.beta > 0:  # the reference penalty needs differentiable log-probs of y
                student = scatter_to_rows(
                    chunked_token_logprobs(hidden, head, targets, self.chunk_size), mask
                )
        else:
            student = scatter_to_rows(chunked_token_logprobs(hidden, head, targets, self.chunk_size), mask)
        teacher = scatter_to_rows(teacher_tok, mask) if teacher_tok is not None else None
        return self._assemble(batch, student, teacher, divergence, ref_tok)

    def _reference_logprobs(
        self, batch: SDPOBatch, targets: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Prefix | None]:
        """Log-probs of y under x with the initial weights and, given prefix `lengths`, the prefix
        keys/values that pass recorded (for a teacher with the initial weights)."""
        with self.initial.active():
            if lengths is not None and self._reusable(False, "the reference pass") is not None:
                lengths = None
            hidden, prefix = self._context_pass(self.model, batch, lengths)
            head = LogitHead.of(self.model).frozen(copy=is_sharded(self.model))
        return chunked_token_logprobs(hidden, head, targets, self.chunk_size), prefix

    @staticmethod
    def _context_pass(
        model: nn.Module, batch: SDPOBatch, record: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Prefix | None]:
        """(N, H) hidden states at x's completion positions (and, given P_b, the recorded prefix)."""
        return context_hidden_states(
            model,
            batch.student_input_ids,
            batch.student_attention_mask,
            batch.student_prompt_lens,
            batch.completion_mask,
            batch.packed,
            record,
        )

    # -- shared prefix ---------------------------------------------------------------------------
    def _prefix_lengths(self, batch: SDPOBatch) -> torch.Tensor | None:
        """P_b per row when the shared-prefix teacher pass is on and some row has a prefix, else None."""
        if not self.shared_prefix or not self.teacher.prefix_weights():
            return None
        lengths = shared_prefix_lengths(
            batch.student_input_ids,
            batch.student_prompt_lens,
            batch.teacher_input_ids,
            batch.teacher_prompt_lens,
        )
        return lengths if int(lengths.max()) > 0 else None

    def _reusable(self, training: bool, source: str) -> str | None:
        """None when keys/values recorded by `source` can serve the teacher; else why not (logged once)."""
        problem = reuse_problem(self.model, training)
        if problem is not None and (source, problem) not in self._reported:
            self._reported.add((source, problem))
            log.warning(
                "loss.shared_prefix: %s cannot share its prefix (%s); plain teacher pass", source, problem
            )
        return problem

    def term_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The positions that carry loss terms: the completion mask, without the first
        `ignore_first_k` positions of each sequence for pg."""
        if self.name == "pg":
            return losses.loss_mask(mask, int(self.cfg.ignore_first_k))
        return mask

    def loss_units(self, batch: SDPOBatch) -> float:
        """This batch's share of the step's loss denominator, from its masks alone (no forward): the
        caller sums it over the step's micro-batches and processes before the first backward."""
        mask = self.term_mask(batch.completion_mask)
        return float(losses.normaliser_units(mask, self.length_norm).sum())

    def _assemble(
        self,
        batch: SDPOBatch,
        student: torch.Tensor,
        teacher: torch.Tensor | None,
        divergence: torch.Tensor | None,
        ref_tok: torch.Tensor | None,
    ) -> losses.LossOutput:
        mask = batch.completion_mask
        metrics: dict[str, float] = {}
        advantages = None if teacher is None else losses.advantages(teacher, student, mask)
        term_mask = self.term_mask(mask)
        weights = None
        if batch.sampler_logprobs is not None:
            weights, is_metrics = losses.importance_weights(
                student.detach(), batch.sampler_logprobs.to(student.device), mask, _get(self.cfg, "is_clip")
            )
            metrics.update(is_metrics)
        if self.name == "pg":
            clip = _get(self.cfg, "clip_advantages")
            shaped = losses.shape_advantages(
                advantages, term_mask, bool(self.cfg.center_advantages), None if clip is None else float(clip)
            )
            if weights is not None:
                shaped = shaped * weights
            per_sequence = losses.pg_loss(student, shaped, term_mask, self.length_norm)
            if clip is not None and bool(term_mask.any()):
                metrics["adv_clip_frac"] = float((shaped[term_mask].abs() >= float(clip)).double().mean())
            if int(self.cfg.ignore_first_k) > 0:
                metrics["num_sequences_without_loss_tokens"] = float((~term_mask.any(dim=1)).sum())
        elif self.name == "sft":
            per_sequence = losses.sft_loss(student, mask, self.length_norm)
        else:
            if weights is not None:
                divergence = divergence * weights
            per_sequence = losses.divergence_loss(divergence, mask, self.length_norm)
            metrics["kl_mean"] = float(divergence.detach()[mask].double().mean()) if bool(mask.any()) else 0.0
        if ref_tok is not None:
            ref = scatter_to_rows(ref_tok, mask)
            per_sequence = per_sequence + self.beta * losses.kl_to_ref_penalty(
                student, ref, term_mask, self.length_norm
            )
            metrics["ref_kl_k1_mean"] = float((student.detach() - ref)[term_mask].double().mean())
        units = float(losses.normaliser_units(term_mask, self.length_norm).sum())
        loss_sum = per_sequence.sum()
        loss = loss_sum / max(units, 1.0)
        eos = losses.eos_positions(mask, batch.completion_ended)
        metrics.update(losses.signal_metrics(student.detach(), teacher, mask, eos))
        metrics.update(
            loss_sum=float(loss_sum.detach()),
            loss_units=units,
            completions_truncated=float(batch.completions_truncated),
            context_messages_dropped=float(batch.context_messages_dropped),
        )
        return losses.LossOutput(
            loss=loss,
            loss_sum=loss_sum,
            units=units,
            metrics=metrics,
            student_logprobs=student.detach(),
            teacher_logprobs=torch.zeros_like(student.detach()) if teacher is None else teacher.detach(),
            advantages=advantages,
            per_sequence=per_sequence,
        )

    # -- training-loop hooks ---------------------------------------------------------------------
    def on_optimizer_step(self) -> None:
        """Call after every optimiser step (updates an EMA teacher)."""
        if self.teacher is not None:
            self.teacher.on_optimizer_step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "loss": self.name,
            "teacher": {} if self.teacher is None else self.teacher.state_dict(),
            "initial": {} if self.initial is None else self.initial.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.initial is not None:
            self.initial.check(state.get("initial", {}))
        if self.teacher is not None:
            self.teacher.load_state_dict(state.get("teacher", {}))


def build_objective(cfg: Any, model: nn.Module) -> SDPOObjective:
    """The objective for the composed run config (reads cfg.loss and cfg.trainer.packing)."""
    trainer = cfg.get("trainer") if hasattr(cfg, "get") else None
    packing = bool(trainer.get("packing", False)) if trainer is not None else False
    return SDPOObjective(model, cfg.loss, packing=packing)
