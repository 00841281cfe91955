"""Chat rendering: where messages become the token ids a model reads, and where an assistant turn ends.

The SDPO batches (student context x, teacher context (x, o)) and every generation backend render
through here, so that a prompt the policy is sampled on and the student context of the interaction it
becomes are the same ids. Contexts are rendered with the model's chat template
(`add_generation_prompt=True`, plus the model's template switches such as Qwen3's
`enable_thinking=False`) and tokenised with `add_special_tokens=False` (a template already writes its
own special tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

_SENTINEL = "SDPO_SENTINEL_7f3a"


def render(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], chat_template_kwargs: Mapping[str, Any]
) -> str:
    """The exact string the model reads before its answer."""
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], add_generation_prompt=True, tokenize=False, **dict(chat_template_kwargs)
    )


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added (the template wrote its own)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_ids(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], chat_template_kwargs: Mapping[str, Any] | None
) -> list[int]:
    """The token ids the model reads before its answer."""
    return encode_text(tokenizer, render(tokenizer, messages, chat_template_kwargs or {}))


def end_of_turn_id(tokenizer: Any, chat_template_kwargs: Mapping[str, Any]) -> int:
    """The token the chat template writes right after an assistant message (`<|im_end|>` for ChatML,
    `<|eot_id|>` for Llama 3); the tokenizer's EOS when the template shows none."""
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, **dict(chat_template_kwargs))
        suffix = text[text.index(_SENTINEL) + len(_SENTINEL) :]
        ids = encode_text(tokenizer, suffix) if suffix else []
        special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
        if ids and ids[0] in special:
            return int(ids[0])
    except Exception as exc:  # any template failure: fall back to the tokenizer's EOS
        log.debug("could not read the end-of-turn token from the chat template: %s", exc)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token and its chat template shows no end-of-turn token")
    return int(tokenizer.eos_token_id)


def stop_token_ids(tokenizer: Any, chat_template_kwargs: Mapping[str, Any], model: Any = None) -> list[int]:
    """The ids that end an assistant turn: the end-of-turn token first, then the tokenizer's EOS and
    any end-of-sequence id the model's generation config lists."""
    ids = [end_of_turn_id(tokenizer, chat_template_kwargs)]
    model_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    candidates = [
        tokenizer.eos_token_id,
        *(model_eos if isinstance(model_eos, (list, tuple)) else [model_eos]),
    ]
    for token_id in candidates:
        if token_id is not None and int(token_id) not in ids:
            ids.append(int(token_id))
    return ids
