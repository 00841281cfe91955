"""`task=prepare` on a fixture of each raw schema: the right interactions / prompts come out, and
every drop is counted by reason."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf
from raw_fixtures import (
    helpsteer2_rows,
    tldr_rows,
    wildchat_rows,
    wildfeedback_rows,
    write_jsonl,
    write_parquet,
)

from sdpo_exp.data.reader import read_interactions
from sdpo_exp.data.sources import get_preparer


def _prepare(compose, name: str, local_path: Path, out_dir: Path, *overrides: str):
    cfg = compose("task=prepare", f"dataset={name}", f"dataset.local_path={local_path}",
                  f"dataset.output_dir={out_dir}", *overrides)  # fmt: skip
    stats = get_preparer(name)(cfg.dataset, out_dir)
    return cfg, stats.to_json()


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_wildfeedback_split_rule_truncation_roles_and_filters(compose, tmp_path):
    raw = write_jsonl(tmp_path / "raw" / "wildfeedback.jsonl", wildfeedback_rows())
    _, stats = _prepare(compose, "wildfeedback", raw, tmp_path / "out")
    records = _records(tmp_path / "out" / "train.jsonl")
    by_id = {r["id"]: r for r in records}
    # conversation 5: "Apple." is followed by an empty user message (an empty follow-up, counted);
    # conversation 6: a3 is followed by an assistant message, a4's history ends with one (counted)
    assert sorted(by_id) == ["train-0-1", "train-1-1", "train-1-2", "train-1-3", "train-1-4",
                             "train-5-2", "train-6-1", "train-6-4"]  # fmt: skip

    first = by_id["train-0-1"]
    assert first["context"] == [{"role": "user", "content": "What is 2+2?"}]
    assert (first["completion"], first["followup"]) == ("5", "Wrong, it is 4.")
    assert first["meta"] == {"source": "wildfeedback"}

    # last-5 truncation: the 4th answer of conversation 1 sees only its last five messages
    fourth = by_id["train-1-4"]
    assert [m["content"] for m in fourth["context"]] == ["question 1", "answer 1", "question 2", "answer 2",
                                                         "question 3"]  # fmt: skip
    assert fourth["completion"] == "answer 3" and fourth["followup"] == "question 4"

    # role mapping, system kept, empty message and unknown role removed from the history
    pear = by_id["train-5-2"]
    assert pear["context"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Apple."},
        {"role": "user", "content": "Another one?"},
    ]
    assert pear["completion"] == "Pear." and pear["followup"] == "Thanks, perfect."

    # a leading assistant message left by the truncation is dropped; the two consecutive assistant
    # messages left are merged (rules.same_role_runs=merge)
    assert [m["content"] for m in by_id["train-6-4"]["context"]] == ["u2", "a3\n\na4", "u5"]

    assert stats["rows_read"] == 9
    assert stats["conversations_kept"] == 4
    assert stats["interactions_written"] == 8 == stats["written"]["train"]
    assert stats["dropped"] == {
        "conversation/too_few_messages": 1,
        "conversation/assistant_too_long": 1,
        "conversation/too_long": 1,
        "conversation/malformed": 1,
        "conversation/no_interaction": 1,
        "interaction/empty_completion": 1,
        "interaction/empty_followup": 2,
        "interaction/ends_with_assistant": 1,
    }
    assert stats["messages_removed_unknown_role"] == 1
    assert stats["messages_removed_empty"] >= 1
    assert stats["histories_with_same_role_runs"] == 1  # train-6-4
    assert stats["conversations_passed_filters"] == 5  # the 4 kept and conversation 7
    # every written record is a valid interaction for the reader
    assert len(read_interactions(tmp_path / "out" / "train.jsonl").interactions) == 8


def test_heldout_fraction_splits_whole_conversations(compose, tmp_path):
    rows = []
    for i in range(40):
        rows.append({"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"},
                                       {"from": "human", "value": f"f{i}"}, {"from": "gpt", "value": f"b{i}"},
                                       {"from": "human", "value": f"g{i}"}]})  # fmt: skip
    raw = write_jsonl(tmp_path / "wf.jsonl", rows)
    _, stats = _prepare(compose, "wildfeedback", raw, tmp_path / "out", "dataset.heldout_fraction=0.25")
    train = _records(tmp_path / "out" / "train.jsonl")
    held = _records(tmp_path / "out" / "eval.jsonl")
    assert len(train) + len(held) == 80
    assert 0 < len(held) < 40
    train_convs = {r["conversation_id"] for r in train}
    held_convs = {r["conversation_id"] for r in held}
    assert not train_convs & held_convs
    assert all(len([r for r in held if r["conversation_id"] == c]) == 2 for c in held_convs)
    assert stats["written"] == {"train": len(train), "eval": len(held)}


def test_wildchat_parquet_english_only_shuffled_and_stops_early(compose, tmp_path):
    raw = write_parquet(tmp_path / "raw" / "train.parquet", wildchat_rows())
    _, stats = _prepare(compose, "wildchat", raw.parent, tmp_path / "all", "dataset.max_conversations=null")
    assert stats["dropped"] == {"conversation/language": 1}
    assert stats["conversations_kept"] == 6 and stats["interactions_written"] == 12
    records = _records(tmp_path / "all" / "train.jsonl")
    assert {r["conversation_id"] for r in records} == {f"wc{i}" for i in range(6)}
    assert records[0]["meta"] == {"source": "wildchat", "model": "gpt-3.5-turbo", "language": "English"}
    shuffled_order = [r["conversation_id"] for r in records[::2]]
    assert shuffled_order != sorted(shuffled_order) or len(set(shuffled_order)) < 2  # seed-42 shuffle

    _, stats = _prepare(compose, "wildchat", raw.parent, tmp_path / "two", "dataset.max_conversations=2")
    assert stats["conversations_kept"] == 2 and stats["stopped_early"] == 1
    kept = _records(tmp_path / "two" / "train.jsonl")
    assert [r["conversation_id"] for r in kept[::2]] == shuffled_order[:2]  # the same order, cut
    assert stats["rows_read"] <= 3


def test_helpsteer2_single_turn_limits_dedup(compose, tmp_path):
    """The authors' rules: stripped prompt and response, exact-text dedup per split."""
    splits = helpsteer2_rows()
    write_jsonl(tmp_path / "raw" / "train.jsonl", splits["train"])
    write_parquet(tmp_path / "raw" / "validation.parquet", splits["validation"])
    _, stats = _prepare(compose, "helpsteer2", tmp_path / "raw", tmp_path / "out")
    train = _records(tmp_path / "out" / "train.jsonl")
    assert [r["prompt"] for r in train] == ["Explain photosynthesis.", "explain photosynthesis.", "q" * 2048,
                                            "Write a poem about the sea."]  # fmt: skip
    assert train[0]["id"].startswith("helpsteer2-") and train[0]["split"] == "train"
    assert len({r["id"] for r in train}) == 4  # prompts kept as different have different ids
    validation = _records(tmp_path / "out" / "validation.jsonl")
    assert [r["prompt"] for r in validation] == ["Summarise the news.", "Explain photosynthesis."]
    assert stats["dropped"] == {
        "train/duplicate": 2,
        "train/multi_turn": 1,
        "train/prompt_too_long": 1,
        "train/response_too_long": 1,
        "train/empty_prompt": 1,
        "train/empty_response": 1,
    }
    assert stats["rows_read_per_split"] == {"train": 11, "validation": 2}

    # the project's former rules, still available: case-insensitive dedup, unstripped text
    _, stats = _prepare(compose, "helpsteer2", tmp_path / "raw", tmp_path / "norm", "dataset.dedup=normalised",
                        "dataset.strip=false")  # fmt: skip
    prompts = [r["prompt"] for r in _records(tmp_path / "norm" / "train.jsonl")]
    # " q...q " is 2,050 characters unstripped; "  Explain photosynthesis.\n" normalises to a duplicate
    assert prompts == ["Explain photosynthesis.", "Write a poem about the sea."]
    assert stats["dropped"]["train/duplicate"] == 3 and stats["dropped"]["train/prompt_too_long"] == 2


