"""Schemas of the raw sources that `task=prepare` turns into interaction or prompt files.

Each source reads its Hugging Face dataset with `datasets.load_dataset(hf_id, hf_config, split=...,
revision=...)` (or with `data_files` from `hf_data_files`), or, when `local_path` is set, local files
in the same raw schema (docs/data.md). Every option whose default follows the authors' preprocessing
scripts says so; where the project departs from them on purpose, docs/data.md gives the reason.
Conversation sources (WildFeedback, WildChat) also carry the interaction-file fields, pointing at
their prepared output, so that `task=offline dataset=wildfeedback` trains on what `prepare` wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

from sdpo_exp.config.registry import schema
from sdpo_exp.config.schemas.dataset import InteractionFilesConfig, PromptFilesConfig


@dataclass
class RawSourceConfig:
    """Where the raw rows come from."""

    hf_id: str = MISSING
    hf_config: str | None = None
    splits: list[str] = field(default_factory=lambda: ["train"])
    revision: str | None = None
    # Name a split's files explicitly instead of asking for the builder config `hf_config`: a pattern
    # relative to the repository with `{config}` and `{split}` (the Hub's parquet export:
    # `{config}/{split}/*.parquet`). Used for the Hub and for a downloaded copy alike.
    hf_data_files: str | None = None
    # A data file, or a directory: your own `<split>.parquet|jsonl[.gz]|json[.gz]` files or a downloaded
    # snapshot of the Hub repository (its README's configs pick the files); replaces the download.
    local_path: str | None = None
    # Read at most this many raw rows per split (None: all); for smoke tests on the real data.
    max_rows: int | None = None
    # Where the prepared files and prepare_stats.json are written.
    output_dir: str = MISSING


class SameRoleRuns(Enum):
    """What x keeps of consecutive messages with the same role (e.g. two user messages around an
    empty assistant reply)."""

    first = "first"  # the authors' scripts: the first message of the run, the others dropped
    merge = "merge"  # one message, the texts joined by a blank line (this project's default)
    keep = "keep"  # every message as it is (x then does not alternate)


@dataclass
class ConversationRulesConfig:
    """The authors' conversation filters and history rule (docs/data.md)."""

    min_messages: int = 3
    max_total_chars: int = 100_000
    max_assistant_chars: int = 4096
    # A conversation with a user message longer than this is dropped (the authors' WildChat script:
    # 4,096); None: no limit (their WildFeedback script).
    max_user_chars: int | None = None
    # True (the authors' WildChat script): strip every message and remove empty messages and unknown
    # roles before the filters and the split rule; False (their WildFeedback script): filters and split
    # on the raw messages, only x is cleaned.
    clean_first: bool = False
    history_messages: int = 5
    same_role_runs: SameRoleRuns = SameRoleRuns.merge


@dataclass
class ConversationSourceConfig(InteractionFilesConfig, RawSourceConfig):
    """A source of multi-turn conversations, split into (x, y, o) interactions."""

    # The raw column with the message list, and how a message names its role and text.
    messages_field: str = "conversations"
    role_key: str = "from"
    content_key: str = "value"
    # Raw columns holding a conversation id, the first present wins (WildChat: `conversation_id`,
    # WildChat-1M: `conversation_hash`); none present: `<split>-<row number>`.
    id_fields: list[str] = field(default_factory=list)
    rules: ConversationRulesConfig = field(default_factory=ConversationRulesConfig)
    # Fraction of conversations (chosen by a hash of the id and `heldout_seed`) written to the eval
    # file instead of the train file; 0 writes everything to train, as the paper did.
    heldout_fraction: float = 0.0
    heldout_seed: int = 0
    # Stop once this many conversations passed the filters (None: no limit) ...
    max_conversations: int | None = None
    # ... or once this many interactions are written and at least `min_conversations_to_stop`
    # conversations passed the filters (the authors' WildChat rule: 15,000, or 14,000 with 50,000).
    max_interactions: int | None = None
    min_conversations_to_stop: int = 0
    # Shuffle the raw rows with this seed before reading (None: the dataset's order).
    shuffle_seed: int | None = None
    # Keep only conversations whose `language_field` is one of these (case-insensitive); empty: all.
    languages: list[str] = field(default_factory=list)
    language_field: str = "language"


