"""`trainer.strategy`: the 7-8B presets compose into FSDP jobs, the combinations FSDP does not take
(8-bit AdamW, a model without decoder layers) fail before any training with one line, and a sharded
LoRA run's adapters are merged into its final weights as PEFT merges them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sdpo_exp.errors import ConfigError
from sdpo_exp.training.optim import check_optimizer_available
from sdpo_exp.training.strategy import decoder_layers

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


def test_lora_merged_from_a_state_dict_equals_peft_merge(compose, cache_dir):
    """The final model of a sharded LoRA run is merged from the gathered state dict; PEFT's own
    merge_and_unload on the model is the independent reference."""
    from sdpo_exp.models import load_model, load_tokenizer
    from sdpo_exp.training.lora_merge import merged_state_dict

    cfg = compose(
        "model=tiny_random", "model.lora.enabled=true", "model.lora.target_modules=[q_proj,o_proj,up_proj]"
    )
    model = load_model(cfg.model, cache_dir, load_tokenizer(cfg.model, cache_dir), trainable=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(std=0.05)  # lora_B starts at zero: a merge of zeros would prove nothing
    state = {k: v.clone() for k, v in model.state_dict().items()}
    merged = merged_state_dict(model, state)
    reference = model.merge_and_unload().state_dict()
    assert merged.keys() == reference.keys()
    q_base = state["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"]
    assert (merged["model.layers.0.self_attn.q_proj.weight"] - q_base).abs().max() > 1e-4  # adapters count
    for key, value in reference.items():
        assert torch.allclose(merged[key], value, rtol=1e-6, atol=1e-7), key


def test_a_model_without_decoder_layers_is_named():
    class Odd(torch.nn.Module):
        def get_decoder(self):
            return torch.nn.Linear(2, 2)

    with pytest.raises(ConfigError, match="decoder layers of Odd"):
        decoder_layers(Odd())
