"""The FSDP exactness cases: two optimiser steps of the learner's update under one process and under
FSDP2 across processes, for every loss and teacher kind, tied and untied heads, Qwen3 and Llama.

`run_case` is the whole step as the learner runs it (`accumulate_gradients`, gradient clipping,
AdamW, `on_optimizer_step`); `strategy` None runs the plain model in one process (the reference),
a `FullySharded` strategy the sharded one. Each process takes its rows of the step's global batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from exact_reference import unequal_batch

from sdpo_exp.sdpo.batching import collate_encoded
from sdpo_exp.sdpo.objective import SDPOObjective
from sdpo_exp.training.update import accumulate_gradients

VOCAB = 53
# two steps of four sequences of unequal lengths; each process takes two (rank 0: rows 0 and 3)
STEP_LENGTHS = [[1, 2, 9, 10], [7, 3, 5, 1]]
SPLIT = {0: [0, 3], 1: [1, 2]}
LR = 1e-3


def make_model(shape: str) -> torch.nn.Module:
    """A tiny random model: `qwen3` (untied head), `qwen3_tied`, `llama_tied`, float32, seeded."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                  pad_token_id=0, attn_implementation="eager", tie_word_embeddings=shape.endswith("_tied"))  # fmt: skip
    torch.manual_seed(11)
    if shape.startswith("llama"):
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        model = Qwen3ForCausalLM(Qwen3Config(**common))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.3)
        model.get_output_embeddings().weight.mul_(3.0 / math.sqrt(32))
    return model


def loss_cfg(spec: str) -> Any:
    """`<loss>[+<teacher>][+ref][+shared]`, e.g. `pg+ema`, `topk+trust_region+shared`, `pg+ref`."""
    from sdpo_exp.config.schemas.loss import (
        FullKLLossConfig,
        JSDLossConfig,
        PGLossConfig,
        SFTLossConfig,
        TeacherConfig,
        TeacherKind,
        TopKLossConfig,
    )

    name, *options = spec.split("+")
    makers = {"pg": PGLossConfig, "sft": SFTLossConfig, "full_kl": FullKLLossConfig,
              "topk": lambda **kw: TopKLossConfig(k=5, **kw), "jsd": lambda **kw: JSDLossConfig(alpha=0.3, **kw)}  # fmt: skip
    kwargs: dict[str, Any] = {"chunk_size": 4}
    if name != "sft":
        kind = next((o for o in options if o in ("live", "ema", "base", "trust_region")), "live")
        kwargs["teacher"] = TeacherConfig(kind=TeacherKind(kind), ema_rate=0.5, trust_region_r=0.4)
        kwargs["shared_prefix"] = "shared" in options
    if "ref" in options:
        kwargs["kl_to_ref_beta"] = 0.3
    return makers[name](**kwargs)


CASES = {
    "qwen3": ["pg", "sft", "full_kl", "topk", "jsd", "pg+ema", "pg+base", "topk+trust_region", "pg+ref",
              "pg+shared", "topk+trust_region+shared", "pg+ref+shared", "full_kl+ema+ref"],
    "qwen3_tied": ["pg", "topk+ema", "pg+base+shared", "jsd+trust_region+ref"],
    "llama_tied": ["pg+shared", "full_kl+ema", "pg+trust_region+ref"],
}  # fmt: skip
# under bf16 autocast, as the paper presets train (float32 weights computing in bf16)
BF16_CASES = {"qwen3": ["pg+ema", "topk+trust_region+shared"], "qwen3_tied": ["pg+base+ref"]}


def step_rows(step: int) -> list[dict]:
    encoded, _ = unequal_batch(VOCAB, STEP_LENGTHS[step], seed=20 + step)
    return encoded


def run_case(
    shape: str, spec: str, accelerator: Any, strategy: Any = None, split_like_ranks: bool = False
) -> dict[str, Any]:
    """Two optimiser steps; the step losses and the full weights after them (on every process).
    `split_like_ranks` (one process): accumulate the ranks' rows as two micro-batches, so that under
    bf16 autocast every forward has the shapes, and so the rounding, of a rank's."""
    model = make_model(shape)
    if strategy is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    else:
        model, optimizer = strategy.prepare(model, lambda m: torch.optim.AdamW(m.parameters(), lr=LR))
    objective = SDPOObjective(model, loss_cfg(spec))
    rank, world = accelerator.process_index, accelerator.num_processes
    losses, norms = [], []
    for step in range(len(STEP_LENGTHS)):
        rows = step_rows(step)
        if world > 1:
            batches = [collate_encoded([rows[i] for i in SPLIT[rank]], pad_id=0)]
        elif split_like_ranks:  # each rank's rows as one micro-batch: the same shapes in every forward
            batches = [collate_encoded([rows[i] for i in part], pad_id=0) for part in SPLIT.values()]
        else:
            batches = [collate_encoded(rows, pad_id=0)]
        sums = accumulate_gradients(accelerator, model, objective, batches, [True] * len(batches))
        metrics = sums.reduce(accelerator)
        if strategy is None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        else:
            norms.append(strategy.clip_grad_norm(model, 1.0))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        objective.on_optimizer_step()
        losses.append(metrics["loss"])
    if strategy is None:
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        full = strategy.full_state_dict(model)  # every process takes part in gathering
        weights = full if rank == 0 else None
    return {"losses": losses, "grad_norms": norms, "weights": weights}