def test_tldr_posts_dedup_length_and_train_overlap(compose, tmp_path):
    splits = tldr_rows()
    write_parquet(tmp_path / "raw" / "train.parquet", splits["train"])
    write_parquet(tmp_path / "raw" / "validation.parquet", splits["validation"])
    # validation listed first: train is still processed first
    _, stats = _prepare(
        compose, "tldr", tmp_path / "raw", tmp_path / "out", "dataset.splits=[validation,train]"
    )
    suffix = "\nTL;DR:\n"
    train = _records(tmp_path / "out" / "train.jsonl")
    assert [r["prompt"] for r in train] == ["My roommate never does the dishes. What do I do?" + suffix,
                                            "z" * 1015 + suffix,
                                            "I got a new job offer but I love my team." + suffix]  # fmt: skip
    assert train[0]["system"].startswith("Write summary of the text that is 1-2 sentences long.")
    validation = _records(tmp_path / "out" / "validation.jsonl")
    # the CNN row's article is a prompt too (the authors' `post or article`)
    assert [r["prompt"] for r in validation] == ["Should I adopt a second cat?" + suffix,
                                                 "A short CNN article about a storm." + suffix]  # fmt: skip
    assert stats["dropped"] == {
        "train/duplicate": 2,
        "train/prompt_too_long": 2,
        "validation/seen_in_train": 1,
        "validation/prompt_too_long": 1,
        "validation/no_text": 1,
    }
    assert (stats["prompts_from_post"], stats["prompts_from_article"]) == (4, 1)

    # posts only, no suffix: the CNN rows have no text; the length rule then counts the post alone
    _, stats = _prepare(compose, "tldr", tmp_path / "raw", tmp_path / "posts", "dataset.text_fields=[post]",
                        "dataset.prompt_suffix=''")  # fmt: skip
    assert stats["written"] == {"train": 5, "validation": 1}  # z*1016 and w*1020 now fit
    assert stats["dropped"]["validation/no_text"] == 3


