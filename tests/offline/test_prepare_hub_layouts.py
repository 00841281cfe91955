"""The Hub calls of `task=prepare`, checked offline: the exact `datasets.load_dataset` arguments the
project passes for each source, with the repository id replaced by a local directory laid out as the
Hub repository (or its parquet export) is. For a local directory `datasets` resolves configs and
splits from the card and the file names with the same rules as for a Hub repository, so a wrong
config name or a missing split fails here as it would for a user with a network."""

from __future__ import annotations

import pytest
from raw_fixtures import (
    helpsteer2_snapshot,
    tldr_parquet_export,
    wildchat_1m_row,
    wildchat_rows,
    wildchat_snapshot,
    wildfeedback_snapshot,
)

from sdpo_exp.data.raw import hub_arguments


def _load_mirror(dataset_cfg, split: str, mirror):
    import datasets

    arguments = hub_arguments(dataset_cfg, split)
    return datasets.load_dataset(**{**arguments, "path": str(mirror)})


def test_wildfeedback_config_resolves_to_its_own_file(compose, tmp_path):
    cfg = compose("task=prepare", "dataset=wildfeedback").dataset
    assert hub_arguments(cfg, "train") == {"path": "microsoft/WildFeedback", "name": "wildfeedback",
                                          "split": "train", "revision": None}  # fmt: skip
    rows = _load_mirror(cfg, "train", wildfeedback_snapshot(tmp_path / "wf"))
    assert len(rows) == 9 and set(rows.column_names) == {"conversations", "chosen", "rejected"}


def test_wildchat_and_wildchat_1m_default_config(compose, tmp_path):
    cfg = compose("task=prepare", "dataset=wildchat").dataset
    assert hub_arguments(cfg, "train") == {"path": "allenai/WildChat", "name": None, "split": "train",
                                          "revision": None}  # fmt: skip
    rows = _load_mirror(cfg, "train", wildchat_snapshot(tmp_path / "wc", wildchat_rows(), shards=2))
    assert len(rows) == 7 and "conversation_id" in rows.column_names  # both shards

    one_m = [wildchat_1m_row(f"h{i}", [("user", "q"), ("assistant", "a"), ("user", "f")]) for i in range(5)]
    rows = _load_mirror(cfg, "train", wildchat_snapshot(tmp_path / "wc1m", one_m, shards=3))
    assert len(rows) == 5 and "conversation_hash" in rows.column_names


def test_helpsteer2_splits_are_the_gzipped_files_only(compose, tmp_path):
    cfg = compose("task=prepare", "dataset=helpsteer2").dataset
    mirror = helpsteer2_snapshot(tmp_path / "hs")
    train = _load_mirror(cfg, "train", mirror)
    validation = _load_mirror(cfg, "validation", mirror)
    # 11 and 2 rows: neither disagreements/ nor preference/ is read into a split
    assert (len(train), len(validation)) == (11, 2)
    assert "response_1" not in train.column_names


def test_tldr_comparisons_from_the_parquet_export(compose, tmp_path):
    import datasets

    cfg = compose("task=prepare", "dataset=tldr").dataset
    mirror = tldr_parquet_export(tmp_path / "tldr")
    assert hub_arguments(cfg, "validation") == {
        "path": "openai/summarize_from_feedback",
        "data_files": {"validation": "comparisons/validation/*.parquet"},
        "split": "validation",
        "revision": "refs/convert/parquet",
    }
    train = _load_mirror(cfg, "train", mirror)
    validation = _load_mirror(cfg, "validation", mirror)
    assert (len(train), len(validation)) == (7, 5)  # the axis config's 3 rows are not read
    assert "choice" in validation.column_names

    # why the files are named: asking for the config by name finds only `default` on the export
    with pytest.raises(ValueError, match="BuilderConfig 'comparisons' not found"):
        datasets.load_dataset(str(mirror), "comparisons", split="train", revision="refs/convert/parquet")
