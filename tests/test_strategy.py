"""`trainer.strategy`: the 7-8B presets compose into FSDP jobs, and the combinations FSDP does not
take (8-bit AdamW, LoRA, a model without decoder layers) fail before any training with one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sdpo_exp.errors import ConfigError
from sdpo_exp.training.optim import check_optimizer_available
from sdpo_exp.training.strategy import FullySharded, decoder_layers, make_strategy

from conftest import reset_accelerate

SHARDED_PRESETS = [
    "wildfeedback_qwen8b",
    "wildchat_qwen8b",
    "wildfeedback_olmo3_7b_sft",
    "wildfeedback_olmo3_7b_dpo",
]


@pytest.mark.parametrize("preset", SHARDED_PRESETS)
def test_the_7_8b_presets_shard(compose, preset):
    cfg = compose(f"experiment={preset}")
    assert cfg.trainer.strategy.value == "fsdp"
    assert cfg.trainer.optimizer.value == "adamw"
    check_optimizer_available(cfg.trainer, torch.device("cuda"))  # accepted before bitsandbytes is asked


def test_default_is_ddp_and_a_wrong_value_fails(compose):
    assert compose().trainer.strategy.value == "ddp"
    with pytest.raises(ConfigError, match="strategy"):
        compose("trainer.strategy=zero3")


def test_cfg_job_shows_the_sharding_of_an_8b_slurm_job():
    cmd = [sys.executable, "run.py", "experiment=wildfeedback_qwen8b", "resources=gpu4", "hydra/launcher=slurm",
           "--cfg", "job"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "strategy: fsdp" in out


def test_eight_bit_adamw_is_refused_under_fsdp(compose):
    cfg = compose("trainer.strategy=fsdp", "trainer.optimizer=adamw_8bit")
    with pytest.raises(ConfigError, match="adamw_8bit with trainer.strategy=fsdp"):
        check_optimizer_available(cfg.trainer, torch.device("cuda"))


def test_lora_is_refused_under_fsdp(compose, cache_dir):
    from accelerate import Accelerator

    from sdpo_exp.models import load_model, load_tokenizer

    cfg = compose("model=tiny_random", "model.lora.enabled=true", "trainer.strategy=fsdp")
    model = load_model(cfg.model, cache_dir, load_tokenizer(cfg.model, cache_dir), trainable=True)
    try:
        strategy = make_strategy(cfg.trainer, Accelerator(cpu=True))
        assert isinstance(strategy, FullySharded)
        with pytest.raises(ConfigError, match="LoRA"):
            strategy.prepare(model, lambda m: torch.optim.AdamW(m.parameters()))
    finally:
        reset_accelerate()


def test_a_model_without_decoder_layers_is_named():
    class Odd(torch.nn.Module):
        def get_decoder(self):
            return torch.nn.Linear(2, 2)

    with pytest.raises(ConfigError, match="decoder layers of Odd"):
        decoder_layers(Odd())
