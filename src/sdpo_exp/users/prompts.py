"""The paper's user-simulator and judge prompts (Appendix D.3), as chat messages."""

from __future__ import annotations

SIMULATOR_SYSTEM = """USER PROFILE: {profile}
You are simulating the user's next message in a chat with an AI assistant.
Rules:
- Respond as the user described in the USER PROFILE, using straightforward language.
- Evaluate ONLY the assistant's response with respect to the preferences in the USER PROFILE.
- Do NOT answer the original user request yourself.
- Respond very briefly.
- Do NOT give feedback unrelated to the USER PROFILE.
- Output ONLY the user message text (no labels, no preface).
- If the assistant's response matches the USER PROFILE well, you may say so briefly."""

SIMULATOR_USER = """Original user request: {prompt}
Assistant response: {response}
Write the user's next message."""

JUDGE_SYSTEM = """USER PROFILE: {profile}
You are acting as a strict evaluator of WHICH response better matches your preference described in the USER PROFILE. You must follow these rules:
- Judge ONLY style, tone, formatting, verbosity, and complexity relative to the persona.
- Do NOT judge factual correctness.
- Do NOT rewrite responses.
- Output exactly ONE character: A, B, or C.
- C means tie/uncertain."""

JUDGE_USER = """User prompt: {prompt}
Response A: {a}
Response B: {b}
Which response do you prefer as this user? Output only A, B, or C."""


def simulator_messages(profile: str, prompt: str, response: str) -> list[dict[str, str]]:
    """The chat that asks a model to write the profile's user's next message."""
    return [
        {"role": "system", "content": SIMULATOR_SYSTEM.format(profile=profile)},
        {"role": "user", "content": SIMULATOR_USER.format(prompt=prompt, response=response)},
    ]


def judge_messages(profile: str, prompt: str, a: str, b: str) -> list[dict[str, str]]:
    """The chat that asks a model which of two responses the profile's user prefers."""
    return [
        {"role": "system", "content": JUDGE_SYSTEM.format(profile=profile)},
        {"role": "user", "content": JUDGE_USER.format(prompt=prompt, a=a, b=b)},
    ]
