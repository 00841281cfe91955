"""Small raw files in each source's own schema (written by the tests, read through `datasets`)."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def sharegpt(*turns: tuple[str, str]) -> list[dict]:
    return [{"from": role, "value": text} for role, text in turns]


def wildfeedback_rows() -> list[dict]:
    """WildFeedback's `conversations` column (from/value, human/gpt). Comments give the expectation."""
    long_turns = []
    for i in range(5):
        long_turns += [("human", f"question {i}"), ("gpt", f"answer {i}")]
    return [
        # 0: u a u -> 1 interaction
        {"conversations": sharegpt(("human", "What is 2+2?"), ("gpt", "5"), ("human", "Wrong, it is 4."))},
        # 1: ten messages ending with an assistant -> 4 interactions; the last keeps 5 messages of history
        {"conversations": sharegpt(*long_turns)},
        # 2: a single prompt-response pair -> conversation dropped (too_few_messages)
        {"conversations": sharegpt(("human", "Hi"), ("gpt", "Hello!"))},
        # 3: an assistant message over 4,096 characters -> dropped (assistant_too_long)
        {"conversations": sharegpt(("human", "Essay"), ("gpt", "x" * 4097), ("human", "Shorter"))},
        # 4: over 100,000 characters in total -> dropped (too_long)
        {"conversations": sharegpt(("human", "y" * 100_001), ("gpt", "ok"), ("human", "thanks"))},
        # 5: system prompt, an empty message and an unknown role in the history
        {
            "conversations": sharegpt(
                ("system", "You are terse."),
                ("human", "Name a fruit."),
                ("bing", "ignored"),
                ("gpt", "Apple."),
                ("human", ""),
                ("human", "Another one?"),
                ("gpt", "Pear."),
                ("human", "Thanks, perfect."),
            )
        },
        # 6: non-alternating: leading assistant dropped after truncation, one x ending with assistant
        {
            "conversations": sharegpt(
                ("human", "u0"),
                ("gpt", "a1"),
                ("human", "u2"),
                ("gpt", "a3"),
                ("gpt", "a4"),
                ("human", "u5"),
                ("gpt", "a6"),
                ("human", "u7"),
            )
        },
        # 7: empty completion and an empty follow-up -> no interaction (both counted)
        {
            "conversations": sharegpt(
                ("human", "q"), ("gpt", " "), ("human", "hello?"), ("gpt", "Yes."), ("human", " ")
            )
        },
        # 8: not a list -> malformed
        {"conversations": "human: hi"},
    ]


def wildchat_rows() -> list[dict]:
    def msg(role: str, content: str, language: str = "English") -> dict:
        return {"role": role, "content": content, "language": language, "redacted": False, "toxic": False}

    rows = []
    for i in range(6):
        rows.append(
            {
                "conversation_id": f"wc{i}",
                "model": "gpt-3.5-turbo",
                "conversation": [
                    msg("user", f"Tell me about topic {i}."),
                    msg("assistant", f"Topic {i} is ..."),
                    msg("user", f"Too vague, give details on {i}."),
                    msg("assistant", f"Details {i}."),
                    msg("user", "Better."),
                ],  # fmt: skip
                "turn": 3,
                "language": "English",
                "toxic": False,
                "redacted": False,
            }
        )
    rows.append(
        {
            "conversation_id": "wc-fr",
            "model": "gpt-4",
            "conversation": [
                msg("user", "Bonjour", "French"),
                msg("assistant", "Salut", "French"),
                msg("user", "Merci", "French"),
            ],  # fmt: skip
            "turn": 2,
            "language": "French",
            "toxic": False,
            "redacted": False,
        }
    )
    return rows


def helpsteer2_rows() -> dict[str, list[dict]]:
    def row(prompt: str, response: str) -> dict:
        return {"prompt": prompt, "response": response, "helpfulness": 3, "correctness": 3, "coherence": 4,
                "complexity": 2, "verbosity": 2}  # fmt: skip

    train = [
        row("Explain photosynthesis.", "Plants turn light into sugar."),
        row("Explain photosynthesis.", "Another response to the same prompt."),  # duplicate
        row("Hi<extra_id_1>Assistant\nHello<extra_id_1>User\nMore", "ok"),  # multi_turn
        row("p" * 2049, "ok"),  # prompt_too_long
        row("Write a poem about the sea.", "r" * 2049),  # response_too_long ...
        row("Write a poem about the sea.", "Waves."),  # ... then kept with a short response
        row("   ", "empty"),  # empty_prompt
    ]
    validation = [row("Summarise the news.", "ok"), row("Explain photosynthesis.", "dup of train is fine")]
    return {"train": train, "validation": validation}


def tldr_rows() -> dict[str, list[dict]]:
    def row(post: str | None, split: str, article: str | None = None) -> dict:
        return {
            "info": {
                "id": "t3_x",
                "post": post,
                "title": "A title",
                "subreddit": "relationships",
                "site": None,
                "article": article,
            },  # fmt: skip
            "summaries": [
                {"text": " TL;DR one", "policy": "sup1", "note": None},
                {"text": " TL;DR two", "policy": "sup2", "note": None},
            ],  # fmt: skip
            "choice": 0,
            "worker": "w1",
            "batch": "batch1",
            "split": split,
            "extra": {"confidence": 5},
        }

    train = [
        row("My roommate never does the dishes. What do I do?", "train"),
        row("My roommate never does the dishes. What do I do?", "train"),  # duplicate
        row("  my ROOMMATE never does   the dishes.  What do I do? ", "train"),  # duplicate once normalised
        row("z" * 1024, "train"),  # prompt_too_long (must be < 1,024)
        row("I got a new job offer but I love my team.", "train"),
    ]
    validation = [
        row("Should I adopt a second cat?", "valid1"),
        row("I got a new job offer but I love my team.", "valid1"),  # seen_in_train
        row(None, "valid2", article="A CNN article."),  # no_post
    ]
    return {"train": train, "validation": validation}
