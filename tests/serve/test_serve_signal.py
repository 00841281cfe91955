"""GET /v1/sdpo/signal/<id>: once the user has answered a reply, its per-token advantages, checked
against a plain forward pass of the model on x + y and on (x, o) + y, with signal analysis' colours."""

from __future__ import annotations

import httpx
import numpy as np
import torch
from serve_support import reply, serve_in_process

from sdpo_exp.chat import render_ids
from sdpo_exp.sdpo.hindsight import teacher_context
from sdpo_exp.signal.colors import advantage_hex


def _plain_logprobs(model, prompt_ids: list[int], completion_ids: list[int]) -> np.ndarray:
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    n = len(prompt_ids)
    return np.array([logp[n + j - 1, t].item() for j, t in enumerate(completion_ids)])


def test_signal_equals_a_plain_forward_pass(compose, tmp_path):
    with serve_in_process(compose, tmp_path / "run") as served:
        client = served.client()
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe rain."}]
        first = client.chat.completions.create(model="m", messages=messages)
        followup = "Use fewer words and no lists."
        messages += [{"role": "assistant", "content": reply(first)}, {"role": "user", "content": followup}]
        client.chat.completions.create(model="m", messages=messages)
        r = httpx.get(f"{served.url}/v1/sdpo/signal/{first.id}", timeout=60)
        assert r.status_code == 200, r.text
        signal = r.json()
        session = served.session
        model, tokenizer, kwargs = session.policy.model, session.policy.tokenizer, session.chat_kwargs
        hindsight = session.cfg.hindsight

    turn = [t for t in served.session.book._by_id.values() if t.completion_id == first.id][0]
    ids = list(turn.completion_ids)
    assert signal["token_ids"] == ids and signal["followup"] == followup
    assert "".join(signal["tokens"]) == tokenizer.decode(ids, skip_special_tokens=False)
    student = _plain_logprobs(model, render_ids(tokenizer, messages[:2], kwargs), ids)
    teacher = _plain_logprobs(
        model, render_ids(tokenizer, teacher_context(messages[:2], followup, hindsight), kwargs), ids
    )
    np.testing.assert_allclose(signal["student_logprobs"], student, atol=2e-5)
    np.testing.assert_allclose(signal["teacher_logprobs"], teacher, atol=2e-5)
    np.testing.assert_allclose(signal["advantages"], teacher - student, atol=4e-5)
    assert np.abs(teacher - student).max() > 1e-3  # the follow-up moves the tokens: a real signal
    limit = float(np.percentile(np.abs(teacher - student), 98))
    assert abs(signal["color_limit"] - limit) < 1e-4
    assert signal["colors"] == [advantage_hex(a, signal["color_limit"]) for a in signal["advantages"]]
