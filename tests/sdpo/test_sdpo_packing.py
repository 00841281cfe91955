"""Packed (padding-free) passes: the layout, the mask against a brute-force one, and the hidden states
of packed passes against padded ones for SDPA (SmolLM2, Llama) and eager attention (tiny_random, Qwen3),
the shared-prefix suffix pass included; models whose attention a packed mask cannot express refuse."""

from __future__ import annotations

import random

import torch
from sdpo_testutils import random_interaction

from sdpo_exp.config.schemas.loss import HindsightConfig
from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.batching import BatchBuilder
from sdpo_exp.sdpo.logprobs import completion_hidden_states
from sdpo_exp.sdpo.packing import (
    FREE,
    PackedRows,
    allowed_keys,
    first_fit_bins,
    packed_completion_hidden_states,
    packed_suffix_hidden_states,
    packing_problem,
)
from sdpo_exp.sdpo.prefix import shared_prefix_lengths

from conftest import CACHE_DIR, model_cfg


def test_rows_go_first_fit_into_bins_no_wider_than_the_longest_row():
    spans = [5, 9, 2, 4, 3, 9, 1]
    bins = first_fit_bins(spans, capacity=9)
    loads = [sum(s for s, k in zip(spans, bins, strict=True) if k == b) for b in range(max(bins) + 1)]
    assert max(loads) <= 9 and sum(loads) == sum(spans)
    assert len(loads) == 4  # 9 | 9 | 5 + 4 | 3 + 2 + 1
    assert first_fit_bins([], capacity=0) == []


def test_layout_of_right_padded_rows_and_of_suffixes():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    rows = PackedRows.of(mask)  # row 2 (4 tokens) alone; rows 0 (3) and 1 (1) share a bin of width 4
    assert rows.bins.tolist() == [1, 1, 0] and rows.starts.tolist() == [0, 3, 0] and rows.width == 4
    assert rows.doc.tolist() == [[2, 2, 2, 2], [0, 0, 0, 1]]
    assert rows.pos.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0]]
    ids = torch.arange(12).reshape(3, 4)
    assert rows.pack(ids).tolist() == [[8, 9, 10, 11], [0, 1, 2, 4]]
    # the hidden state predicting completion token j of row b sits at prompt_len_b + j - 1 in its row
    completion = torch.tensor([[True, True], [False, False], [True, False]])
    assert rows.completion_slots(torch.tensor([1, 1, 3]), completion).tolist() == [4, 5, 2]
    # suffixes after offsets P_b go into the bins of their rows; free slots are marked
    suffix = PackedRows.of(mask, offsets=torch.tensor([1, 0, 3]), bins=rows.bins)
    assert suffix.doc.tolist() == [[2, FREE, FREE], [0, 0, 1]] and suffix.pos.tolist() == [
        [3, 0, 0],
        [1, 2, 0],
    ]
    assert suffix.pack(ids).tolist() == [[11, 0, 0], [1, 2, 4]]
    assert suffix.completion_slots(torch.tensor([2, 1, 4]), completion).tolist() == [3, 4, 0]


def test_mask_matches_brute_force():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    rows = PackedRows.of(mask)
    allowed = allowed_keys(rows.doc, rows.pos, rows.doc, rows.pos)
    assert (rows.doc == FREE).any(), "the test wants a free slot"
    for k in range(rows.doc.shape[0]):
        for i in range(rows.width):
            for j in range(rows.width):
                d_i, d_j = int(rows.doc[k, i]), int(rows.doc[k, j])
                expected = (d_i == d_j != FREE and rows.pos[k, j] <= rows.pos[k, i]) or (
                    d_i == FREE and i == j
                )
                assert bool(allowed[k, i, j]) == bool(expected), (k, i, j)


def _batch(tokenizer, chat_kwargs):
    rng = random.Random(5)
    builder = BatchBuilder(tokenizer, HindsightConfig(), chat_kwargs, 160, 16)
    interactions = [random_interaction(rng, i) for i in range(3)]
    interactions.append(Interaction([{"role": "user", "content": "Hi"}], "Hello!", "shorter please", id="s"))
    encoded = [builder.encode_one(i) for i in interactions]
    batch = builder.collate(encoded)
    assert len(set(batch.student_attention_mask.sum(1).tolist())) == len(batch), "rows of different lengths"
    return batch


def _compare(model, batch, atol):
    mask = batch.completion_mask
    lengths = shared_prefix_lengths(
        batch.student_input_ids, batch.student_prompt_lens, batch.teacher_input_ids, batch.teacher_prompt_lens
    )
    student = (batch.student_input_ids, batch.student_attention_mask, batch.student_prompt_lens, mask)
    teacher = (batch.teacher_input_ids, batch.teacher_attention_mask, batch.teacher_prompt_lens, mask)
    with torch.no_grad():
        padded_s = completion_hidden_states(model, *student)
        packed_s, prefix = packed_completion_hidden_states(model, *student, record=lengths)
        padded_t = completion_hidden_states(model, *teacher)
        packed_t, _ = packed_completion_hidden_states(model, *teacher)
        suffix_t = packed_suffix_hidden_states(model, *teacher, prefix)
    scale = float(padded_s.abs().max())
    for name, got, want in (("student", packed_s, padded_s), ("teacher", packed_t, padded_t),
                            ("suffix", suffix_t, padded_t)):  # fmt: skip
        assert got.shape == want.shape, name
        assert float((got - want).abs().max()) <= atol * scale, name


def test_packed_passes_equal_padded_ones_eager_qwen3(tiny_model, tiny_tokenizer):
    cfg = model_cfg("tiny_random")
    assert packing_problem(tiny_model, shared_prefix=True) is None
    _compare(tiny_model.eval(), _batch(tiny_tokenizer, cfg.chat_template_kwargs), 1e-5)


def test_packed_passes_equal_padded_ones_sdpa_llama(smollm2_tokenizer):
    from sdpo_exp.models import load_model

    cfg = model_cfg("smollm2_135m", dtype="float32")
    model = load_model(cfg, CACHE_DIR, smollm2_tokenizer).eval()
    assert model.config._attn_implementation == "sdpa"
    _compare(model, _batch(smollm2_tokenizer, cfg.chat_template_kwargs), 1e-5)


def test_attention_that_a_packed_mask_cannot_express_is_refused():
    from transformers import MistralConfig, MistralForCausalLM, Qwen3Config, Qwen3ForCausalLM

    small = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=8)  # fmt: skip
    windowed = MistralForCausalLM(MistralConfig(**small, sliding_window=64, attn_implementation="sdpa"))
    assert "sliding attention window" in packing_problem(windowed, shared_prefix=False)
    mixed = Qwen3Config(**small, layer_types=["full_attention", "sliding_attention"], sliding_window=8)
    assert "sliding_attention" in packing_problem(Qwen3ForCausalLM(mixed), shared_prefix=False)
    plain = Qwen3ForCausalLM(Qwen3Config(**small))
    plain.config._attn_implementation = "flash_attention_2"
    assert packing_problem(plain, shared_prefix=False) is None  # rows separated by position ids
    assert "4D mask" in packing_problem(plain, shared_prefix=True)
