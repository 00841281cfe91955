"""What the parts of `benchmarks/step.py` run on: sizes, the model and its tokenizer, multi-turn
interactions of a chosen context and completion length, their batch, and the naive reference step.

Contexts are chats of several turns whose rendered length (chat template included) is the target
minus 16 tokens per row, so that the rows of a batch have different lengths (padding, and a
different shared-prefix length per row). Completions are random token ids of exactly the target
length, not ended (no EOS added), as in `loss_step_memory.py`.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
sys.path.insert(0, str(REPO / "src"))

from loss_step_memory import naive_step  # noqa: E402  (the naive reference, shared with that benchmark)

WORDS = (
    "tides rise and fall because the moon pulls the oceans while the earth turns beneath them so "
    "most coasts see two high waters a day spring tides come when sun and moon line up neap tides "
    "when they stand at right angles harbours bays and estuaries shape how high the water climbs"
).split()
FOLLOWUP = "Too long, and please use simpler words."
HEADROOM = 256  # prompt tokens allowed beyond the context target: the hindsight block and rounding


@dataclass(frozen=True)
class Sizes:
    model: str  # a conf/model name
    dtype: str  # model.dtype
    batch: int
    context: int  # rendered context tokens of the longest row
    completion: int
    repeats: int

    def describe(self) -> str:
        return f"{self.model} {self.dtype}, batch {self.batch}, context {self.context}, completion {self.completion}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cache_dir() -> str:
    return os.environ.get("SDPO_CACHE_DIR", str(Path.home() / ".cache" / "sdpo-exp"))


def model_config(name: str, dtype: str) -> Any:
    from omegaconf import OmegaConf

    from sdpo_exp.config.schemas.model import ModelConfig

    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / "model" / f"{name}.yaml"))
    OmegaConf.update(cfg, "dtype", dtype)
    return cfg


def load_model_and_tokenizer(sizes: Sizes) -> tuple[Any, Any, Any]:
    """(model in train mode, tokenizer, model config), with a fixed seed."""
    import torch

    from sdpo_exp.models import load_model, load_tokenizer

    cfg = model_config(sizes.model, sizes.dtype)
    tokenizer = load_tokenizer(cfg, cache_dir())
    torch.manual_seed(0)
    model = load_model(cfg, cache_dir(), tokenizer)
    model.train()
    return model, tokenizer, cfg


def _chat(words: list[str]) -> list[dict[str, str]]:
    """Turns of 48 words, an odd number of them, alternating so that the last is a user message."""
    turns = [" ".join(words[i : i + 48]) for i in range(0, len(words), 48)] or ["Hello"]
    if len(turns) % 2 == 0:
        turns.insert(0, "Hello")
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def sized_context(tokenizer: Any, chat_kwargs: Any, target: int, rng: random.Random) -> list[dict[str, str]]:
    """A chat whose rendered length is as close to `target` tokens as whole words allow (not above)."""
    from sdpo_exp.chat import render_ids

    pool = [rng.choice(WORDS) for _ in range(2 * target + 8)]
    lo, hi = 1, len(pool)
    while lo < hi:  # the largest word count whose rendering fits
        mid = (lo + hi + 1) // 2
        if len(render_ids(tokenizer, _chat(pool[:mid]), chat_kwargs)) <= target:
            lo = mid
        else:
            hi = mid - 1
    return _chat(pool[:lo])


def make_interactions(tokenizer: Any, chat_kwargs: Any, sizes: Sizes, vocab: int, seed: int = 0) -> list[Any]:
    from sdpo_exp.interaction import Interaction

    rng = random.Random(seed)
    rows = []
    for b in range(sizes.batch):
        context = sized_context(tokenizer, chat_kwargs, max(16, sizes.context - 16 * b), rng)
        ids = [rng.randrange(100, vocab) for _ in range(sizes.completion)]
        rows.append(
            Interaction(context, "", FOLLOWUP, id=f"b{b}", completion_ids=ids, completion_ended=False)
        )
    return rows


def make_builder(tokenizer: Any, chat_kwargs: Any, sizes: Sizes) -> Any:
    from sdpo_exp.config.schemas.loss import HindsightConfig
    from sdpo_exp.sdpo.batching import BatchBuilder

    return BatchBuilder(tokenizer, HindsightConfig(), chat_kwargs, sizes.context + HEADROOM, sizes.completion)


def build_batch(builder: Any, interactions: list[Any]) -> Any:
    batch, skipped = builder.build(interactions)
    if batch is None or skipped:
        raise RuntimeError(f"the synthetic interactions did not fit the batch builder: {dict(skipped)}")
    return batch


def batch_shape(batch: Any) -> dict[str, float]:
    """Mean context lengths of the student and teacher rows and the number of completion tokens."""
    return {
        "student_context_mean": float(batch.student_prompt_lens.float().mean()),
        "teacher_context_mean": float(batch.teacher_prompt_lens.float().mean()),
        "completion_tokens": batch.num_completion_tokens,
    }


def naive_loss_step(model: Any, batch: Any, loss: str) -> float:
    """The naive reference's loss step: full-logit teacher and student passes, loss, backward."""
    return naive_step(model, batch, loss)


def text_of_tokens(tokenizer: Any, n: int, rng: random.Random) -> str:
    """Filler text of about `n` tokens (whole tokens of random words, decoded)."""
    words = [rng.choice(WORDS) for _ in range(n + 8)]
    ids = tokenizer.encode(" ".join(words), add_special_tokens=False)[:n]
    return tokenizer.decode(ids).strip() or "ok"


def realistic_interactions(tokenizer: Any, rows: list[Any], vocab: int, seed: int = 0) -> list[Any]:
    """Interactions whose context messages, completion and follow-up have the token lengths of `rows`
    (`lengths.RowLengths`): filler words for the messages, random token ids for the completion."""
    from sdpo_exp.interaction import Interaction

    rng = random.Random(seed)
    out = []
    for b, row in enumerate(rows):
        context = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": text_of_tokens(tokenizer, n, rng)}
            for i, n in enumerate(row.history)
        ]
        ids = [rng.randrange(100, vocab) for _ in range(row.completion)]
        followup = text_of_tokens(tokenizer, row.followup, rng)
        out.append(Interaction(context, "", followup, id=f"r{b}", completion_ids=ids, completion_ended=False))
    return out
