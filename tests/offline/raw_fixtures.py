"""Small raw files in each source's own schema and layout (written by the tests, read through
`datasets`): the fields of each row as the dataset cards and the authors' scripts name them, the
files as a download of the Hub repository holds them. Comments give the expected outcome."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_jsonl_gz(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def write_json_array(path: Path, rows: list[dict]) -> Path:
    """One JSON array of objects (how WildFeedback's `.json` files are written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return path


def write_readme(root: Path, yaml_lines: list[str]) -> Path:
    """A dataset card: YAML front matter (e.g. its `configs:`) and some prose."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "README.md"
    path.write_text("---\n" + "\n".join(yaml_lines) + "\n---\n\n# Dataset card\n\nProse.\n")
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
    """WildFeedback's `wildfeedback` config: `conversations` (from/value, human/gpt), the column the
    authors' script reads, beside the preference pair `chosen` / `rejected` (one {from, value} each),
    which nothing here reads (added by `with_preference_pair` for the snapshot layout)."""
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


def with_preference_pair(rows: list[dict]) -> list[dict]:
    return [{**r, "chosen": {"from": "gpt", "value": "A better reply."},
             "rejected": {"from": "gpt", "value": "The reply the user disliked."}} for r in rows]  # fmt: skip


def wildfeedback_snapshot(root: Path, readme: bool = True) -> Path:
    """A download of microsoft/WildFeedback: three configs, one JSON file each, named by the card."""
    if readme:
        write_readme(root, ["license: odc-by", "configs:", "- config_name: wildfeedback",
                            "  data_files: wildfeedback.json", "- config_name: sat_dsat_annotation",
                            "  data_files: sat_dsat_annotation.json", "- config_name: user_preference",
                            "  data_files: user_preference.json"])  # fmt: skip
    write_json_array(root / "wildfeedback.json", with_preference_pair(wildfeedback_rows()))
    # The other configs' rows (their fields are illustrative; none of them may be read as conversations)
    write_json_array(
        root / "sat_dsat_annotation.json",
        [
            {"conversation_id": f"c{i}", "domain": "coding", "intent": "ask", "sat": i % 2 == 0}
            for i in range(4)
        ],
    )
    write_json_array(root / "user_preference.json", [
        {"conversation_id": "c0", "preference": "Shorter answers.", "conversations": sharegpt(
            ("human", "a"), ("gpt", "b"), ("human", "c"))}])  # fmt: skip
    return root


def _wildchat_message(role: str, content: str, language: str = "English") -> dict:
    return {"content": content, "language": language, "redacted": False, "role": role, "toxic": False}


def _moderation() -> dict:
    return {"openai_moderation": [{"categories": {"harassment": False}, "category_scores": {"harassment": 0.001},
                                   "flagged": False}],
            "detoxify_moderation": [{"identity_attack": 0.0001, "insult": 0.0002, "toxicity": 0.0005}]}  # fmt: skip


def wildchat_row(cid: str, turns: list[tuple[str, str]], language: str = "English") -> dict:
    """A row of allenai/WildChat (its fields, moderation lists shortened)."""
    return {"conversation_id": cid, "model": "gpt-3.5-turbo", "timestamp": "2023-05-01T10:00:00",
            "conversation": [_wildchat_message(r, c, language) for r, c in turns],
            "turn": sum(r == "user" for r, _ in turns), "language": language, **_moderation(),
            "toxic": False, "redacted": False}  # fmt: skip


def wildchat_1m_row(chash: str, turns: list[tuple[str, str]]) -> dict:
    """A row of allenai/WildChat-1M: the id is `conversation_hash`; messages carry more fields."""
    conversation = [{**_wildchat_message(r, c), "country": "United States", "hashed_ip": "ab12",
                     "header": {"accept-language": "en-US", "user-agent": "Mozilla/5.0"}, "state": "Texas",
                     "timestamp": None if r == "assistant" else "2024-01-01T00:00:00",
                     "turn_identifier": 1000 + i} for i, (r, c) in enumerate(turns)]  # fmt: skip
    return {"conversation_hash": chash, "model": "gpt-4-0314", "timestamp": "2024-01-01T00:00:00",
            "conversation": conversation, "turn": sum(r == "user" for r, _ in turns), "language": "English",
            **_moderation(), "toxic": False, "redacted": False, "state": "Texas", "country": "United States",
            "hashed_ip": "ab12", "header": {"accept-language": "en-US", "user-agent": "Mozilla/5.0"}}  # fmt: skip


def wildchat_rows() -> list[dict]:
    """Six English conversations of two interactions each and one French one."""
    rows = [wildchat_row(f"wc{i}", [("user", f"Tell me about topic {i}."), ("assistant", f"Topic {i} is ..."),
                                    ("user", f"Too vague, give details on {i}."), ("assistant", f"Details {i}."),
                                    ("user", "Better.")]) for i in range(6)]  # fmt: skip
    rows.append(
        wildchat_row("wc-fr", [("user", "Bonjour"), ("assistant", "Salut"), ("user", "Merci")], "French")
    )
    return rows


def wildchat_rule_rows() -> list[dict]:
    """The authors' WildChat rules, in this order (read unshuffled): 5 interactions from 4 conversations."""
    return [
        # 0: u a u a u -> 2 interactions
        wildchat_row("r0", [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"), ("user", "ok")]),
        # 1: a user message of 4,097 characters -> conversation/user_too_long
        wildchat_row("r1", [("user", "u" * 4097), ("assistant", "a"), ("user", "more")]),
        # 2: a user message of exactly 4,096 characters -> kept, 1 interaction
        wildchat_row("r2", [("user", "v" * 4096), ("assistant", "a"), ("user", "more")]),
        # 3: an empty reply between two user messages: removed first; a2's x holds the run q1, q2 -> 1
        wildchat_row("r3", [("user", "q1"), ("assistant", ""), ("user", "q2"), ("assistant", "a2"), ("user", "ok")]),
        # 4: u, whitespace-only reply, u -> 2 messages once cleaned -> conversation/too_few_messages
        wildchat_row("r4", [("user", "q"), ("assistant", "   "), ("user", "hello?")]),
        # 5: French -> conversation/language
        wildchat_row("r5", [("user", "Bonjour"), ("assistant", "Salut"), ("user", "Merci")], "French"),
        # 6: padded messages -> written stripped, 1 interaction
        wildchat_row("r6", [("user", "  padded question  "), ("assistant", "\n answer \n"), ("user", "thanks ")]),
    ]  # fmt: skip


def wildchat_snapshot(root: Path, rows: list[dict], shards: int = 2) -> Path:
    """A download of allenai/WildChat (or WildChat-1M): parquet shards under data/ and a card whose
    config names them, as `push_to_hub` writes it."""
    write_readme(root, ["license: odc-by", "configs:", "- config_name: default", "  data_files:",
                        "  - split: train", "    path: data/train-*"])  # fmt: skip
    size = -(-len(rows) // shards)
    for i in range(shards):
        write_parquet(
            root / "data" / f"train-{i:05d}-of-{shards:05d}.parquet", rows[i * size : (i + 1) * size]
        )
    return root


def helpsteer2_rows() -> dict[str, list[dict]]:
    """nvidia/HelpSteer2 rows; train: 4 prompts kept of 11 rows (dropped: 2 duplicate, 1 each of
    multi_turn, prompt_too_long, response_too_long, empty_prompt, empty_response)."""

    def row(prompt: str, response: str) -> dict:
        return {"prompt": prompt, "response": response, "helpfulness": 3, "correctness": 3, "coherence": 4,
                "complexity": 2, "verbosity": 2}  # fmt: skip

    train = [
        row("Explain photosynthesis.", "Plants turn light into sugar."),  # kept
        row("Explain photosynthesis.", "Another response to the same prompt."),  # duplicate
        row("  Explain photosynthesis.\n", "Padded prompt."),  # duplicate once stripped
        row("explain photosynthesis.", "Lower case."),  # kept: the authors compare the exact text
        row("Hi<extra_id_1>Assistant\nHello<extra_id_1>User\nMore", "ok"),  # multi_turn
        row("p" * 2049, "ok"),  # prompt_too_long
        row(" " + "q" * 2048 + " ", "ok"),  # kept: 2,048 characters once stripped
        row("Write a poem about the sea.", "r" * 2049),  # response_too_long ...
        row("Write a poem about the sea.", "Waves."),  # ... then kept with a short response
        row("   ", "empty"),  # empty_prompt
        row("Say hi.", "  "),  # empty_response
    ]
    validation = [row("Summarise the news.", "ok"), row("Explain photosynthesis.", "dup of train is fine")]
    return {"train": train, "validation": validation}


def helpsteer2_snapshot(root: Path) -> Path:
    """A download of nvidia/HelpSteer2: gzipped JSON lines per split beside two other file sets."""
    write_readme(root, ["license: cc-by-4.0", "language:", "- en", "pretty_name: HelpSteer2"])
    splits = helpsteer2_rows()
    write_jsonl_gz(root / "train.jsonl.gz", splits["train"])
    write_jsonl_gz(root / "validation.jsonl.gz", splits["validation"])
    write_jsonl_gz(
        root / "disagreements" / "disagreements.jsonl.gz", [{**splits["train"][0], "helpfulness": 1}]
    )
    write_jsonl_gz(root / "preference" / "preference.jsonl.gz", [
        {"split": "train", "prompt": "Explain photosynthesis.", "response_1": "a", "response_2": "b",
         "preference_strength": 1, "preference_statement": "@Response 2 is better.",
         "preference_elaboration": "More detail.", "three_most_similar_preferences": [],
         "all_preferences_unprocessed": [1, 1, 2]}])  # fmt: skip
    return root


def _tldr_info(post: str | None, article: str | None = None) -> dict:
    site = "cnn" if article is not None else None
    return {"id": "t3_x", "post": post, "title": "A title", "subreddit": None if site else "relationships",
            "site": site, "article": article}  # fmt: skip


def tldr_rows() -> dict[str, list[dict]]:
    """openai/summarize_from_feedback, config comparisons. Prompt = stripped post (or article) +
    "\\nTL;DR:\\n", kept below 1,024 characters. train: 3 kept of 7 (2 duplicate, 2 prompt_too_long);
    validation: 2 kept of 5 (1 each of seen_in_train, prompt_too_long, no_text)."""

    def row(info: dict, split: str) -> dict:
        return {"info": info,
                "summaries": [{"text": " TL;DR one", "policy": "sup1", "note": None},
                              {"text": " TL;DR two", "policy": "sup2", "note": None}],
                "choice": 0, "worker": "w1", "batch": "batch1", "split": split, "extra": {"confidence": 5}}  # fmt: skip

    train = [
        row(_tldr_info("My roommate never does the dishes. What do I do?"), "train"),
        row(_tldr_info("My roommate never does the dishes. What do I do?"), "train"),  # duplicate
        row(
            _tldr_info("  my ROOMMATE never does   the dishes.  What do I do? "), "train"
        ),  # duplicate (normalised)
        row(_tldr_info("z" * 1016), "train"),  # prompt_too_long: 1,016 + 8 = 1,024
        row(_tldr_info("z" * 1015), "train"),  # kept: 1,023 with the suffix
        row(_tldr_info("w" * 1020), "train"),  # prompt_too_long (a raw post under 1,024 is not enough)
        row(_tldr_info("I got a new job offer but I love my team."), "train"),
    ]
    validation = [
        row(_tldr_info("Should I adopt a second cat?"), "valid1"),
        row(_tldr_info("I got a new job offer but I love my team."), "valid1"),  # seen_in_train
        row(_tldr_info(None, "A short CNN article about a storm."), "valid2"),  # kept: the article
        row(_tldr_info(None, "n" * 2000), "valid2"),  # prompt_too_long
        row(_tldr_info(None, None), "valid2"),  # no_text
    ]
    return {"train": train, "validation": validation}


def tldr_parquet_export(root: Path) -> Path:
    """The Hub's parquet export of openai/summarize_from_feedback (branch refs/convert/parquet): one
    folder per config and split, no dataset card; the `axis` config beside `comparisons`."""
    splits = tldr_rows()
    write_parquet(root / "comparisons" / "train" / "0000.parquet", splits["train"])
    write_parquet(root / "comparisons" / "validation" / "0000.parquet", splits["validation"])
    axis = {"info": _tldr_info("An axis post."), "worker": "w2", "batch": "b2", "split": "valid1",
            "summary": {"text": " TL;DR axis", "policy": "ref", "note": None,
                        "axes": {"overall": 5, "accuracy": 6, "coverage": 5, "coherence": 7, "compatible": True}}}  # fmt: skip
    write_parquet(root / "axis" / "test" / "0000.parquet", [axis])
    write_parquet(root / "axis" / "validation" / "0000.parquet", [axis, axis])
    return root
