"""Shared fixtures: the config tree, the model cache, tiny and real models, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
CACHE_DIR = Path(os.environ.get("SDPO_CACHE_DIR", Path.home() / ".cache" / "sdpo-exp"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    return CONF_DIR


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return CACHE_DIR


@pytest.fixture(scope="session")
def compose() -> Callable[..., DictConfig]:
    from sdpo_exp.config.check import compose_config

    def _compose(*overrides: str) -> DictConfig:
        return compose_config(CONF_DIR, [*overrides, f"paths.cache_dir={CACHE_DIR}"])

    return _compose


def model_cfg(name: str, **updates: object) -> DictConfig:
    from sdpo_exp.config.schemas.model import ModelConfig

    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    )
    for key, value in updates.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from sdpo_exp.models import load_tokenizer

    return load_tokenizer(model_cfg("tiny_random"), CACHE_DIR)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from sdpo_exp.models import load_tokenizer

    return load_tokenizer(model_cfg("smollm2_135m"), CACHE_DIR)


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    import torch

    from sdpo_exp.models import load_model

    torch.manual_seed(0)
    return load_model(model_cfg("tiny_random"), CACHE_DIR, tiny_tokenizer)


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run `python run.py ARGS` in a fresh process, as a user would."""

    def _run(args: Sequence[str], cwd: Path | None = None, env: dict | None = None, timeout: float = 900):
        full_env = {**os.environ, "SDPO_CACHE_DIR": str(CACHE_DIR), "COLUMNS": "200", **(env or {})}
        return subprocess.run(
            [sys.executable, str(REPO / "run.py"), *args],
            cwd=cwd or REPO,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run


def reset_accelerate() -> None:
    """accelerate keeps process-wide state; each in-process run starts from a clean one."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture(scope="module")
def accelerator():
    """A one-process CPU Accelerator for a test module; accelerate's state is reset afterwards."""
    from accelerate import Accelerator

    yield Accelerator(cpu=True)
    reset_accelerate()


def run_in_process(compose, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    from sdpo_exp.tasks.runner import execute

    reset_accelerate()
    cfg = compose(*overrides)
    try:
        return execute(cfg, run_dir)
    finally:
        reset_accelerate()


def final_weights(run_dir: Path) -> dict:
    """The final model's tensors by name."""
    from safetensors.torch import load_file

    return load_file(run_dir / "final" / "model.safetensors")


def cli(args: list[str], **kwargs) -> subprocess.Popen:
    """`python run.py ARGS` as a child process (stdout and stderr to a log file next to the run)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200",
           "OMP_NUM_THREADS": "1", **kwargs.pop("env", {})}  # fmt: skip
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=env, **kwargs)
