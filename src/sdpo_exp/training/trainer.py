"""The offline SDPO training loop on accelerate.

One optimiser step = `accumulation` micro-batches on each of `processes` processes (see DataPlan);
each micro-batch's mean loss is weighted so that the gradient is that of the mean over the step's
examples, whatever the split across processes and micro-batches. Gradients are synchronised once
per step (no_sync on the other micro-batches), clipped, and applied; then the schedule and the
objective's teacher advance. Logging, evaluation and checkpoints happen at step boundaries, in that
order, so that a run resumed from a checkpoint repeats exactly what the uninterrupted run did next.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sdpo_exp.data.reader import ReadResult, read_interactions
from sdpo_exp.errors import ConfigError
from sdpo_exp.tasks.context import RunContext
from sdpo_exp.training.checkpoint import STATE_FILE, CheckpointManager, complete_checkpoints
from sdpo_exp.training.data_plan import DataPlan
from sdpo_exp.training.distributed import any_process, make_accelerator, shared_run_dir
from sdpo_exp.training.evaluation import evaluate
from sdpo_exp.training.examples import UsableSet, usable_interactions
from sdpo_exp.training.final_model import save_final_model
from sdpo_exp.training.geometry import batch_geometry
from sdpo_exp.training.metrics import MetricSums
from sdpo_exp.training.optim import build_optimizer, build_scheduler, check_optimizer_available, warmup_steps
from sdpo_exp.training.preemption import PreemptionWatcher
from sdpo_exp.training.progress import Progress
from sdpo_exp.training.resume import check_compatible, checkpoint_to_resume, fingerprint, truncate_metrics
from sdpo_exp.training.state import TrainerState

log = logging.getLogger(__name__)

# accelerate reports every file of every checkpoint at INFO, and warns about tied embeddings on each
# save (they are restored correctly: the tests compare every weight after resuming).
_QUIET = {"accelerate.checkpointing": logging.WARNING, "accelerate.accelerator": logging.WARNING,
          "accelerate.utils.other": logging.ERROR}  # fmt: skip


class OfflineTrainer:
    def __init__(self, cfg: DictConfig, ctx: RunContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        for name, level in _QUIET.items():
            logging.getLogger(name).setLevel(level)
        self.acc = make_accelerator(cfg.trainer)
        if not self.acc.is_main_process:  # the main process reports; the others only warn
            logging.getLogger("sdpo_exp").setLevel(logging.WARNING)
        self.run_dir = shared_run_dir(self.acc, Path(ctx.run_dir))
        self.geometry = batch_geometry(cfg.trainer, self.acc.num_processes)
        check_optimizer_available(cfg.trainer, self.acc.device)
        self.state = TrainerState()
        self.final_metrics: dict[str, float] = {}

    # -- set-up ---------------------------------------------------------------------------------
    def _read(self) -> tuple[ReadResult, ReadResult | None]:
        data = self.cfg.dataset
        if not data.get("train_path"):
            raise ConfigError(
                f"task=offline needs interaction files: dataset.train_path is not set for dataset "
                f"'{data.name}' (dataset=interactions dataset.train_path=FILE, or a prepared source)"
            )
        limit = data.get("max_total_chars")
        train = read_interactions(data.train_path, limit, data.get("max_train_records"))
        held = None
        if data.get("eval_path"):
            held = read_interactions(data.eval_path, limit, data.get("max_eval_records"))
        elif int(self.cfg.trainer.eval_every) > 0:
            raise ConfigError("trainer.eval_every > 0 needs dataset.eval_path (or set trainer.eval_every=0)")
        return train, held

    def _setup(self) -> None:
        from sdpo_exp.models import load_model, load_tokenizer
        from sdpo_exp.sdpo.batching import BatchBuilder
        from sdpo_exp.sdpo.objective import build_objective

        cfg = self.cfg
        train_read, eval_read = self._read()
        self.tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
        self.builder = BatchBuilder.from_config(cfg, self.tokenizer)
        self.train_set = usable_interactions(self.builder, train_read.interactions, self.acc, "train")
        self.eval_set: UsableSet | None = None
        if eval_read is not None:
            self.eval_set = usable_interactions(self.builder, eval_read.interactions, self.acc, "eval")
        if not self.train_set.interactions:
            raise ConfigError(f"none of the interactions in {train_read.path} fits the token limits")
        parts = [train_read.summary("data/train"), self.train_set.summary("data/train")]
        if eval_read is not None:
            parts += [eval_read.summary("data/eval"), self.eval_set.summary("data/eval")]
        self.data_metrics: dict[str, float] = {}
        for part in parts:  # the reader's and the batch builder's skip counts add up
            for key, value in part.items():
                self.data_metrics[key] = self.data_metrics.get(key, 0) + value
        self.plan = DataPlan(len(self.train_set.interactions), self.geometry, int(cfg.seed))
        self.total_steps = self.plan.total_steps(int(cfg.trainer.epochs), cfg.trainer.max_steps)
        if self.total_steps < 1:
            raise ConfigError("nothing to train: trainer.epochs and trainer.max_steps give 0 steps")

        model = load_model(
            cfg.model, cfg.paths.cache_dir, self.tokenizer, device=self.acc.device, trainable=True
        )
        optimizer = build_optimizer(model, cfg.trainer, self.acc.device)
        self.scheduler = build_scheduler(optimizer, cfg.trainer, self.total_steps)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.objective = build_objective(cfg, self.model)
        self.acc.register_for_checkpointing(self.scheduler)
        self.acc.register_for_checkpointing(self.objective)
        self.checkpoints = CheckpointManager(self.acc, self.run_dir, int(cfg.trainer.keep_last))
        self.fingerprint = fingerprint(cfg, self.geometry.global_batch)
        self._log_start()

    def _log_start(self) -> None:
        n = len(self.train_set.interactions)
        log.info("Effective batch: %s", self.geometry.describe())
        log.info(
            "%d training interactions -> %d steps per epoch, %d steps in all (warm-up %d), precision %s, "
            "%s on %s",
            n,
            self.plan.steps_per_epoch,
            self.total_steps,
            warmup_steps(self.total_steps, self.cfg.trainer.warmup_ratio),
            self.acc.mixed_precision,
            self.acc.distributed_type.value
            if hasattr(self.acc.distributed_type, "value")
            else self.acc.distributed_type,
            self.acc.device,
        )
        self.data_metrics.update(
            global_batch_size=self.geometry.global_batch,
            grad_accum_steps=self.geometry.accumulation,
            num_processes=self.geometry.processes,
            total_steps=self.total_steps,
        )
        if self.ctx.is_main_process:  # in summary.json from the start, whatever happens later
            self.ctx.tracker.log_summary(self.data_metrics)

    def _resume(self) -> None:
        self.checkpoints.remove_incomplete()
        path = checkpoint_to_resume(str(self.cfg.resume), self.run_dir)
        if path is None:
            if self.ctx.is_main_process:  # a fresh start replaces what an earlier attempt logged here
                removed = truncate_metrics(self.run_dir / "metrics.jsonl", -1)
                if removed:
                    log.warning(
                        "Starting from step 0: removed %d metrics rows of an earlier attempt", removed
                    )
            return
        saved = json.loads((path / STATE_FILE).read_text())
        check_compatible(saved.get("fingerprint", {}), self.fingerprint, path)
        if saved.get("processes") != self.geometry.processes:
            log.warning(
                "Resuming with %d processes; %s was written with %s: the data order is kept, bitwise "
                "identity with an uninterrupted run is not",
                self.geometry.processes,
                path.name,
                saved.get("processes"),
            )
        self.checkpoints.load(path)
        self.state = TrainerState.from_json(saved["trainer"])
        if self.ctx.is_main_process:
            removed = truncate_metrics(self.run_dir / "metrics.jsonl", self.state.step)
            if removed:
                log.info("Removed %d metrics rows logged after step %d", removed, self.state.step)
        log.info("Resumed from %s at step %d of %d", path, self.state.step, self.total_steps)

    # -- one step -------------------------------------------------------------------------------
    def _batch(self, indices: list[int]) -> Any:
        examples = self.train_set.interactions
        encoded = [self.builder.encode_one(examples[i]) for i in indices]
        return self.builder.collate(encoded).to(self.acc.device)

    def _train_step(self, step: int) -> dict[str, float]:
        self.model.train()
        micro_batches = self.plan.micro_batches(step, self.acc.process_index)
        sums = MetricSums()
        filler = self.plan.step_items(step)[:1]
        for i, micro in enumerate(micro_batches):
            batch = self._batch(micro.indices or filler)
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last else self.acc.no_sync(self.model)
            with sync:
                with self.acc.autocast():
                    out = self.objective(batch)
                self.acc.backward(out.loss * micro.weight)
            if not micro.indices:
                continue
            sums.add({**out.metrics, "loss": out.loss.detach()}, sequences=len(micro.indices))
            sums.count("num_interactions", len(micro.indices))
            sums.count("num_completion_tokens", int(batch.completion_mask.sum()))
            tokens = int(batch.student_attention_mask.sum()) + int(batch.teacher_attention_mask.sum())
            sums.count("num_input_tokens", tokens)
        metrics: dict[str, float] = {}
        max_norm = float(self.cfg.trainer.max_grad_norm)
        if max_norm > 0:
            grad_norm = self.acc.clip_grad_norm_(self.model.parameters(), max_norm)
            metrics["grad_norm"] = float(grad_norm)
        metrics["lr"] = float(self.scheduler.get_last_lr()[0])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.objective.on_optimizer_step()
        metrics.update(sums.reduce(self.acc))
        return metrics

    # -- the loop -------------------------------------------------------------------------------
    def _evaluate(self, step: int) -> dict[str, float]:
        if self.eval_set is None or not self.eval_set.interactions:
            return {}
        t0 = time.perf_counter()
        batch_size = int(self.cfg.task.eval_batch_size or self.cfg.trainer.per_device_batch_size)
        metrics = evaluate(
            self.objective, self.builder, self.eval_set.interactions, self.acc, batch_size, self.model
        )
        metrics["eval/seconds"] = time.perf_counter() - t0
        self.ctx.log(metrics, step)
        message = f"step {step}: eval loss {metrics.get('eval/loss', float('nan')):.4g}"
        if math.isfinite(metrics.get("eval/adv_abs_mean", float("nan"))):
            message += f", mean |A| {metrics['eval/adv_abs_mean']:.4g}"
        log.info("%s", message)
        log.debug("eval at step %d: %s", step, metrics)
        self.final_metrics.update(metrics)
        return metrics

    def _save(self, step: int) -> None:
        self.checkpoints.save(
            step,
            {
                "step": step,
                "trainer": self.state.to_json(),
                "fingerprint": self.fingerprint,
                "processes": self.geometry.processes,
                "geometry": {
                    "per_device": self.geometry.per_device,
                    "accumulation": self.geometry.accumulation,
                    "processes": self.geometry.processes,
                },
                "epoch": self.plan.epoch_of(step),
            },
        )

    def run(self) -> dict[str, float]:
        self._setup()
        self._resume()
        tcfg, task = self.cfg.trainer, self.cfg.task
        eval_every, save_every, log_every = (
            int(tcfg.eval_every),
            int(tcfg.save_every),
            max(int(tcfg.log_every), 1),
        )
        self.progress = Progress(
            self.total_steps, self.state.step, bool(task.progress_bar) and self.acc.is_main_process
        )
        last_saved = self.state.step if self.state.step > 0 else -1
        try:
            if self.state.step == 0 and bool(task.eval_at_start):
                self._evaluate(0)
            with PreemptionWatcher(bool(task.checkpoint_on_signal)) as watcher:
                while self.state.step < self.total_steps:
                    step = self.state.step
                    t0 = time.perf_counter()
                    metrics = self._train_step(step)
                    seconds = time.perf_counter() - t0
                    self._account(metrics, seconds)
                    self.state.step = step + 1
                    done = self.state.step
                    metrics["train/epoch"] = self.plan.epoch_of(done)
                    self.progress.update(metrics)
                    if done % log_every == 0 or done == self.total_steps:
                        self.ctx.log(metrics, done)
                    if eval_every > 0 and done % eval_every == 0 and done < self.total_steps:
                        self._evaluate(done)
                    stop = any_process(self.acc, watcher.triggered)
                    if (save_every > 0 and done % save_every == 0) or stop:
                        self._save(done)
                        last_saved = done
                    if stop:
                        watcher.hand_over()
            if bool(task.eval_at_end):
                self._evaluate(self.state.step)
            if save_every > 0 and last_saved != self.state.step:
                self._save(self.state.step)
        finally:
            self.progress.close()
        if bool(tcfg.save_final):
            save_final_model(self.acc, self.model, self.tokenizer, self.run_dir / "final")
        self._log_outputs()
        return self._summary()

    def _log_outputs(self) -> None:
        parts = [f"metrics {self.run_dir / 'metrics.jsonl'}", f"summary {self.run_dir / 'summary.json'}"]
        if (self.run_dir / "final").is_dir():
            parts.insert(0, f"final model {self.run_dir / 'final'}")
        found = complete_checkpoints(self.run_dir)
        if found:
            parts.append(
                f"checkpoints {', '.join(p.name for _, p in found)} in {self.run_dir / 'checkpoints'}"
            )
        log.info("Outputs: %s", "; ".join(parts))

    def _account(self, metrics: dict[str, float], seconds: float) -> None:
        tokens = metrics.pop("num_input_tokens", 0.0)
        completion = metrics.pop("num_completion_tokens", 0.0)
        samples = metrics.pop("num_interactions", 0.0)
        self.state.samples_seen += int(samples)
        self.state.tokens_seen += int(tokens)
        self.state.completion_tokens_seen += int(completion)
        self.state.train_seconds += seconds
        renamed = {f"train/{k}": v for k, v in metrics.items()}
        metrics.clear()
        metrics.update(renamed)
        metrics["train/tokens_per_s"] = tokens / seconds if seconds > 0 else 0.0
        metrics["train/completion_tokens"] = completion
        metrics["train/step_seconds"] = seconds
        metrics["train/samples_seen"] = self.state.samples_seen
        self.final_metrics.update({k: v for k, v in metrics.items() if k in ("train/loss",)})

    def _summary(self) -> dict[str, float]:
        out = {k: float(v) for k, v in self.data_metrics.items()}
        out.update(
            {
                "steps": float(self.state.step),
                "samples_seen": float(self.state.samples_seen),
                "tokens_seen": float(self.state.tokens_seen),
                "train_seconds": float(self.state.train_seconds),
            }
        )
        out.update({k: float(v) for k, v in self.final_metrics.items()})
        return out
