"""The final model as a plain Hugging Face directory (`<run dir>/final/`), written atomically.

`model.path=<run dir>/final` loads it like any pretrained model: LoRA adapters are merged into the
weights first, and the tokenizer is saved alongside.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sdpo_exp.training.lora_merge import merged_state_dict
from sdpo_exp.training.strategy import original_class_name

log = logging.getLogger(__name__)


def save_final_model(
    accelerator: Any, model: Any, tokenizer: Any, target: Path, strategy: Any = None
) -> Path:
    """Every process calls it (an FSDP model is gathered); the main process writes `target`."""
    unwrapped = accelerator.unwrap_model(model)
    # the full weights on the main process (gathered from the shards under FSDP)
    state_dict = (
        strategy.full_state_dict(model) if strategy is not None else accelerator.get_state_dict(model)
    )
    if hasattr(unwrapped, "merge_and_unload"):  # peft: a plain model with the adapters merged
        if getattr(strategy, "sharded", False):  # the weights exist in full only as the gathered dict
            state_dict = merged_state_dict(unwrapped, state_dict) if accelerator.is_main_process else None
            unwrapped = unwrapped.get_base_model()
        else:
            unwrapped = unwrapped.merge_and_unload()
            state_dict = None
    if accelerator.is_main_process:
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        architecture = original_class_name(unwrapped)
        if unwrapped.config.architectures != [architecture]:  # FSDP's `FSDP<class>` subclass
            unwrapped.config.architectures = [architecture]
            unwrapped.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        log.info("Final model saved to %s (load it with model.path=%s)", target, target)
    accelerator.wait_for_everyone()
    return target
