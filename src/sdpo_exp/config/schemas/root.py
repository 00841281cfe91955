"""The root schema: the composed run config, typed node by node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from sdpo_exp.config.schemas.benchmark import BenchmarkSuiteConfig
from sdpo_exp.config.schemas.generation import GenerationConfig
from sdpo_exp.config.schemas.logger import LoggerConfig
from sdpo_exp.config.schemas.loss import HindsightConfig
from sdpo_exp.config.schemas.model import ModelConfig
from sdpo_exp.config.schemas.trainer import TrainerConfig
from sdpo_exp.config.schemas.user import UserProfileConfig


@dataclass
class PathsConfig:
    output_root: str = "outputs"
    # converted models and other derived artefacts; never inside the repository
    cache_dir: str = "${oc.env:SDPO_CACHE_DIR,${oc.env:HOME,/tmp}/.cache/sdpo-exp}"
    # prepared datasets; a relative path is relative to the project root (not the working directory)
    data_dir: str = "data"


@dataclass
class RootConfig:
    # Polymorphic groups: each option file brings its own schema (/schema/<group>/<name>).
    task: Any = MISSING
    dataset: Any = MISSING
    loss: Any = MISSING
    simulator: Any = MISSING
    judge: Any = MISSING
    # Monomorphic groups, typed here.
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    user_profile: UserProfileConfig = field(default_factory=UserProfileConfig)
    hindsight: HindsightConfig = field(default_factory=HindsightConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    benchmark: BenchmarkSuiteConfig = field(default_factory=BenchmarkSuiteConfig)
    # Run-level settings.
    seed: int = 1234
    resume: str = "auto"  # auto: continue from the newest complete checkpoint in the run directory; never
    experiment_name: str | None = None
    tags: list[str] = field(default_factory=list)
    # When set, run.py returns this final metric as a float (for sweepers such as Optuna).
    optimized_metric: str | None = None
