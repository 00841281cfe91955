"""The learner: the model being trained and one exact SDPO optimiser step, for every training task.

It owns the model, optimiser, learning-rate schedule, objective (with its teacher), checkpoints and
the resume fingerprint. A task drives it: it decides which interactions each step sees (logged ones
for `task=offline`, freshly sampled ones for `task=online`), when to evaluate and when to save.
`step` takes this process's interactions of one optimiser step, already split into micro-batches,
and performs the update (see `update` for why the result does not depend on the split).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.batching import BatchBuilder, SDPOBatch
from sdpo_exp.training.checkpoint import STATE_FILE, CheckpointManager
from sdpo_exp.training.distributed import gather_objects
from sdpo_exp.training.evaluation import evaluate
from sdpo_exp.training.final_model import save_final_model
from sdpo_exp.training.geometry import BatchGeometry, batch_geometry
from sdpo_exp.training.micro_batches import budget_groups, rows_over_budget
from sdpo_exp.training.optim import build_optimizer, build_scheduler, check_optimizer_available
from sdpo_exp.training.resume import LEARNER_KEYS, check_compatible, checkpoint_to_resume, fingerprint
from sdpo_exp.training.strategy import make_strategy
from sdpo_exp.training.update import accumulate_gradients

log = logging.getLogger(__name__)

# accelerate reports every file of every checkpoint at INFO, and warns about tied embeddings on each
# save (they are restored correctly: the tests compare every weight after resuming).
_QUIET = {"accelerate.checkpointing": logging.WARNING, "accelerate.accelerator": logging.WARNING,
          "accelerate.utils.other": logging.ERROR}  # fmt: skip


def split_micro_batches(items: Sequence[Any], per_device: int, accumulation: int) -> list[list[Any]]:
    """`items` cut into `accumulation` micro-batches of at most `per_device` (empty ones at the end)."""
    if len(items) > per_device * accumulation:
        raise ValueError(f"{len(items)} items do not fit {accumulation} micro-batches of {per_device}")
    return [list(items[m * per_device : (m + 1) * per_device]) for m in range(accumulation)]


class Learner:
    def __init__(
        self,
        cfg: DictConfig,
        accelerator: Any,
        builder: BatchBuilder,
        total_steps: int,
        run_dir: Path,
        fingerprint_keys: Sequence[str] = (),
        geometry: BatchGeometry | None = None,
    ) -> None:
        from sdpo_exp.models import load_model
        from sdpo_exp.sdpo.objective import build_objective

        for name, level in _QUIET.items():
            logging.getLogger(name).setLevel(level)
        self.cfg, self.acc, self.builder = cfg, accelerator, builder
        # the driver's data plan was cut from this geometry already; computed here only for a bare learner
        self.geometry: BatchGeometry = geometry or batch_geometry(cfg.trainer, accelerator.num_processes)
        check_optimizer_available(cfg.trainer, accelerator.device)
        model = load_model(
            cfg.model, cfg.paths.cache_dir, builder.tokenizer, device=accelerator.device, trainable=True
        )
        self.strategy = make_strategy(cfg.trainer, accelerator)
        self.model, self.optimizer = self.strategy.prepare(
            model, lambda m: build_optimizer(m, cfg.trainer, accelerator.device)
        )
        self.scheduler = build_scheduler(self.optimizer, cfg.trainer, total_steps)
        # Built on the freshly loaded weights: base and reference weights are these initial ones.
        self.objective = build_objective(cfg, self.model)
        self.strategy.register(scheduler=self.scheduler, objective=self.objective)
        self.checkpoints = CheckpointManager(accelerator, run_dir, int(cfg.trainer.keep_last), self.strategy)
        self.fingerprint = fingerprint(cfg, self.geometry.global_batch, (*LEARNER_KEYS, *fingerprint_keys))

    @property
    def tokenizer(self) -> Any:
        return self.builder.tokenizer

    # -- one optimiser step ------------------------------------------------------------------------
    def _batch(self, interactions: Sequence[Interaction]) -> SDPOBatch:
        return self.builder.collate([self.builder.encode_one(i) for i in interactions]).to(self.acc.device)

    def _micro_batches(
        self, micro_batches: Sequence[Sequence[Interaction]], filler: Interaction
    ) -> tuple[list[SDPOBatch], list[bool], int]:
        """The batches to run, which count (False: a weight-zero filler) and the rows over the token
        budget: the given micro-batches, or with `trainer.max_tokens_per_micro_batch` this process's
        rows regrouped by length (`micro_batches`)."""
        budget = self.cfg.trainer.get("max_tokens_per_micro_batch")
        if budget is None:
            batches = [self._batch(micro or [filler]) for micro in micro_batches]
            return batches, [bool(micro) for micro in micro_batches], 0
        encoded = [self.builder.encode_one(i) for micro in micro_batches for i in micro]
        packed = self.objective.packing
        groups = budget_groups(encoded, int(budget), packed)
        count = max(1, *gather_objects(self.acc, len(groups)))  # the same number of passes everywhere
        batches = [self.builder.collate([encoded[i] for i in g]).to(self.acc.device) for g in groups]
        batches += [self._batch([filler])] * (count - len(groups))
        counted = [True] * len(groups) + [False] * (count - len(groups))
        return batches, counted, rows_over_budget(encoded, int(budget), packed)

    def step(self, micro_batches: Sequence[Sequence[Interaction]], filler: Interaction) -> dict[str, float]:
        """One optimiser step on this process's micro-batches (the same number on every process; an
        empty one runs `filler` with weight zero). Returns the step's metrics over all processes."""
        self.model.train()
        batches, counted, over_budget = self._micro_batches(micro_batches, filler)
        sums = accumulate_gradients(self.acc, self.model, self.objective, batches, counted)
        if self.cfg.trainer.get("max_tokens_per_micro_batch") is not None:
            sums.count("num_micro_batches", sum(counted))
            sums.count("rows_over_token_budget", over_budget)
        metrics: dict[str, float] = {}
        max_norm = float(self.cfg.trainer.max_grad_norm)
        if max_norm > 0:
            metrics["grad_norm"] = self.strategy.clip_grad_norm(self.model, max_norm)
        metrics["lr"] = float(self.scheduler.get_last_lr()[0])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.objective.on_optimizer_step()
        metrics.update(sums.reduce(self.acc))
        return metrics

    def evaluate(self, interactions: Sequence[Interaction], batch_size: int) -> dict[str, float]:
        """`eval/<metric>` of the objective on `interactions`, without gradients, over all processes."""
        return evaluate(self.objective, self.builder, list(interactions), self.acc, batch_size, self.model)

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self, step: int, task_state: dict[str, Any]) -> Path:
        """A checkpoint of everything the learner owns plus the task's own state (JSON)."""
        state = {
            **task_state,
            "step": step,
            "fingerprint": self.fingerprint,
            "processes": self.geometry.processes,
            "geometry": {
                "per_device": self.geometry.per_device,
                "accumulation": self.geometry.accumulation,
                "processes": self.geometry.processes,
            },
        }
        return self.checkpoints.save(step, state)

    def resume(self, resume: str, run_dir: Path) -> dict[str, Any] | None:
        """Load the checkpoint `resume` names (auto, never, or a path) and return the state saved with
        it; None when the run starts from scratch."""
        self.checkpoints.remove_incomplete()
        path = checkpoint_to_resume(str(resume), run_dir)
        if path is None:
            return None
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
        saved["path"] = str(path)
        return saved

    def save_final(self, target: Path) -> Path:
        return save_final_model(self.acc, self.model, self.tokenizer, target, self.strategy)