@schema("dataset", "wildfeedback")
@dataclass
class WildFeedbackDatasetConfig(ConversationSourceConfig):
    name: str = "wildfeedback"
    hf_id: str = "microsoft/WildFeedback"
    hf_config: str | None = "wildfeedback"


@schema("dataset", "wildchat")
@dataclass
class WildChatDatasetConfig(ConversationSourceConfig):
    name: str = "wildchat"
    hf_id: str = "allenai/WildChat"
    messages_field: str = "conversation"
    role_key: str = "role"
    content_key: str = "content"
    id_fields: list[str] = field(default_factory=lambda: ["conversation_id", "conversation_hash"])
    shuffle_seed: int | None = 42
    max_conversations: int | None = 15_000
    max_interactions: int | None = 50_000
    min_conversations_to_stop: int = 14_000
    rules: ConversationRulesConfig = field(
        default_factory=lambda: ConversationRulesConfig(max_user_chars=4096, clean_first=True)
    )
    languages: list[str] = field(default_factory=lambda: ["english", "en"])


class DedupKey(Enum):
    exact = "exact"  # the prompt text as written (after stripping, when `strip` is on)
    normalised = "normalised"  # lower case, runs of whitespace collapsed


@dataclass
class PromptSourceConfig(PromptFilesConfig, RawSourceConfig):
    """A source of single-turn prompts (for the online setting): one JSON object per line. It also
    carries the prompt-file fields, pointing at its prepared output, so that `task=online
    dataset=helpsteer2` samples on what `prepare` wrote."""

    splits: list[str] = field(default_factory=lambda: ["train", "validation"])
    max_prompt_chars: int = 2048
    # Strip leading and trailing whitespace from the prompt (and the response) before the checks and
    # write the stripped prompt (the authors' scripts do).
    strip: bool = True
    # Which prompts count as the same one (each is written once per split).
    dedup: DedupKey = DedupKey.exact


@schema("dataset", "helpsteer2")
@dataclass
class HelpSteer2DatasetConfig(PromptSourceConfig):
    name: str = "helpsteer2"
    hf_id: str = "nvidia/HelpSteer2"
    max_prompt_chars: int = 2048
    max_response_chars: int = 2048
    # Prompts matching this regular expression (case-insensitive) are multi-turn conversations
    # flattened into one string.
    multi_turn_pattern: str = r"<extra_id_\d+>"


@schema("dataset", "tldr")
@dataclass
class TLDRDatasetConfig(PromptSourceConfig):
    name: str = "tldr"
    hf_id: str = "openai/summarize_from_feedback"
    hf_config: str | None = "comparisons"
    # The repository holds a loading script, which `datasets` no longer runs; the Hub's parquet
    # export of the same data lives on this branch.
    revision: str | None = "refs/convert/parquet"
    hf_data_files: str | None = "{config}/{split}/*.parquet"
    # The prompt is the first of these `info` fields that is a non-empty string (the validation split's
    # CNN/Daily Mail rows have no post, only an article).
    text_fields: list[str] = field(default_factory=lambda: ["post", "article"])
    # Appended to the (stripped) text; the prompt with it must be shorter than `max_prompt_chars`.
    prompt_suffix: str = "\nTL;DR:\n"
    max_prompt_chars: int = 1024
    dedup: DedupKey = DedupKey.normalised
    system_prompt: str = (
        "Write summary of the text that is 1-2 sentences long. Always begin with 'TL;DR:' and output "
        "only the summary."
    )
