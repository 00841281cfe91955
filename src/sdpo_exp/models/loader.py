"""Load the policy model and its tokenizer as the `model` config describes."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sdpo_exp.config.schemas.model import DType, ModelConfig, ModelSource
from sdpo_exp.errors import ModelLoadError
from sdpo_exp.models.gguf_package import ensure_checkpoint

log = logging.getLogger(__name__)

_DTYPES = {DType.float32: torch.float32, DType.bfloat16: torch.bfloat16, DType.float16: torch.float16}


def _enum(value: Any, enum_type: type) -> Any:
    return value if isinstance(value, enum_type) else enum_type(value)


def resolve_dtype(dtype: DType | str, device: torch.device | str = "cpu") -> torch.dtype:
    """`auto` is bfloat16 where the device computes in it natively, float32 elsewhere."""
    dtype = _enum(dtype, DType)
    if dtype != DType.auto:
        return _DTYPES[dtype]
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return torch.float32


def pretrained_dir(cfg: ModelConfig, cache_dir: str | Path) -> str | None:
    """The directory or hub id that from_pretrained reads, or None for a model built in code."""
    if cfg.path:
        return str(cfg.path)
    source = _enum(cfg.source, ModelSource)
    if source == ModelSource.gguf_package:
        return str(ensure_checkpoint(cfg.gguf, cache_dir))
    if source == ModelSource.tiny_random:
        return None
    raise ModelLoadError(f"model '{cfg.name}' has source 'pretrained' but no model.path")


def _looks_like_hub_id(path: str) -> bool:
    """`org/name` (one slash, no leading `/`, `.` or `~`), as opposed to a filesystem path."""
    return not path.startswith(("/", ".", "~")) and path.count("/") <= 1 and "\\" not in path


def _hub_error(path: str, exc: Exception) -> ModelLoadError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if Path(path).expanduser().exists():
        return ModelLoadError(f"could not load the model directory {path}: {first}")
    if not _looks_like_hub_id(path):
        return ModelLoadError(
            f"model.path={path}: no such directory ({Path(path).expanduser().resolve()}); point it at a Hugging Face "
            "model directory (a run's final/, or a downloaded model)"
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    hint = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub could not be reached"
    return ModelLoadError(
        f"could not load '{path}': it is not a local directory and {hint}. Download it on a machine "
        f"with network access (`hf download {path}`) and point model.path at the directory, "
        f"or choose model=smollm2_135m / model=tiny_random. ({first})"
    )


def load_tokenizer(cfg: ModelConfig, cache_dir: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer, with a pad token (the EOS token when the model defines none)."""
    from transformers import AutoTokenizer

    source = _enum(cfg.source, ModelSource)
    if source == ModelSource.tiny_random and not cfg.path:
        from sdpo_exp.models.tiny import tiny_tokenizer

        tokenizer = tiny_tokenizer(cache_dir)
    else:
        path = pretrained_dir(cfg, cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise _hub_error(str(path), exc) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"the tokenizer of '{cfg.name}' has no chat template")
    return tokenizer


def load_model(
    cfg: ModelConfig,
    cache_dir: str | Path,
    tokenizer: PreTrainedTokenizerBase | None = None,
    device: torch.device | str = "cpu",
    trainable: bool = True,
) -> PreTrainedModel:
    """The causal LM on `device`, in the configured dtype, with LoRA and checkpointing if asked."""
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(cfg.dtype, device)
    attn = _enum(cfg.attn_implementation, type(cfg.attn_implementation)).value
    if attn == "flash_attention_2" and torch.device(device).type != "cuda":
        raise ModelLoadError("model.attn_implementation=flash_attention_2 needs a CUDA GPU; use sdpa on CPU")
    path = pretrained_dir(cfg, cache_dir)
    if path is None:
        from sdpo_exp.models.tiny import tiny_model

        tokenizer = tokenizer or load_tokenizer(cfg, cache_dir)
        model = tiny_model(cfg.tiny, tokenizer, dtype)
        model.config._attn_implementation = attn
        log.info("Built tiny_random Qwen3 (%.1fM parameters, %s)", model.num_parameters() / 1e6, dtype)
    else:
        log.info("Loading %s (%s, attention %s)", path, dtype, attn)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                path,
                dtype=dtype,
                attn_implementation=attn,
                revision=cfg.revision,
                trust_remote_code=cfg.trust_remote_code,
            )
        except (OSError, ValueError) as exc:
            raise _hub_error(path, exc) from exc
    model.to(device)
    if cfg.gradient_checkpointing and trainable:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        model = _apply_lora(model, cfg)
    return model


def _apply_lora(model: PreTrainedModel, cfg: ModelConfig) -> PreTrainedModel:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, lora)
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info(
        "LoRA r=%d on %s: %.2fM of %.1fM parameters trainable",
        cfg.lora.r,
        list(cfg.lora.target_modules),
        trainable / 1e6,
        total / 1e6,
    )
    return peft_model
