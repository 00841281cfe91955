"""Sampling from the policy: configured parameters are used exactly, whatever the model's own
generation_config says; completions are cut at the end-of-turn token, which they keep."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig as HFGenerationConfig

from sdpo_exp.chat import render_ids, stop_token_ids
from sdpo_exp.generation import hf_generation_config, sample_completions

CHAT = [{"role": "user", "content": "Tell me something."}]
KW = {"enable_thinking": False}


def _cfg(**updates):
    cfg = {
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "max_new_tokens": 6,
        "batch_size": 4,
    }
    cfg.update(updates)
    return cfg


def _hostile(model):
    """A model generation_config like Qwen3's, pushed to the extreme: nearly greedy."""
    model.generation_config = HFGenerationConfig(
        do_sample=False,
        temperature=0.01,
        top_p=0.05,
        top_k=1,
        min_p=0.9,
        repetition_penalty=2.0,
        eos_token_id=model.generation_config.eos_token_id,
        max_new_tokens=2,
    )
    return model


def test_effective_config_is_the_configured_one(tiny_model, tiny_tokenizer, monkeypatch):
    model = _hostile(tiny_model)
    seen = []
    real = model._prepare_generation_config

    def spy(generation_config, **kwargs):
        effective, model_kwargs = real(generation_config, **kwargs)
        seen.append(effective)
        return effective, model_kwargs

    monkeypatch.setattr(model, "_prepare_generation_config", spy)
    sample_completions(model, tiny_tokenizer, [CHAT], _cfg(top_k=7, top_p=0.9, temperature=0.7), KW)
    effective = seen[0]
    assert (effective.do_sample, effective.temperature, effective.top_p, effective.top_k) == (
        True,
        0.7,
        0.9,
        7,
    )
    assert effective.min_p in (None, 0.0) and effective.repetition_penalty in (None, 1.0)
    assert effective.max_new_tokens == 6
    assert model.generation_config.top_k == 1  # the model's own config is left as it was


def test_lora_wrapped_model(tiny_model, tiny_tokenizer, monkeypatch):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_hostile(tiny_model), LoraConfig(r=2, target_modules=["q_proj"]))
    base = model.get_base_model()
    seen = []
    real = base._prepare_generation_config

    def spy(generation_config, **kwargs):
        effective, model_kwargs = real(generation_config, **kwargs)
        seen.append(effective)
        return effective, model_kwargs

    monkeypatch.setattr(base, "_prepare_generation_config", spy)
    (ids, text, ended, _), *_ = sample_completions(model, tiny_tokenizer, [CHAT], _cfg(), KW)
    assert len(ids) == 6 and isinstance(text, str) and not ended
    assert (seen[0].temperature, seen[0].top_p, seen[0].top_k, seen[0].min_p) == (1.0, 1.0, 0, 0.0)
    assert base.generation_config.top_k == 1


def test_sampling_ignores_model_generation_config(tiny_model, tiny_tokenizer):
    model = _hostile(tiny_model)
    torch.manual_seed(0)
    samples = sample_completions(model, tiny_tokenizer, [CHAT] * 6, _cfg(), KW)
    assert len(samples) == 6
    # temperature 1.0 on a random model: six draws of six tokens are not all the same sequence
    assert len({tuple(s.ids) for s in samples}) > 1
    assert all(len(s.ids) == 6 for s in samples if not s.ended)
    assert model.generation_config.top_k == 1 and model.generation_config.do_sample is False


def test_greedy_and_low_temperature_match_argmax(tiny_model, tiny_tokenizer):
    tiny_model.generation_config.do_sample = True
    tiny_model.generation_config.temperature = 5.0
    greedy = sample_completions(tiny_model, tiny_tokenizer, [CHAT] * 3, _cfg(do_sample=False), KW)
    assert len({tuple(s.ids) for s in greedy}) == 1
    # the greedy ids are the argmax of the model's own forward pass, token by token
    prompt = render_ids(tiny_tokenizer, CHAT, KW)
    ids = list(prompt)
    for expected in greedy[0].ids:
        with torch.no_grad():
            logits = tiny_model(torch.tensor([ids])).logits[0, -1]
        assert int(logits.argmax()) == expected
        ids.append(expected)
    cold = sample_completions(tiny_model, tiny_tokenizer, [CHAT] * 3, _cfg(temperature=1e-4), KW)
    assert {tuple(s.ids) for s in cold} == {tuple(greedy[0].ids)}


