"""LoRA adapters merged into full weights from a gathered state dict (FSDP's final model).

Under FSDP the weights exist in full only as a gathered state dict on the main process, so PEFT's
`merge_and_unload` (which merges module by module, in place) cannot run on the model. The same merge
is done here on the state dict: W + scaling * B @ A for every adapted Linear layer, the adapter keys
dropped and the names turned into those of the plain model.
"""

from __future__ import annotations

import torch
from torch import nn

_PEFT_PREFIX = "base_model.model."
_ADAPTER = "default"


def merged_state_dict(peft_model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The plain model's state dict: `state` (the PEFT model's, full) with its adapters merged."""
    scalings: dict[str, float] = {}
    for name, module in peft_model.named_modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict) and _ADAPTER in scaling and hasattr(module, "base_layer"):
            if type(module.base_layer) is not nn.Linear:
                raise ValueError(
                    f"{name}: merging LoRA into a {type(module.base_layer).__name__} is not supported"
                )
            scalings[name] = float(scaling[_ADAPTER])
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        module, _, leaf = key.rpartition(".")
        if module.endswith(".base_layer") and module[: -len(".base_layer")] in scalings:
            owner = module[: -len(".base_layer")]
            if leaf == "weight":
                a = state[f"{owner}.lora_A.{_ADAPTER}.weight"].float()
                b = state[f"{owner}.lora_B.{_ADAPTER}.weight"].float()
                value = (value.float() + scalings[owner] * (b @ a)).to(value.dtype)
            key = f"{owner}.{leaf}"
        merged[key.removeprefix(_PEFT_PREFIX)] = value
    return merged
