"""Models load offline: tiny_random, the packaged SmolLM2, LoRA; hub presets fail clearly offline."""

from __future__ import annotations

import pytest
import torch

from sdpo_exp.errors import ModelLoadError
from sdpo_exp.models import load_model, load_tokenizer, resolve_dtype

from conftest import CACHE_DIR, model_cfg


def test_tiny_random_is_qwen3_and_generates(tiny_model, tiny_tokenizer):
    assert tiny_model.config.model_type == "qwen3"
    assert tiny_model.num_parameters() < 5_000_000
    ids = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = tiny_model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5


def test_tiny_tokenizer_has_qwen3_thinking_switch(tiny_tokenizer):
    msgs = [{"role": "user", "content": "Hi"}]
    off = tiny_tokenizer.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=False, enable_thinking=False
    )
    on = tiny_tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")
    assert "system" not in on


def test_tiny_random_is_reproducible_from_seed(tiny_tokenizer):
    torch.manual_seed(5)
    a = load_model(model_cfg("tiny_random"), CACHE_DIR, tiny_tokenizer)
    torch.manual_seed(5)
    b = load_model(model_cfg("tiny_random"), CACHE_DIR, tiny_tokenizer)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_tiny_random_vocab_can_be_set(tiny_tokenizer):
    model = load_model(model_cfg("tiny_random", **{"tiny.vocab_size": 151936}), CACHE_DIR, tiny_tokenizer)
    assert model.config.vocab_size == 151936


def test_smollm2_answers_offline(smollm2_tokenizer):
    model = load_model(model_cfg("smollm2_135m", dtype="float32"), CACHE_DIR, smollm2_tokenizer)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == 49152
    ids = smollm2_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = smollm2_tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_model_path_loads_a_saved_directory(tiny_model, tiny_tokenizer, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    cfg = model_cfg("qwen3_8b", path=str(tmp_path), dtype="float32")
    tok = load_tokenizer(cfg, CACHE_DIR)
    model = load_model(cfg, CACHE_DIR, tok)
    for pa, pb in zip(model.parameters(), tiny_model.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("preset", ["qwen3_4b", "qwen3_8b", "olmo3_7b_sft", "olmo3_7b_dpo"])
def test_hub_preset_offline_fails_with_clear_message(preset, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer(model_cfg(preset), CACHE_DIR)
    message = str(err.value)
    assert "not a local directory" in message
    assert "model.path" in message


def test_lora_trains_only_adapters(tiny_tokenizer):
    cfg = model_cfg(
        "tiny_random", **{"lora.enabled": True, "lora.r": 4, "lora.target_modules": ["q_proj", "v_proj"]}
    )
    model = load_model(cfg, CACHE_DIR, tiny_tokenizer)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_dtype_resolution():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bfloat16") is torch.bfloat16
    expected = torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    assert resolve_dtype("auto", "cpu") is expected


def test_flash_attention_needs_gpu(tiny_tokenizer):
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_model(
            model_cfg("tiny_random", attn_implementation="flash_attention_2"), CACHE_DIR, tiny_tokenizer
        )


def test_a_missing_model_directory_is_not_sent_to_the_hub(tmp_path):
    missing = tmp_path / "some" / "missing" / "dir"
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer(model_cfg("qwen3_4b", path=str(missing)), CACHE_DIR)
    message = str(err.value)
    assert f"model.path={missing}: no such directory" in message and "hf download" not in message
