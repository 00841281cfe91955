"""The model behind a simulator or judge: a local model through a generation backend, or Claude."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sdpo_exp.generation.backend import Generator

log = logging.getLogger(__name__)


class ChatModel(Protocol):
    """One reply per chat; None where the reply could not be obtained (skipped and counted)."""

    def replies(self, chats: Sequence[Sequence[Mapping[str, str]]]) -> list[str | None]: ...

    def metrics(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Sampling:
    do_sample: bool
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int


def sampling_for(max_new_tokens: int, temperature: float) -> Sampling:
    """Greedy at temperature 0, plain sampling at that temperature otherwise."""
    if temperature <= 0:
        return Sampling(False, 1.0, 1.0, 0, int(max_new_tokens))
    return Sampling(True, float(temperature), 1.0, 0, int(max_new_tokens))


class GeneratorChat:
    """A local model (hf or vllm backend) answering chats."""

    def __init__(self, generator: Generator, sampling: Sampling) -> None:
        self.generator, self.sampling = generator, sampling
        self.counts: Counter[str] = Counter()

    def replies(self, chats: Sequence[Sequence[Mapping[str, str]]]) -> list[str | None]:
        samples = self.generator.generate(list(chats), self.sampling)
        out: list[str | None] = []
        for sample in samples:
            text = sample.text.strip()
            self.counts["calls"] += 1
            if not text:
                self.counts["failed"] += 1
                self.counts["failed/empty_reply"] += 1
            out.append(text or None)
        return out

    def metrics(self) -> dict[str, float]:
        return dict(self.counts)  # counts stay integers


def make_chat_model(cfg: Any, cache_dir: str, device: Any = None) -> ChatModel:
    """The chat model a `simulator` or `judge` config with backend hf, vllm or anthropic describes."""
    backend = str(getattr(cfg.backend, "value", cfg.backend))
    if backend == "anthropic":
        from sdpo_exp.users.anthropic_chat import AnthropicChat

        return AnthropicChat(cfg)
    if backend not in ("hf", "vllm"):
        raise ValueError(f"{cfg.name}: backend {backend!r} has no chat model")
    import torch

    from sdpo_exp.generation.backend import make_generator
    from sdpo_exp.models import load_model, load_tokenizer
    from sdpo_exp.models.loader import pretrained_dir

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(cfg.model, cache_dir)
    kwargs = dict(cfg.model.chat_template_kwargs or {})
    if backend == "hf":
        model = load_model(cfg.model, cache_dir, tokenizer, device=device, trainable=False).eval()
        generator = make_generator("hf", model, tokenizer, kwargs, int(cfg.batch_size))
    else:
        generator = make_generator(
            "vllm", None, tokenizer, kwargs, model_dir=pretrained_dir(cfg.model, cache_dir)
        )
    log.info("%s: %s on the %s backend", cfg.name, cfg.model.name, backend)
    return GeneratorChat(generator, sampling_for(int(cfg.max_new_tokens), float(cfg.temperature)))