def test_hub_arguments_are_the_real_ids(compose):
    cases = {
        "wildfeedback": ("microsoft/WildFeedback", "wildfeedback", ["train"], None),
        "wildchat": ("allenai/WildChat", None, ["train"], None),
        "helpsteer2": ("nvidia/HelpSteer2", None, ["train", "validation"], None),
        "tldr": (
            "openai/summarize_from_feedback",
            "comparisons",
            ["train", "validation"],
            "refs/convert/parquet",
        ),
    }
    for name, (hf_id, config, splits, revision) in cases.items():
        d = compose("task=prepare", f"dataset={name}").dataset
        assert (d.hf_id, d.hf_config, list(d.splits), d.revision) == (hf_id, config, splits, revision), name
    assert compose("dataset=tldr").dataset.hf_data_files == "{config}/{split}/*.parquet"
    wc = compose("dataset=wildchat").dataset
    assert (wc.shuffle_seed, list(wc.languages), wc.max_conversations, wc.max_interactions,
            wc.min_conversations_to_stop, wc.rules.max_user_chars, wc.rules.clean_first) == (
        42, ["english", "en"], 15000, 50000, 14000, 4096, True)  # fmt: skip
    assert list(wc.id_fields) == ["conversation_id", "conversation_hash"]
    wf = compose("dataset=wildfeedback").dataset
    assert (wf.rules.max_user_chars, wf.rules.clean_first, wf.max_conversations) == (None, False, None)


def test_prepare_cli_writes_files_and_stats(run_cli, tmp_path):
    raw = write_jsonl(tmp_path / "raw.jsonl", wildfeedback_rows())
    out = tmp_path / "data"
    run_dir = tmp_path / "run"
    args = ["task=prepare", "dataset=wildfeedback", f"dataset.local_path={raw}", f"dataset.output_dir={out}",
            f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads((out / "prepare_stats.json").read_text())
    assert stats["interactions_written"] == 8
    assert json.loads((run_dir / "prepare_stats.json").read_text()) == stats
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["written/train"] == 8 and summary["dropped/conversation/malformed"] == 1
    again = run_cli(args)
    assert again.returncode != 0 and "task.overwrite=true" in again.stdout + again.stderr
    assert run_cli([*args, "task.overwrite=true"]).returncode == 0
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert cfg.task.name == "prepare"


def test_prepare_then_offline_with_only_the_dataset_option_from_other_directories(run_cli, tmp_path):
    """Both runs resolve the prepared files against the project root, not their working directory;
    the held-out split prepare wrote is what offline evaluates on."""
    import os

    from conftest import REPO

    raw = write_jsonl(tmp_path / "raw.jsonl", wildfeedback_rows())
    data_dir = os.path.relpath(tmp_path / "prepared", REPO)  # relative: to the project root
    here, there = tmp_path / "a", tmp_path / "b"
    here.mkdir(), there.mkdir()
    prep = run_cli(["task=prepare", "dataset=wildfeedback", f"dataset.local_path={raw}", "dataset.heldout_fraction=0.5",
                    f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'prep_run'}"], cwd=here)  # fmt: skip
    assert prep.returncode == 0, prep.stderr[-2000:]
    assert (tmp_path / "prepared" / "wildfeedback" / "train.jsonl").is_file()
    run_dir = tmp_path / "offline_run"
    proc = run_cli(["task=offline", "dataset=wildfeedback", "model=tiny_random", f"paths.data_dir={data_dir}",
                    "trainer.max_steps=1", "trainer.per_device_batch_size=2", "trainer.max_prompt_tokens=256",
                    "trainer.max_completion_tokens=16", "task.progress_bar=false", "trainer.save_final=false",
                    f"hydra.run.dir={run_dir}"], cwd=there)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run_dir / "run.log").read_text()
    assert "Evaluating on the held-out split that task=prepare wrote" in log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data/eval/records"] > 0 and "eval/loss" in summary


def test_offline_before_prepare_says_which_command_makes_the_file(run_cli, tmp_path):
    proc = run_cli(["task=offline", "dataset=wildchat", f"paths.data_dir={tmp_path / 'none'}",
                    f"hydra.run.dir={tmp_path / 'run'}"])  # fmt: skip
    assert proc.returncode == 1
    out = " ".join((proc.stdout + proc.stderr).split())  # the console wraps long lines at its width
    assert "does not exist: prepare it first with `python run.py task=prepare dataset=wildchat`" in out


def test_a_directory_given_as_a_file_says_so(tmp_path):
    import pytest

    from sdpo_exp.errors import DataError

    with pytest.raises(DataError, match="is a directory, not an interaction file"):
        read_interactions(tmp_path)
