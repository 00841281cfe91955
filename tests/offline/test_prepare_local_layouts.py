"""`dataset.local_path` pointed at what a user downloads: gzipped files, a snapshot of the Hub
repository with several configs, sharded parquet under data/, the parquet export; and the errors
that say which files are there when none fits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from raw_fixtures import (
    helpsteer2_snapshot,
    tldr_parquet_export,
    wildchat_rows,
    wildchat_snapshot,
    wildfeedback_rows,
    wildfeedback_snapshot,
    write_json_array,
    write_jsonl_gz,
)

from sdpo_exp.data.raw_files import split_files
from sdpo_exp.data.sources import get_preparer
from sdpo_exp.errors import DataError


def _prepare(compose, name: str, local_path: Path, out_dir: Path, *overrides: str) -> dict:
    cfg = compose("task=prepare", f"dataset={name}", f"dataset.local_path={local_path}",
                  f"dataset.output_dir={out_dir}", *overrides)  # fmt: skip
    return get_preparer(name)(cfg.dataset, out_dir).to_json()


def _prompts(path: Path) -> list[str]:
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines()]


def test_helpsteer2_download_with_gzipped_splits(compose, tmp_path):
    stats = _prepare(compose, "helpsteer2", helpsteer2_snapshot(tmp_path / "hs"), tmp_path / "out")
    assert stats["rows_read_per_split"] == {"train": 11, "validation": 2}
    assert stats["written"] == {"train": 4, "validation": 2}
    assert _prompts(tmp_path / "out" / "validation.jsonl") == [
        "Summarise the news.",
        "Explain photosynthesis.",
    ]


def test_wildfeedback_snapshot_reads_only_the_wildfeedback_config(compose, tmp_path):
    for readme in (True, False):  # chosen by the card's configs, or by the file name without a card
        root = wildfeedback_snapshot(tmp_path / f"wf-{readme}", readme=readme)
        stats = _prepare(compose, "wildfeedback", root, tmp_path / f"out-{readme}")
        # the counts of the single-file fixture (test_offline_prepare): nothing else was read
        assert stats["rows_read"] == 9 and stats["interactions_written"] == 8, readme
        assert stats["dropped"]["conversation/malformed"] == 1


def test_a_config_the_card_does_not_list_is_named_with_the_ones_it_does(compose, tmp_path):
    root = wildfeedback_snapshot(tmp_path / "wf")
    with pytest.raises(DataError, match="lists the configs wildfeedback, sat_dsat_annotation, user_preference, "
                                        "not 'conversations'"):  # fmt: skip
        _prepare(compose, "wildfeedback", root, tmp_path / "out", "dataset.hf_config=conversations")


def test_several_files_and_none_for_the_config_says_which_are_there(tmp_path):
    write_json_array(tmp_path / "a.json", wildfeedback_rows())
    write_json_array(tmp_path / "b.json", wildfeedback_rows())
    with pytest.raises(DataError, match=r"none is named after the config 'wildfeedback': a\.json, b\.json"):
        split_files(tmp_path, "train", single_split=True, config_name="wildfeedback")


def test_wildchat_shards_under_data(compose, tmp_path):
    root = wildchat_snapshot(tmp_path / "wc", wildchat_rows(), shards=3)
    (root / "README.md").unlink()  # the shards are found by their names as well
    assert len(split_files(root, "train", single_split=True)) == 3
    stats = _prepare(compose, "wildchat", root, tmp_path / "out")
    assert (
        stats["rows_read"] == 7 and stats["conversations_kept"] == 6 and stats["interactions_written"] == 12
    )


def test_tldr_parquet_export_download(compose, tmp_path):
    stats = _prepare(compose, "tldr", tldr_parquet_export(tmp_path / "tldr"), tmp_path / "out")
    assert stats["rows_read_per_split"] == {"train": 7, "validation": 5}  # no axis rows
    assert stats["written"] == {"train": 3, "validation": 2}


def test_missing_split_lists_the_data_files_found(tmp_path):
    write_jsonl_gz(tmp_path / "train.jsonl.gz", [{"prompt": "p", "response": "r"}])
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(DataError, match=r"no raw files for split 'validation' .* found: train\.jsonl\.gz$"):
        split_files(tmp_path, "validation", single_split=False)


def test_a_file_that_is_not_data_is_refused(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="is not a raw data file"):
        split_files(path, "train", single_split=True)


@pytest.mark.skipif(importlib.util.find_spec("zstandard") is not None, reason="zstandard is installed")
def test_zstandard_files_need_the_zstandard_package(compose, tmp_path):
    path = tmp_path / "wildfeedback.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd")  # the zstandard magic number; never decompressed here
    with pytest.raises(DataError, match="needs the zstandard package"):
        _prepare(compose, "wildfeedback", path, tmp_path / "out")