def test_batching_and_left_padding_do_not_change_greedy_output(tiny_model, tiny_tokenizer):
    chats = [CHAT, [{"role": "user", "content": "A much longer request, with many more words in it."}]]
    together = sample_completions(tiny_model, tiny_tokenizer, chats, _cfg(do_sample=False), KW, batch_size=2)
    alone = [sample_completions(tiny_model, tiny_tokenizer, [c], _cfg(do_sample=False), KW)[0] for c in chats]
    assert [s.ids for s in together] == [s.ids for s in alone]


def test_completion_cut_at_eos_and_keeps_it(tiny_model, tiny_tokenizer):
    eos = stop_token_ids(tiny_tokenizer, KW, tiny_model)
    # from the second generated token on, the end-of-turn token is the only likely one
    bias = torch.zeros(tiny_model.config.vocab_size)
    bias[eos[0]] = 1e4
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        return output + bias if calls["n"] >= 2 else output

    handle = tiny_model.lm_head.register_forward_hook(hook)
    try:
        samples = sample_completions(tiny_model, tiny_tokenizer, [CHAT], _cfg(max_new_tokens=10), KW)
    finally:
        handle.remove()
    sample = samples[0]
    assert sample.ended
    assert len(sample.ids) == 2 and sample.ids[-1] == eos[0]
    assert tiny_tokenizer.eos_token not in sample.text


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"top_p": 0.0}, {"top_k": -1}, {"max_new_tokens": 0}])
def test_invalid_sampling_settings(tiny_tokenizer, bad):
    with pytest.raises(ValueError):
        hf_generation_config(_cfg(**bad), tiny_tokenizer, [2])


def test_the_generator_interface_samples_with_the_settings_it_is_given(tiny_model, tiny_tokenizer):
    from sdpo_exp.generation import make_generator

    generator = make_generator("hf", _hostile(tiny_model), tiny_tokenizer, KW, batch_size=3)
    torch.manual_seed(1)
    varied = generator.generate([CHAT] * 6, _cfg(max_new_tokens=8))
    assert all(len(s.ids) == 8 or s.ended for s in varied)  # max_new_tokens 8, not the model's 2
    assert len({tuple(s.ids) for s in varied}) > 1  # T = 1 sampling, not the model's near-greedy config
    greedy = generator.generate([CHAT] * 3, _cfg(do_sample=False, max_new_tokens=8))
    assert len({tuple(s.ids) for s in greedy}) == 1
    generator.sync_weights(tiny_model)
    generator.close()


def test_recorded_logprobs_are_the_raw_distribution_of_the_drawn_tokens(tiny_model, tiny_tokenizer):
    """At temperature 3 with top-k 5 the sampler draws from a transformed distribution; the recorded
    log-probs are of the model's own (what the learner computes), checked by a plain forward over
    prompt + completion, row by row (rows of unequal prompt lengths, left-padded when sampled)."""
    chats = [CHAT, [{"role": "user", "content": "A much longer request, with many more words in it."}]]
    torch.manual_seed(3)
    samples = sample_completions(
        tiny_model, tiny_tokenizer, chats, _cfg(temperature=3.0, top_k=5), KW, batch_size=2, logprobs=True
    )
    for chat, sample in zip(chats, samples, strict=True):
        assert sample.logprobs is not None and len(sample.logprobs) == len(sample.ids)
        prompt = render_ids(tiny_tokenizer, chat, KW)
        with torch.no_grad():
            logits = tiny_model(input_ids=torch.tensor([prompt + sample.ids])).logits[0].float()
        expected = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1).gather(
            1, torch.tensor(sample.ids)[:, None]
        )
        assert sample.logprobs == pytest.approx(expected.squeeze(1).tolist(), abs=1e-4)
    assert sample_completions(tiny_model, tiny_tokenizer, chats[:1], _cfg(), KW)[0].logprobs is None
