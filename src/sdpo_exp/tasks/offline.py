"""`task=offline`: SDPO on logged interactions (paper, Section 4.1).

For each optimiser step of the data plan: take the step's logged interactions (x, y, o), let the
learner score y under x and under the hindsight context (x, o) and update the policy with the
token-level signal. Evaluate on held-out interactions every `trainer.eval_every` steps, checkpoint
every `trainer.save_every` steps (and on preemption), write the final model.

Logging, evaluation and checkpoints happen at step boundaries, in that order, so that a run resumed
from a checkpoint repeats exactly what the uninterrupted run did next.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from omegaconf import DictConfig

from sdpo_exp.data.reader import ReadResult, read_interactions
from sdpo_exp.errors import ConfigError, DataError
from sdpo_exp.tasks.context import RunContext
from sdpo_exp.training.checkpoint import complete_checkpoints
from sdpo_exp.training.data_plan import DataPlan
from sdpo_exp.training.distributed import (
    any_process,
    distribution_words,
    make_accelerator,
    precision_words,
    shared_run_dir,
)
from sdpo_exp.training.examples import UsableSet, usable_interactions
from sdpo_exp.training.geometry import BatchGeometry, batch_geometry
from sdpo_exp.training.learner import Learner
from sdpo_exp.training.optim import warmup_steps
from sdpo_exp.training.preemption import PreemptionWatcher
from sdpo_exp.training.progress import Progress, progress_line
from sdpo_exp.training.resume import truncate_metrics
from sdpo_exp.training.state import TrainerState

log = logging.getLogger(__name__)

# The data this task trains on: a resumed run must read the same.
DATA_KEYS = ("dataset.train_path", "dataset.max_train_records", "dataset.max_total_chars")


def effective_geometry(geometry: BatchGeometry) -> dict[str, int]:
    """The batch settings the run uses, whichever of them the config derived."""
    return {
        "trainer.per_device_batch_size": geometry.per_device,
        "trainer.grad_accum_steps": geometry.accumulation,
        "trainer.global_batch_size": geometry.global_batch,
        "num_processes": geometry.processes,
    }


def read_data(cfg: DictConfig) -> tuple[ReadResult, ReadResult | None]:
    data = cfg.dataset
    if not data.get("train_path"):
        raise ConfigError(
            f"task=offline needs interaction files: dataset.train_path is not set for dataset "
            f"'{data.name}' (dataset=interactions dataset.train_path=FILE, or a prepared source)"
        )
    limit = data.get("max_total_chars")
    _prepared_or_explain(data, data.train_path)
    train = read_interactions(data.train_path, limit, data.get("max_train_records"))
    eval_path = data.get("eval_path")
    prepared_split = Path(str(data.output_dir)) / "eval.jsonl" if data.get("output_dir") else None
    if (
        not eval_path
        and prepared_split is not None
        and prepared_split.is_file()
        and prepared_split.stat().st_size
    ):
        eval_path = str(prepared_split)
        log.info("Evaluating on the held-out split that task=prepare wrote: %s", eval_path)
    held = None
    if eval_path:
        held = read_interactions(eval_path, limit, data.get("max_eval_records"))
    elif int(cfg.trainer.eval_every) > 0:
        raise ConfigError("trainer.eval_every > 0 needs dataset.eval_path (or set trainer.eval_every=0)")
    return train, held


def _prepared_or_explain(data: DictConfig, path: str) -> None:
    """A missing file of a source that `task=prepare` makes: say which command makes it."""
    from sdpo_exp.data.sources import PREPARERS

    if data.name in PREPARERS and not Path(str(path)).exists():
        raise DataError(
            f"{Path(str(path)).resolve()} does not exist: prepare it first with "
            f"`python run.py task=prepare dataset={data.name}` (it writes {Path(str(data.output_dir)).resolve()}/)"
        )


class OfflineRun:
    def __init__(self, cfg: DictConfig, ctx: RunContext) -> None:
        from sdpo_exp.models import load_tokenizer
        from sdpo_exp.sdpo.batching import BatchBuilder

        self.cfg, self.ctx = cfg, ctx
        self.acc = make_accelerator(cfg.trainer)
        if not self.acc.is_main_process:  # the main process reports; the others only warn
            logging.getLogger("sdpo_exp").setLevel(logging.WARNING)
        self.run_dir = shared_run_dir(self.acc, Path(ctx.run_dir))
        train_read, eval_read = read_data(cfg)
        builder = BatchBuilder.from_config(cfg, load_tokenizer(cfg.model, cfg.paths.cache_dir))
        self.train = usable_interactions(builder, train_read.interactions, self.acc, "train")
        if not self.train.interactions:
            raise ConfigError(f"none of the interactions in {train_read.path} fits the token limits")
        self.held: UsableSet | None = None
        parts = [train_read.summary("data/train"), self.train.summary("data/train")]
        if eval_read is not None:
            self.held = usable_interactions(builder, eval_read.interactions, self.acc, "eval")
            parts += [eval_read.summary("data/eval"), self.held.summary("data/eval")]
        self.data_metrics: dict[str, float] = {}
        for part in parts:  # the reader's and the batch builder's skip counts add up
            for key, value in part.items():
                self.data_metrics[key] = self.data_metrics.get(key, 0) + value

        geometry = batch_geometry(cfg.trainer, self.acc.num_processes)
        self.plan = DataPlan(len(self.train.interactions), geometry, int(cfg.seed))
        self.total_steps = self.plan.total_steps(int(cfg.trainer.epochs), cfg.trainer.max_steps)
        if self.total_steps < 1:
            raise ConfigError("nothing to train: trainer.epochs and trainer.max_steps give 0 steps")
        self.learner = Learner(cfg, self.acc, builder, self.total_steps, self.run_dir, DATA_KEYS, geometry)
        self.state = TrainerState()
        self.final_metrics: dict[str, float] = {}
        self._log_start()

    def _log_start(self) -> None:
        geometry = self.learner.geometry
        log.info("Effective batch: %s", geometry.describe())
        log.info(
            "%d training interactions -> %d steps per epoch, %d steps in all (warm-up %d), %s, %s on %s",
            len(self.train.interactions),
            self.plan.steps_per_epoch,
            self.total_steps,
            warmup_steps(self.total_steps, self.cfg.trainer.warmup_ratio),
            precision_words(self.acc.mixed_precision),
            distribution_words(self.acc, self.learner.strategy.name.value),
            self.acc.device,
        )
        self.data_metrics.update(
            global_batch_size=geometry.global_batch,
            grad_accum_steps=geometry.accumulation,
            num_processes=geometry.processes,
            total_steps=self.total_steps,
        )
        if self.ctx.is_main_process:  # in summary.json from the start, whatever happens later
            self.ctx.tracker.log_summary(self.data_metrics)
            self.ctx.tracker.update_config(effective_geometry(geometry))

    def _resume(self) -> None:
        saved = self.learner.resume(str(self.cfg.resume), self.run_dir)
        step = -1 if saved is None else int(saved["step"])
        if saved is not None:
            self.state = TrainerState.from_json(saved["trainer"])
            log.info("Resumed from %s at step %d of %d", saved["path"], self.state.step, self.total_steps)
        if self.ctx.is_main_process:  # rows logged after the checkpoint (or by an earlier fresh start)
            removed = truncate_metrics(self.run_dir / "metrics.jsonl", step)
            if removed:
                log.warning(
                    "Removed %d metrics rows logged after step %d by an earlier attempt",
                    removed,
                    max(step, 0),
                )

    # -- the algorithm -------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        """One optimiser step on the logged interactions the data plan assigns to it."""
        examples = self.train.interactions
        micro = self.plan.micro_batches(step, self.acc.process_index)
        filler = examples[self.plan.step_items(step)[0]]
        return self.learner.step([[examples[i] for i in indices] for indices in micro], filler)

    def evaluate(self, step: int) -> None:
        if self.held is None or not self.held.interactions:
            return
        t0 = time.perf_counter()
        batch_size = int(self.cfg.task.eval_batch_size or self.cfg.trainer.per_device_batch_size)
        metrics = self.learner.evaluate(self.held.interactions, batch_size)
        metrics["eval/seconds"] = time.perf_counter() - t0
        self.ctx.log(metrics, step)
        message = f"step {step}: eval loss {metrics.get('eval/loss', float('nan')):.4g}"
        if math.isfinite(metrics.get("eval/adv_abs_mean", float("nan"))):
            message += f", mean |A| {metrics['eval/adv_abs_mean']:.4g}"
        log.info("%s", message)
        self.final_metrics.update(metrics)

    def save(self, step: int) -> None:
        self.learner.save(step, {"trainer": self.state.to_json(), "epoch": self.plan.epoch_of(step)})

    def run(self) -> dict[str, float]:
        self._resume()
        tcfg, task = self.cfg.trainer, self.cfg.task
        eval_every, save_every = int(tcfg.eval_every), int(tcfg.save_every)
        log_every = max(int(tcfg.log_every), 1)
        progress = Progress(
            self.total_steps, self.state.step, bool(task.progress_bar) and self.acc.is_main_process
        )
        last_saved = self.state.step if self.state.step > 0 else -1
        start_step, seconds_before = self.state.step, self.state.train_seconds
        try:
            if self.state.step == 0 and bool(task.eval_at_start):
                self.evaluate(0)
            with PreemptionWatcher(bool(task.checkpoint_on_signal)) as watcher:
                while self.state.step < self.total_steps:
                    t0 = time.perf_counter()
                    metrics = self.train_step(self.state.step)
                    metrics = self._account(metrics, time.perf_counter() - t0)
                    done = self.state.step = self.state.step + 1
                    metrics["train/epoch"] = self.plan.epoch_of(done)
                    progress.update(metrics)
                    if done % log_every == 0 or done == self.total_steps:
                        self.ctx.log(metrics, done)
                        per_step = (self.state.train_seconds - seconds_before) / max(done - start_step, 1)
                        log.info("%s", progress_line(done, self.total_steps, "step", metrics, per_step))
                    if eval_every > 0 and done % eval_every == 0 and done < self.total_steps:
                        self.evaluate(done)
                    stop = any_process(self.acc, watcher.triggered)
                    if (save_every > 0 and done % save_every == 0) or stop:
                        self.save(done)
                        last_saved = done
                    if stop:
                        watcher.stop()
            if bool(task.eval_at_end):
                self.evaluate(self.state.step)
            if save_every > 0 and last_saved != self.state.step:
                self.save(self.state.step)
        finally:
            progress.close()
        if bool(tcfg.save_final):
            self.learner.save_final(self.run_dir / "final")
        self._log_outputs()
        return self._summary()

    # -- bookkeeping ----------------------------------------------------------------------------------
    def _account(self, metrics: dict[str, float], seconds: float) -> dict[str, float]:
        tokens = metrics.pop("num_input_tokens", 0.0)
        completion = metrics.pop("num_completion_tokens", 0.0)
        self.state.samples_seen += int(metrics.pop("num_interactions", 0.0))
        self.state.tokens_seen += int(tokens)
        self.state.completion_tokens_seen += int(completion)
        self.state.train_seconds += seconds
        out = {f"train/{k}": v for k, v in metrics.items()}
        out.update(
            {
                "train/tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
                "train/completion_tokens": completion,
                "train/step_seconds": seconds,
                "train/samples_seen": self.state.samples_seen,
            }
        )
        if "train/loss" in out:
            self.final_metrics["train/loss"] = out["train/loss"]
        return out

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

    def _summary(self) -> dict[str, float]:
        out: dict[str, float] = dict(self.data_metrics)  # counts stay integers
        out.update(
            steps=self.state.step,
            samples_seen=self.state.samples_seen,
            tokens_seen=self.state.tokens_seen,
            train_seconds=float(self.state.train_seconds),
        )
        out.update(self.final_metrics)
        return out


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    return OfflineRun(cfg, ctx).run()
