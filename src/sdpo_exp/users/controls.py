"""Control users: follow-ups that carry no information about the reply (`simulator=unrelated|neutral`).

A run with a control user is the same run in every other respect (prompts, sampling, seed, loss,
updates), so the difference between a run and its control is what the follow-ups said about the
replies. `unrelated` sends a new request on another subject (the control of the paper's signal
analysis, Section 5, as a user); `neutral` sends a content-free acknowledgement. Both ignore the
request and the reply except to pick a message: the choice is a hash of the two texts, so the same
interaction always gets the same follow-up, on every process and after a resume.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from sdpo_exp.errors import ConfigError
from sdpo_exp.users.profiles import UserProfile

# New requests on subjects that none of the demo's everyday prompts is about; none refers to an
# earlier message or says anything about style.
UNRELATED: tuple[str, ...] = (
    "What is the capital of Australia?",
    "How many legs does a spider have?",
    "Which planet is closest to the sun?",
    "What year did the first person walk on the moon?",
    "What is the Italian word for bread?",
    "What time zone is Tokyo in?",
    "How tall is Mount Everest?",
    "Who painted the Mona Lisa?",
    "What is the largest ocean on Earth?",
    "How many players are on a volleyball team?",
    "What does a barometer measure?",
    "Which country has the most islands?",
    "What is the chemical symbol for gold?",
    "How many strings does a standard violin have?",
    "What language is spoken in Brazil?",
    "When was the printing press invented?",
    "What is the largest desert in Africa?",
    "How many bones are in the human hand?",
    "Who wrote Pride and Prejudice?",
    "What is the freezing point of water in Fahrenheit?",
    "Which animal is the fastest on land?",
    "What is the smallest prime number?",
    "How far is the moon from the Earth?",
    "What currency is used in Switzerland?",
    "Which metal is liquid at room temperature?",
    "How many time zones does Russia have?",
    "Who discovered penicillin?",
    "What is the tallest tree species?",
    "Which gas do plants take in from the air?",
    "What is the name of the galaxy we live in?",
    "How many keys does a full piano have?",
    "Which city hosted the 2012 Summer Olympics?",
)

# Content-free acknowledgements: they neither approve nor criticise anything in particular.
NEUTRAL: tuple[str, ...] = (
    "ok, thanks",
    "Okay.",
    "Thanks.",
    "Got it.",
    "ok",
    "Alright, thanks.",
)

POOLS: dict[str, tuple[str, ...]] = {"unrelated": UNRELATED, "neutral": NEUTRAL}


def draw(pool: Sequence[str], request: str, reply: str) -> str:
    """The pool's message for this (request, reply): uniform over the pool, a function of the texts."""
    digest = hashlib.sha256(f"{request}\x00{reply}".encode()).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]


class ControlSimulator:
    """Answers every reply with a message from its pool (`kind`: unrelated or neutral, or `messages`
    of one's own). The profile is kept for the run's bookkeeping only: the control never reads it."""

    def __init__(self, profile: UserProfile, kind: str, messages: Sequence[str] = ()) -> None:
        if kind not in POOLS:
            raise ConfigError(f"unknown control user '{kind}'; valid choices: {', '.join(POOLS)}")
        pool = tuple(str(m) for m in messages) or POOLS[kind]
        if any(not m.strip() for m in pool):
            raise ConfigError("simulator.messages has an empty message: a control must always say something")
        self.profile, self.kind, self.pool = profile, kind, pool
        self.counts: Counter[str] = Counter()

    def followups(self, requests: Sequence[str], replies: Sequence[str]) -> list[str | None]:
        self.counts["calls"] += len(replies)
        return [draw(self.pool, q, r) for q, r in zip(requests, replies, strict=True)]

    def metrics(self) -> dict[str, float]:
        return dict(self.counts)
