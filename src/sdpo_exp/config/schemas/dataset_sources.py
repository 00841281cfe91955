"""Schemas of the raw sources that `task=prepare` turns into interaction or prompt files.

Each source reads its Hugging Face dataset with `datasets.load_dataset(hf_id, hf_config, split=...,
revision=...)`, or, when `local_path` is set, local parquet / JSON-lines files in the same raw schema.
Conversation sources (WildFeedback, WildChat) also carry the interaction-file fields, pointing at
their prepared output, so that `task=offline dataset=wildfeedback` trains on what `prepare` wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    # A parquet / JSON-lines file, or a directory holding `<split>.parquet|jsonl|json` (or
    # `<split>-*.parquet`, `<split>/*.parquet`) files; replaces the hub download when set.
    local_path: str | None = None
    # Read at most this many raw rows per split (None: all); for smoke tests on the real data.
    max_rows: int | None = None
    # Where the prepared files and prepare_stats.json are written.
    output_dir: str = MISSING


@dataclass
class ConversationRulesConfig:
    """The authors' conversation filters and history rule (reference page, section 4)."""

    min_messages: int = 3
    max_total_chars: int = 100_000
    max_assistant_chars: int = 4096
    history_messages: int = 5


@dataclass
class ConversationSourceConfig(InteractionFilesConfig, RawSourceConfig):
    """A source of multi-turn conversations, split into (x, y, o) interactions."""

    # The raw column with the message list, and how a message names its role and text.
    messages_field: str = "conversations"
    role_key: str = "from"
    content_key: str = "value"
    # The raw column holding a conversation id; None (or a row without it): `<split>-<row number>`.
    id_field: str | None = None
    rules: ConversationRulesConfig = field(default_factory=ConversationRulesConfig)
    # Fraction of conversations (chosen by a hash of the id and `heldout_seed`) written to the eval
    # file instead of the train file; 0 writes everything to train, as the paper did.
    heldout_fraction: float = 0.0
    heldout_seed: int = 0
    # Stop after this many kept conversations / written interactions (None: no limit).
    max_conversations: int | None = None
    max_interactions: int | None = None
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
    id_field: str | None = "conversation_id"
    shuffle_seed: int | None = 42
    max_conversations: int | None = 14_000
    max_interactions: int | None = 50_000
    languages: list[str] = field(default_factory=lambda: ["english", "en"])


@dataclass
class PromptSourceConfig(PromptFilesConfig, RawSourceConfig):
    """A source of single-turn prompts (for the online setting): one JSON object per line. It also
    carries the prompt-file fields, pointing at its prepared output, so that `task=online
    dataset=helpsteer2` samples on what `prepare` wrote."""

    splits: list[str] = field(default_factory=lambda: ["train", "validation"])
    max_prompt_chars: int = 2048


@schema("dataset", "helpsteer2")
@dataclass
class HelpSteer2DatasetConfig(PromptSourceConfig):
    name: str = "helpsteer2"
    hf_id: str = "nvidia/HelpSteer2"
    max_prompt_chars: int = 2048
    max_response_chars: int = 2048
    # Prompts holding this marker are multi-turn conversations flattened into one string.
    multi_turn_marker: str = "<extra_id_"


@schema("dataset", "tldr")
@dataclass
class TLDRDatasetConfig(PromptSourceConfig):
    name: str = "tldr"
    hf_id: str = "openai/summarize_from_feedback"
    hf_config: str | None = "comparisons"
    # The repository holds a loading script, which `datasets` no longer runs; the Hub's parquet
    # export of the same data lives on this branch.
    revision: str | None = "refs/convert/parquet"
    # Posts must be shorter than this (strictly).
    max_prompt_chars: int = 1024
    system_prompt: str = (
        "Write summary of the text that is 1-2 sentences long. Always begin with 'TL;DR:' and output "
        "only the summary."
    )
