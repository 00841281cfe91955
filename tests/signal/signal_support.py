"""Helpers of the signal-analysis tests: a signals.json-shaped document with known values.

(Not a conftest.py: a second module named `conftest` would shadow tests/conftest.py for the modules
that import from it.)"""

from __future__ import annotations

import math


def synthetic_document(n_cases: int = 4, length: int = 30) -> dict:
    """A document as task=signal writes it, with strong positive and negative advantages on the
    relevant follow-up and near-zero ones on the unrelated follow-up."""
    cases = []
    for c in range(n_cases):
        n = length - 3 * c
        tokens = [f" tok{i}" if i % 7 else "\n" for i in range(n)]
        student = [-1.0 - 0.05 * i for i in range(n)]
        followup = [3.0 * math.sin(0.4 * i + c) for i in range(n)]
        unrelated = [0.02 * math.cos(0.3 * i) for i in range(n)]
        cases.append(
            {
                "id": f"case_{c}",
                "kind": "constrain" if c % 2 else "reinforce",
                "prompt": [{"role": "user", "content": f"Prompt <b>{c}</b> & more"}],
                "followup": f"Relevant follow-up {c}",
                "unrelated": f"Unrelated follow-up {c}",
                "completion_source": "sampled",
                "completion_text": "".join(tokens),
                "completion_token_ids": list(range(100, 100 + n)),
                "tokens": tokens,
                "student_logprobs": student,
                "teacher_logprobs_followup": [s + a for s, a in zip(student, followup, strict=True)],
                "teacher_logprobs_unrelated": [s + a for s, a in zip(student, unrelated, strict=True)],
                "advantages_followup": followup,
                "advantages_unrelated": unrelated,
            }
        )
    return {"meta": {"model": "synthetic", "template": "paper"}, "cases": cases, "summary": {}}
