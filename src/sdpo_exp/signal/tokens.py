"""Readable per-token strings whose concatenation is the decoded completion."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

_REPLACEMENT = "\ufffd"


def token_strings(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    """One string per id: the text that id adds to the decoding of the ids before it.

    Decoding prefixes (rather than single ids) keeps the spaces that sentencepiece-style tokenizers
    drop at the start of a decode, and special tokens are kept (an end-of-turn token shows as itself).
    A character split over several byte tokens appears on the token that completes it; the tokens
    before it get an empty string.
    """
    ids = [int(i) for i in ids]
    pieces: list[str] = []
    previous = ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.endswith(_REPLACEMENT) and end < len(ids):
            pieces.append("")  # an incomplete multi-byte character: wait for the token that completes it
            continue
        if text.startswith(previous):
            pieces.append(text[len(previous) :])
        else:  # the decoding of the prefix changed (rare normalisation): fall back to the id alone
            pieces.append(tokenizer.decode([ids[end - 1]], skip_special_tokens=False))
        previous = text
    return pieces
