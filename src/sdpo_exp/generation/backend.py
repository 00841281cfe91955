"""The generation interface shared by the policy, model-backed simulators and judges.

A `Generator` samples one completion per chat (`generate(chats, sampling)`), with the sampling
settings of a `generation`-style config used exactly (do_sample, temperature, top_p, top_k,
max_new_tokens). Prompts are rendered by `sdpo_exp.chat`, like the student contexts of training.
`sync_weights(model)` makes the generator sample from the policy's current weights after an
optimiser step: nothing to do for `hf` (it samples from the training model itself), a full weight
push into the running engine for `vllm`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sdpo_exp.generation.hf import Sample

Chat = Sequence[Mapping[str, str]]


class Generator(Protocol):
    def generate(self, chats: Sequence[Chat], sampling: Any) -> list[Sample]: ...

    def sync_weights(self, model: Any) -> None: ...

    def close(self) -> None: ...


def backend_name(gen_cfg: Any) -> str:
    backend = gen_cfg["backend"] if isinstance(gen_cfg, Mapping) else gen_cfg.backend
    return str(getattr(backend, "value", backend))


def make_generator(
    backend: str,
    model: Any,
    tokenizer: Any,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    model_dir: str | None = None,
    vllm_options: Mapping[str, Any] | None = None,
    autocast: Any = None,
    record_logprobs: bool = False,
) -> Generator:
    """`hf`: sample from `model` itself (inside `autocast()`, the training run's mixed precision, when
    given); `vllm`: an engine loaded from `model_dir` (the same weights). `record_logprobs`: samples
    carry the sampler's log-prob of each token (`Sample.logprobs`)."""
    if backend == "hf":
        from sdpo_exp.generation.hf import HFGenerator

        return HFGenerator(model, tokenizer, chat_template_kwargs, batch_size, autocast, record_logprobs)
    if backend == "vllm":
        from sdpo_exp.generation.vllm import VLLMGenerator

        if model_dir is None:
            raise ValueError("the vllm backend needs the directory of the model's weights")
        options = {**dict(vllm_options or {}), "record_logprobs": record_logprobs}
        return VLLMGenerator(model_dir, tokenizer, chat_template_kwargs, **options)
    raise ValueError(f"unknown generation backend {backend!r}; valid choices: hf, vllm")
