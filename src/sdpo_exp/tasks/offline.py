"""`task=offline`: SDPO on logged interactions (paper, Section 4.1). See `sdpo_exp.training.trainer`."""

from __future__ import annotations

from omegaconf import DictConfig

from sdpo_exp.tasks.context import RunContext


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    from sdpo_exp.training.trainer import OfflineTrainer

    return OfflineTrainer(cfg, ctx).run()
