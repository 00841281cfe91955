"""How far the teacher's log-probs lie from a float32 reference in bf16: the plain teacher pass, the
same pass of each row alone, and the shared-prefix pass (the default), on the same batches.

    .venv/bin/python benchmarks/prefix_precision.py --model smollm2_135m --mode weights --batches 6
    .venv/bin/python benchmarks/prefix_precision.py --model tiny_random --mode autocast --batches 4

`--mode weights`: bf16 weights (model.dtype=bfloat16); `--mode autocast`: float32 weights under bf16
autocast (trainer.precision=bf16). Batches of four multi-turn chats (the shared-prefix tests' random
chats, seeds 100 + k) whose rows have different prefix lengths, right-padded, as the learner builds
them. The reference is the plain teacher pass of the float32 model. Per pass: mean |error| with its
standard error over the completion tokens, the 99th percentile and the maximum, and the paired mean
difference shared - plain. Results: one JSON line on stdout (methods: docs/losses.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "sdpo"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--mode", choices=["weights", "autocast"], default="weights")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--max-prompt", type=int, default=300)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from sdpo_testutils import random_interaction

    from sdpo_exp.config.schemas.loss import HindsightConfig
    from sdpo_exp.models import load_model, load_tokenizer
    from sdpo_exp.sdpo.batching import BatchBuilder
    from sdpo_exp.sdpo.hindsight import SkipInteraction
    from sdpo_exp.sdpo.logprobs import LogitHead, chunked_token_logprobs, completion_hidden_states
    from sdpo_exp.sdpo.prefix import (
        recorded_hidden_states,
        shared_prefix_lengths,
        suffix_completion_hidden_states,
    )

    from conftest import CACHE_DIR, model_cfg

    cfg = model_cfg(args.model, dtype="float32")
    tokenizer = load_tokenizer(cfg, CACHE_DIR)
    torch.manual_seed(0)
    reference_model = load_model(cfg, CACHE_DIR, tokenizer).eval()
    if args.mode == "weights":
        model = copy.deepcopy(reference_model).to(torch.bfloat16)
        precision = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    else:
        model = reference_model
        precision = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    builder = BatchBuilder(tokenizer, HindsightConfig(), cfg.chat_template_kwargs, args.max_prompt, 48)

    def plain(m, b):
        args_ = (b.teacher_input_ids, b.teacher_attention_mask, b.teacher_prompt_lens, b.completion_mask)
        hidden = completion_hidden_states(m, *args_)
        return chunked_token_logprobs(hidden, LogitHead.of(m), b.completion_ids[b.completion_mask])

    def shared(m, b, lengths):
        _, prefix = recorded_hidden_states(m, b.student_input_ids, b.student_attention_mask, lengths)
        args_ = (b.teacher_input_ids, b.teacher_attention_mask, b.teacher_prompt_lens, b.completion_mask)
        hidden = suffix_completion_hidden_states(m, *args_, prefix)
        return chunked_token_logprobs(hidden, LogitHead.of(m), b.completion_ids[b.completion_mask])

    errors: dict[str, list[torch.Tensor]] = {"plain": [], "rowwise": [], "shared": []}
    prefix_lengths: list[int] = []
    for k in range(args.batches):
        rng = random.Random(100 + k)
        encoded = []
        for i in range(4):
            try:
                encoded.append(builder.encode_one(random_interaction(rng, i)))
            except SkipInteraction:
                continue
        batch = builder.collate(encoded)
        lengths = shared_prefix_lengths(
            batch.student_input_ids,
            batch.student_prompt_lens,
            batch.teacher_input_ids,
            batch.teacher_prompt_lens,
        )
        prefix_lengths += lengths.tolist()
        with torch.no_grad():
            ref = plain(reference_model, batch).double()
            with precision():
                errors["plain"].append((plain(model, batch).double() - ref).abs())
                errors["shared"].append((shared(model, batch, lengths).double() - ref).abs())
                rows = torch.cat([plain(model, builder.collate([e])) for e in encoded])
                errors["rowwise"].append((rows.double() - ref).abs())
        print(f"batch {k}: prefixes {lengths.tolist()}", file=sys.stderr, flush=True)
    out: dict = {
        "model": args.model,
        "mode": args.mode,
        "batches": args.batches,
        "prefix_lengths": prefix_lengths,
    }
    for name, parts in errors.items():
        e = torch.cat(parts)
        out[name] = {
            "mean": float(e.mean()),
            "se": float(e.std() / math.sqrt(e.numel())),
            "p99": float(e.quantile(0.99)),
            "max": float(e.max()),
            "tokens": int(e.numel()),
        }
    diff = torch.cat(errors["shared"]) - torch.cat(errors["plain"])
    out["shared_minus_plain"] = {
        "mean": float(diff.mean()),
        "se": float(diff.std() / math.sqrt(diff.numel())),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
