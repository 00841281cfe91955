"""The served weights: generation for one request at a time, and an atomic swap to new weights.

`generate` and `score` take the model reference once, under the lock, and compute with it: a request
is served wholly by one version of the weights. `swap` replaces the reference (the background learner
hands over a copy of its model after each update), so requests never see a half-updated model and
are served by the previous weights while an update runs. Forward passes are serialised (one CPU or
GPU, one pass at a time); requests beyond the concurrency limit are refused before they get here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from sdpo_exp.chat import render_ids
from sdpo_exp.generation.hf import Sample, sample_completions

log = logging.getLogger(__name__)


class ServedPolicy:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        chat_template_kwargs: Mapping[str, Any] | None,
        autocast: Callable[[], AbstractContextManager] | None = None,
        record_logprobs: bool = False,
        generator: Any = None,
    ) -> None:
        """`generator`: a `generation.Generator` to sample with instead of the model itself (vllm); its
        weights are pushed with `sync_weights` on every swap."""
        self._model = model
        self.tokenizer = tokenizer
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.autocast = autocast or nullcontext
        self.record_logprobs = record_logprobs
        self.generator = generator
        self.version = 0
        self._compute = threading.Lock()  # one forward pass at a time
        self._swap = threading.Lock()

    @property
    def model(self) -> Any:
        return self._model

    def prompt_tokens(self, messages: Sequence[Mapping[str, str]]) -> int:
        return len(render_ids(self.tokenizer, messages, self.chat_template_kwargs))

    def generate(
        self, messages: Sequence[Mapping[str, str]], sampling: Mapping[str, Any]
    ) -> tuple[Sample, int]:
        """(the sampled reply, the version of the weights that sampled it)."""
        with self._compute:
            with self._swap:
                model, version = self._model, self.version
            if self.generator is not None:
                return self.generator.generate([messages], dict(sampling))[0], version
            with self.autocast():
                samples = sample_completions(
                    model, self.tokenizer, [messages], sampling, self.chat_template_kwargs, 1,
                    logprobs=self.record_logprobs,
                )  # fmt: skip
            return samples[0], version

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """`fn(model)` on the current weights, serialised with generation, without gradients."""
        with self._compute:
            with self._swap:
                model = self._model
            with torch.no_grad():
                return fn(model)

    def swap(self, model: Any) -> int:
        """Serve `model` from the next request on; returns the new version."""
        model.eval()
        with self._compute:  # a vLLM engine is updated between two requests
            if self.generator is not None:
                self.generator.sync_weights(model)
            with self._swap:
                self._model = model
                self.version += 1
                return self.version
