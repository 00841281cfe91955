"""Micro-batches cut by a token budget (`trainer.max_tokens_per_micro_batch`): the grouping rules,
and one optimiser step of the learner that does not depend on it (nor on packing)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from sdpo_exp.training.micro_batches import budget_groups, micro_batch_tokens, row_tokens, rows_over_budget

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdpo"))
from sdpo_testutils import random_interaction  # noqa: E402


def _rows(lengths: list[tuple[int, int, int]]) -> list[dict]:
    return [
        {"student_ids": [1] * s, "teacher_ids": [1] * t, "completion_ids": [2] * c} for s, t, c in lengths
    ]


@pytest.mark.parametrize("packed", [False, True])
def test_groups_hold_every_row_once_within_the_budget_longest_first(packed):
    rng = random.Random(0)
    rows = _rows([(rng.randrange(5, 300), rng.randrange(300, 400), rng.randrange(1, 80)) for _ in range(23)])
    budget = 1500
    groups = budget_groups(rows, budget, packed)
    assert sorted(i for g in groups for i in g) == list(range(len(rows)))
    sizes = [row_tokens(r) for r in rows]
    for group in groups:
        tokens = micro_batch_tokens([sizes[i] for i in group], packed)
        assert tokens <= budget or len(group) == 1
    order = [i for g in groups for i in g]
    totals = [sum(sizes[i]) for i in order]
    assert totals == sorted(totals, reverse=True)
    # packing counts no padding, so it needs no more micro-batches than padding does
    if packed:
        assert len(groups) <= len(budget_groups(rows, budget, False))


def test_a_row_over_the_budget_runs_alone_and_is_counted():
    rows = _rows([(10, 12, 5), (900, 950, 100), (20, 25, 5)])
    groups = budget_groups(rows, 500, packed=True)
    assert groups[0] == [1] and sorted(groups[1]) == [0, 2]
    assert rows_over_budget(rows, 500, packed=True) == 1
    with pytest.raises(ValueError, match="positive"):
        budget_groups(rows, 0, packed=True)


def test_padded_count_is_rows_times_the_longest():
    assert micro_batch_tokens([(10, 12), (30, 5)], packed=False) == 2 * (30 + 12)
    assert micro_batch_tokens([(10, 12), (30, 5)], packed=True) == 57


def _step(compose, accelerator, tmp_path, name: str, overrides: list[str], interactions):
    from sdpo_exp.models import load_tokenizer
    from sdpo_exp.sdpo.batching import BatchBuilder
    from sdpo_exp.training.learner import Learner

    cfg = compose(
        "task=offline", "model=tiny_random", "loss=pg", "trainer.per_device_batch_size=6", "trainer.lr=1.0",
        "trainer.adam_eps=10",  # Adam's first step is then lr * g / 10: weights differ as gradients do
        "trainer.max_grad_norm=0", "trainer.max_prompt_tokens=400", "trainer.max_completion_tokens=48",
        *overrides,
    )  # fmt: skip
    builder = BatchBuilder.from_config(cfg, load_tokenizer(cfg.model, cfg.paths.cache_dir))
    torch.manual_seed(0)
    learner = Learner(cfg, accelerator, builder, 10, tmp_path / name)
    metrics = learner.step([interactions], interactions[0])
    weights = torch.cat([p.detach().flatten() for p in learner.model.parameters()])
    return metrics, weights


def test_one_step_is_the_same_with_a_token_budget_and_with_packing(compose, accelerator, tmp_path):
    rng = random.Random(3)
    interactions = [random_interaction(rng, i) for i in range(6)]
    runs = {
        "6 rows padded": ["trainer.packing=false"],
        "6 rows packed": ["trainer.packing=true"],
        "budget 700 padded": ["trainer.packing=false", "trainer.max_tokens_per_micro_batch=700"],
        "budget 700 packed": ["trainer.packing=true", "trainer.max_tokens_per_micro_batch=700"],
    }
    found = {
        name: _step(compose, accelerator, tmp_path, name.replace(" ", "_"), o, interactions)
        for name, o in runs.items()
    }
    ref_metrics, ref_weights = found["6 rows padded"]
    start = _step(compose, accelerator, tmp_path, "start", ["trainer.lr=0"], interactions)[1]
    moved = float((ref_weights - start).abs().max())
    assert moved > 1e-4, "the step must move the weights for the comparison to mean anything"
    for name, (metrics, weights) in found.items():
        assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=1e-4), name
        assert metrics["num_interactions"] == 6, name
        assert float((weights - ref_weights).abs().max()) <= 2e-4 * moved, name
    assert found["budget 700 padded"][0]["num_micro_batches"] > 1
    assert (
        found["budget 700 packed"][0]["num_micro_batches"]
        < found["budget 700 padded"][0]["num_micro_batches"]
    )
