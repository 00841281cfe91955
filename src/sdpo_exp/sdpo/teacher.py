"""Teachers: which weights score the hindsight context (x, o).

- live: the current weights (the paper's choice).
- ema: an exponential moving average of the trainable weights, updated after each optimiser step.
- base: the frozen initial weights.
- trust_region: teacher logits = lerp(base, current, r) = (1 - r) * base + r * current, both on (x, o).

Other weights are used by swapping them into the model for the teacher's forward pass, never by a
second copy of the model: with LoRA the base weights are the model with its adapters disabled
(PEFT's adapter switch; no copy at all) and an EMA teacher keeps an average of the adapter weights
only. Without LoRA, ema and base keep one copy of the trainable weights (inevitably).

Shared prefix (`loss.shared_prefix`, see `prefix`): `mixture` may get recorded prefix keys/values
by weights, `CURRENT` (from the student's forward) and `INITIAL` (from the `kl_to_ref` reference
pass). A teacher uses the prefix recorded with its own weights when there is one (live: CURRENT;
base: INITIAL; trust_region: each part its own) and the plain pass otherwise (ema always: nothing
else runs with its weights, and a prefix pass of its own would cost what it saves).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from sdpo_exp.errors import SdpoError
from sdpo_exp.sdpo.logprobs import LogitHead, LogitMixture
from sdpo_exp.sdpo.packing import PackedPrefix, context_hidden_states, suffix_hidden_states
from sdpo_exp.sdpo.prefix import PrefixKV
from sdpo_exp.sdpo.sharding import all_reduce_sum, exchanged, is_sharded, local_tensor

log = logging.getLogger(__name__)

CURRENT, INITIAL = "current", "initial"  # the weights a recorded prefix was computed with
Prefixes = Mapping[str, PrefixKV | PackedPrefix]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off for a teacher pass; every module's own train/eval flag is restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def find_peft_model(model: nn.Module) -> nn.Module | None:
    """The PEFT model inside DDP/compile wrappers, or None."""
    for _ in range(8):
        if hasattr(model, "peft_config") and hasattr(model, "disable_adapter"):
            return model
        for attr in ("module", "_orig_mod"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return None
    return None


class ParamSnapshot:
    """A detached copy of some parameters that can be swapped into the model in place of theirs.

    Under FSDP2 (`model` sharded) the copy is of this process's shards only, and swapping in exchanges
    shard values (see `sharding`)."""

    def __init__(
        self,
        named: list[tuple[str, nn.Parameter]],
        float32_master: bool = False,
        model: nn.Module | None = None,
    ) -> None:
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.sharded_model = model if model is not None and is_sharded(model) else None
        with torch.no_grad():
            self.tensors = [p.detach().clone() for p in self.params]
            # An average kept in bf16/fp16 would stall: rate * (difference) falls below their resolution.
            self.master = [
                t.float() if float32_master and t.dtype in (torch.bfloat16, torch.float16) else t
                for t in self.tensors
            ]

    @classmethod
    def trainable(cls, model: nn.Module, float32_master: bool = False) -> ParamSnapshot:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise SdpoError("the model has no trainable parameters to take a teacher snapshot of")
        return cls(named, float32_master, model)

    @property
    def num_elements(self) -> int:
        return sum(t.numel() for t in self.tensors)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        # Autocast caches the low-precision copy of each parameter by the parameter's identity, which
        # swapping `.data` keeps: without clearing, a pass with swapped weights would reuse the casts
        # of the live weights (and the live passes after it the casts of the swapped ones).
        torch.clear_autocast_cache()
        if self.sharded_model is not None:
            with exchanged(self.sharded_model, self.params, self.tensors):
                yield
            torch.clear_autocast_cache()
            return
        live = [p.data for p in self.params]
        for p, t in zip(self.params, self.tensors, strict=True):
            p.data = t
        try:
            yield
        finally:
            for p, data in zip(self.params, live, strict=True):
                p.data = data
            torch.clear_autocast_cache()

    @torch.no_grad()
    def lerp_(self, rate: float) -> None:
        """snapshot <- (1 - rate) * snapshot + rate * current weights."""
        for m, t, p in zip(self.master, self.tensors, self.params, strict=True):
            m.lerp_(p.detach().to(m.dtype), rate)
            if m is not t:
                t.copy_(m)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: m.detach().cpu().clone() for n, m in zip(self.names, self.master, strict=True)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise SdpoError(f"teacher snapshot state lacks {sorted(missing)[:3]} (and maybe more)")
        for n, m, t in zip(self.names, self.master, self.tensors, strict=True):
            m.copy_(state[n])
            if m is not t:
                t.copy_(m)

    def fingerprint(self) -> list[float]:
        """Per tensor: sum + norm of the whole tensor (over every process's shard when sharded)."""
        if not self.tensors:
            return []
        local = [local_tensor(t).double() for t in self.tensors]
        sums = torch.stack([torch.stack([t.sum(), t.square().sum()]) for t in local]).cpu()
        if self.sharded_model is not None:
            sums = all_reduce_sum(sums)
        return [float(s) + float(q.sqrt()) for s, q in sums]


class InitialWeights:
    """The model's initial weights: PEFT's disabled adapters, or a snapshot taken at construction."""

    def __init__(self, model: nn.Module) -> None:
        self.peft = find_peft_model(model)
        self.snapshot = None if self.peft is not None else ParamSnapshot.trainable(model)
        if self.snapshot is not None:
            log.info(
                "Keeping a copy of the %.1fM initial trainable weights (no LoRA: base/reference weights "
                "cannot come from an adapter switch)",
                self.snapshot.num_elements / 1e6,
            )

    def active(self) -> Any:
        if self.peft is not None:
            return self.peft.disable_adapter()
        return self.snapshot.swapped_in()

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.snapshot.fingerprint()} if self.snapshot is not None else {}

    def check(self, state: dict[str, Any]) -> None:
        """Refuse to resume when this objective's initial weights are not the run's initial weights."""
        if self.snapshot is None or "fingerprint" not in state:
            return
        ours, theirs = self.snapshot.fingerprint(), state["fingerprint"]
        if len(ours) != len(theirs) or any(
            abs(a - b) > 1e-6 * max(1.0, abs(b)) for a, b in zip(ours, theirs, strict=True)
        ):
            raise SdpoError(
                "the objective's initial (base/reference) weights differ from those of the run being resumed: "
                "build the objective on the freshly loaded initial model, before loading checkpoint weights"
            )


