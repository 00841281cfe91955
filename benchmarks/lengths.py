"""Lengths of logged interactions (context x, completion y, follow-up o) for `benchmarks/step.py
--part realistic`: a seeded sampler whose distributions follow published statistics of WildChat.

Source: WildChat (Zhao et al., 2024, "WildChat: 1M ChatGPT Interaction Logs in the Wild", ICLR 2024,
Table 1): 1,039,785 conversations with 2,639,415 turns (2.54 user turns per conversation), user turns
of 295.58 +- 1,609.18 tokens and assistant turns of 441.34 +- 410.91 tokens (mean +- standard
deviation). WildFeedback (Shi et al., 2024) is drawn from WildChat's conversations, so its turns
follow the same distributions. The paper counts tokens with another tokenizer than SmolLM2's; the
figures are used as SmolLM2 tokens as they are.

Model (stated in docs/benchmarks.md too):

- a message's length is log-normal with the stated mean m and standard deviation s:
  sigma^2 = ln(1 + s^2 / m^2), mu = ln(m) - sigma^2 / 2 (user: mu 3.98, sigma 1.85, median 53 tokens;
  assistant: mu 5.78, sigma 0.79, median 323 tokens), rounded, at least 1 token;
- the number of user turns T of a conversation is geometric on {1, 2, ...} with mean 2.54. An
  interaction is an assistant turn t followed by the user's next message, which exists when T > t;
  drawn uniformly from all such pairs of the logs, the number of earlier exchanges t - 1 is again
  geometric, P(t - 1 = k) = (1 - q) q^k with q = 1 - 1 / 2.54;
- the context x is those t - 1 (user, assistant) exchanges and the user's turn t; the completion y
  is an assistant turn, the follow-up o a user turn;
- clipping as the trainer does: a context longer than `max_context` tokens loses whole oldest
  exchanges (`sdpo_exp.sdpo.truncation`), a single user turn longer than that is cut to it; the
  completion is cut to `max_completion` (the trainer's `max_completion_tokens`), the follow-up to
  `max_followup`.

Deterministic for a seed (NumPy's PCG64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SOURCE = (
    "WildChat (Zhao et al., 2024), Table 1: 2.54 user turns per conversation, user turns 295.58 +- "
    "1,609.18 tokens, assistant turns 441.34 +- 410.91 tokens (mean +- s.d.)"
)
TURNS_MEAN = 2.54
USER_MEAN, USER_SD = 295.58, 1609.18
ASSISTANT_MEAN, ASSISTANT_SD = 441.34, 410.91


def lognormal_params(mean: float, sd: float) -> tuple[float, float]:
    """(mu, sigma) of the log-normal distribution with this mean and standard deviation."""
    sigma2 = math.log1p((sd / mean) ** 2)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)


@dataclass(frozen=True)
class RowLengths:
    """Token lengths of one interaction: the context's messages (user first, alternating, ending with
    a user message), the completion and the follow-up."""

    history: tuple[int, ...]
    completion: int
    followup: int
    dropped_exchanges: int = 0  # oldest (user, assistant) exchanges removed to fit max_context

    @property
    def context(self) -> int:
        return sum(self.history)


def parameters() -> dict[str, float]:
    """The sampler's parameters, for the results' JSON and docs."""
    user, assistant = lognormal_params(USER_MEAN, USER_SD), lognormal_params(ASSISTANT_MEAN, ASSISTANT_SD)
    return {
        "user_mu": user[0],
        "user_sigma": user[1],
        "assistant_mu": assistant[0],
        "assistant_sigma": assistant[1],
        "earlier_exchanges_q": 1 - 1 / TURNS_MEAN,
    }


def _clip_context(history: list[int], max_context: int) -> tuple[list[int], int]:
    dropped = 0
    while sum(history) > max_context and len(history) > 1:
        history = history[2:]  # the oldest exchange: a user message and the assistant's reply
        dropped += 1
    if sum(history) > max_context:
        history = [max_context]
    return history, dropped


def sample_rows(
    n: int,
    seed: int = 0,
    max_context: int = 2048,
    max_completion: int = 2048,
    max_followup: int = 256,
    scale: float = 1.0,
) -> list[RowLengths]:
    """`n` interactions' lengths, deterministic for `seed`; contexts in tokens of message content (the
    chat template adds a few tokens per message). `scale` multiplies every drawn length before
    rounding (below 1 only for the tiny smoke test)."""
    rng = np.random.default_rng(seed)
    (u_mu, u_sigma), (a_mu, a_sigma) = (
        lognormal_params(USER_MEAN, USER_SD),
        lognormal_params(ASSISTANT_MEAN, ASSISTANT_SD),
    )

    def user() -> int:
        return max(1, round(scale * float(rng.lognormal(u_mu, u_sigma))))

    def assistant() -> int:
        return max(1, round(scale * float(rng.lognormal(a_mu, a_sigma))))

    q = 1 - 1 / TURNS_MEAN
    rows = []
    for _ in range(n):
        earlier = int(rng.geometric(1 - q)) - 1  # numpy's geometric starts at 1
        history = [length for _ in range(earlier) for length in (user(), assistant())] + [user()]
        completion, followup = assistant(), user()
        history, dropped = _clip_context(history, max_context)
        rows.append(
            RowLengths(tuple(history), min(completion, max_completion), min(followup, max_followup), dropped)
        )
    return rows


def describe(rows: list[RowLengths]) -> dict[str, float]:
    """Mean, median and range of the rows' context, completion and follow-up lengths."""
    out: dict[str, float] = {}
    for key in ("context", "completion", "followup"):
        values = np.array([getattr(r, key) for r in rows], dtype=float)
        out |= {
            f"{key}_mean": float(values.mean()),
            f"{key}_median": float(np.median(values)),
            f"{key}_min": float(values.min()),
            f"{key}_max": float(values.max()),
        }
    out["turns_mean"] = float(np.mean([(len(r.history) + 1) / 2 for r in rows]))
    return out
