"""How the model is spread over the run's processes (`trainer.strategy`).

- `ddp`: one full replica per process; accelerate wraps the model (DDP on several processes) and
  saves its state.
- `fsdp`: FSDP2 (`torch.distributed.fsdp.fully_shard`): parameters, gradients and optimiser state
  sharded across processes, each decoder layer one unit, the embeddings, final norm and LM head the
  root unit (tied embeddings stay one parameter). Gradients are reduce-scattered after every
  micro-batch and averaged over processes, as DDP averages them, so `update` is unchanged.
  Checkpoints are torch's distributed checkpoints (one file per process, any process count can
  read them); the final model is gathered into one Hugging Face directory.

Both run with the same mixed precision (accelerate's autocast over float32 or `model.dtype` weights)
and the same exact gradient (see `update`). Teachers with other weights (ema, base, trust_region)
and the `kl_to_ref` reference keep only this process's shards (see `sdpo.sharding`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from sdpo_exp.config.schemas.trainer import Strategy
from sdpo_exp.errors import ConfigError
from sdpo_exp.sdpo.logprobs import unwrap_model

log = logging.getLogger(__name__)

SHARDED_DIR = "sharded"  # the distributed checkpoint inside a checkpoint directory


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a Hugging Face causal LM (inside PEFT/compile wrappers)."""
    decoder = unwrap_model(model).get_decoder()
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ConfigError(
            f"trainer.strategy=fsdp: cannot find the decoder layers of {type(unwrap_model(model)).__name__} "
            "(expected `model.get_decoder().layers`)"
        )
    return list(layers)


def shard_model(model: nn.Module) -> nn.Module:
    """FSDP2 over the default process group: one unit per decoder layer, the rest in the root."""
    from torch.distributed.fsdp import fully_shard

    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    return model


class DataParallel:
    """`ddp`: accelerate's preparation (a DDP wrapper on several processes) and state files."""

    name = Strategy.ddp
    sharded = False

    def __init__(self, accelerator: Any) -> None:
        self.acc = accelerator

    def prepare(self, model: nn.Module, make_optimizer: Callable[[nn.Module], Any]) -> tuple[nn.Module, Any]:
        return self.acc.prepare(model, make_optimizer(model))

    def register(self, **objects: Stateful) -> None:
        for obj in objects.values():
            self.acc.register_for_checkpointing(obj)

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> float:
        return float(self.acc.clip_grad_norm_(model.parameters(), max_norm))

    def save(self, directory: Path) -> None:
        self.acc.save_state(str(directory))

    def load(self, directory: Path) -> None:
        self.acc.load_state(str(directory))

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor] | None:
        return self.acc.get_state_dict(model)


class FullySharded:
    """`fsdp`: FSDP2 sharding, distributed checkpoints, a gathered final model."""

    name = Strategy.fsdp
    sharded = True

    def __init__(self, accelerator: Any) -> None:
        self.acc = accelerator
        self.model: nn.Module | None = None
        self.optimizer: Any = None
        self.objects: dict[str, Stateful] = {}

    def prepare(self, model: nn.Module, make_optimizer: Callable[[nn.Module], Any]) -> tuple[nn.Module, Any]:
        model = model.to(self.acc.device)
        if self.acc.num_processes == 1:
            log.info(
                "trainer.strategy=fsdp with one process: nothing to shard across (the same code path runs)"
            )
            _one_process_group(self.acc.device)
        self.model = shard_model(model)
        self.optimizer = make_optimizer(self.model)  # over the shards, so its state is sharded too
        return self.model, self.optimizer

    def register(self, **objects: Stateful) -> None:
        self.objects.update(objects)

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def _state(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(self.model, self.optimizer)
        return {
            "model": model_state,
            "optimizer": optim_state,
            **{name: obj.state_dict() for name, obj in self.objects.items()},
        }

    def save(self, directory: Path) -> None:
        import torch.distributed.checkpoint as dcp

        dcp.save(self._state(), checkpoint_id=str(Path(directory) / SHARDED_DIR))

    def load(self, directory: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        state = self._state()
        dcp.load(state, checkpoint_id=str(Path(directory) / SHARDED_DIR))
        set_state_dict(
            self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
        )
        for name, obj in self.objects.items():
            obj.load_state_dict(state[name])

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Every weight in full on the main process (empty elsewhere); every process must call it."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)
        # gathered separately, tied weights (embeddings and head) arrive as two tensors: make them one
        # again, so that save_pretrained writes them once, as from an unsharded model
        names: dict[int, list[str]] = {}
        for name, param in model.named_parameters(remove_duplicate=False):
            names.setdefault(id(param), []).append(name)
        for aliases in names.values():
            present = [a for a in aliases if a in state]
            for alias in present[1:]:
                state[alias] = state[present[0]]
        return state


def _one_process_group(device: torch.device) -> None:
    """A process group of one for FSDP2 when the run was started without a launcher."""
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def strategy_of(trainer: Any) -> Strategy:
    """`trainer.strategy` as the enum (a plain string or a missing key, `ddp`, are accepted)."""
    value = getattr(trainer, "strategy", Strategy.ddp)
    return value if isinstance(value, Strategy) else Strategy(str(value))


def make_strategy(trainer: Any, accelerator: Any) -> DataParallel | FullySharded:
    return FullySharded(accelerator) if strategy_of(trainer) == Strategy.fsdp else DataParallel(accelerator)


def original_class_name(model: nn.Module) -> str:
    """The model's class name without FSDP2's dynamic `FSDP<name>` subclass."""
    from sdpo_exp.sdpo.sharding import fsdp_modules

    cls = type(model)
    if fsdp_modules(model) and cls.__name__.startswith("FSDP"):
        for base in cls.__mro__[1:]:
            if base.__name__ == cls.__name__[len("FSDP") :]:
                return base.__name__
    return cls.__name__