def teacher_source(
    model: nn.Module, batch: Any, weights: Any = None, prefix: PrefixKV | PackedPrefix | None = None
) -> tuple[torch.Tensor, LogitHead]:
    """Hidden states at the teacher's completion positions under `weights` (a context manager that
    puts other weights in place, or None for the current ones), and the matching LM head. With
    `prefix` (recorded with the same weights) only each row's suffix after it is computed."""
    args = (batch.teacher_input_ids, batch.teacher_attention_mask, batch.teacher_prompt_lens)
    with weights if weights is not None else nullcontext():
        if prefix is None:
            hidden, _ = context_hidden_states(model, *args, batch.completion_mask, batch.packed)
        else:
            hidden = suffix_hidden_states(model, *args, batch.completion_mask, prefix)
        head = LogitHead.of(model)
        if weights is not None:
            # capture the weights in place now, not those in place later (a copy of FSDP's gathered
            # weight, which the next forward refills)
            head = head.frozen(copy=is_sharded(model))
    return hidden, head


class Teacher:
    """Produces the teacher's logits (as a LogitMixture) for a batch; called under no_grad."""

    kind = "live"

    def prefix_weights(self) -> tuple[str, ...]:
        """The weights whose recorded prefix this teacher can use."""
        return (CURRENT,)

    def mixture(self, model: nn.Module, batch: Any, prefixes: Prefixes | None = None) -> LogitMixture:
        return LogitMixture.single(*teacher_source(model, batch, prefix=(prefixes or {}).get(CURRENT)))

    def on_optimizer_step(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EMATeacher(Teacher):
    kind = "ema"

    def __init__(self, model: nn.Module, rate: float) -> None:
        self.rate = float(rate)
        self.snapshot = ParamSnapshot.trainable(model, float32_master=True)
        self.updates = 0

    def prefix_weights(self) -> tuple[str, ...]:
        return ()

    def mixture(self, model: nn.Module, batch: Any, prefixes: Prefixes | None = None) -> LogitMixture:
        return LogitMixture.single(*teacher_source(model, batch, self.snapshot.swapped_in()))

    def on_optimizer_step(self) -> None:
        self.snapshot.lerp_(self.rate)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.snapshot.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "ema" not in state:
            raise SdpoError("the saved objective state has no EMA teacher (saved with another teacher kind?)")
        self.snapshot.load_state_dict(state["ema"])
        self.updates = int(state.get("updates", 0))


class BaseTeacher(Teacher):
    kind = "base"

    def __init__(self, initial: InitialWeights) -> None:
        self.initial = initial

    def prefix_weights(self) -> tuple[str, ...]:
        return (INITIAL,)

    def mixture(self, model: nn.Module, batch: Any, prefixes: Prefixes | None = None) -> LogitMixture:
        prefix = (prefixes or {}).get(INITIAL)
        return LogitMixture.single(*teacher_source(model, batch, self.initial.active(), prefix))


class TrustRegionTeacher(Teacher):
    kind = "trust_region"

    def __init__(self, initial: InitialWeights, r: float) -> None:
        self.initial, self.r = initial, float(r)

    def prefix_weights(self) -> tuple[str, ...]:
        return ((INITIAL,) if self.r < 1.0 else ()) + ((CURRENT,) if self.r > 0.0 else ())

    def mixture(self, model: nn.Module, batch: Any, prefixes: Prefixes | None = None) -> LogitMixture:
        prefixes = prefixes or {}
        parts = []
        if self.r < 1.0:
            base = teacher_source(model, batch, self.initial.active(), prefixes.get(INITIAL))
            parts.append((1.0 - self.r, *base))
        if self.r > 0.0:
            parts.append((self.r, *teacher_source(model, batch, prefix=prefixes.get(CURRENT))))
        return LogitMixture(parts)
