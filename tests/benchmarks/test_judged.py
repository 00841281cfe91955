"""Judged benchmarks: question files read (bad records counted by reason), answers judged against
references in both orders by the rule-based judge and by the quality judge through the real anthropic
SDK (a loopback server with faults), and the files the official tools read."""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sdpo_exp.config.schemas.user import AnthropicUserConfig, LocalUserConfig, RuleBasedUserConfig
from sdpo_exp.errors import DataError
from sdpo_exp.evaluation.benchmarks.export import write_alpaca_eval, write_arena_hard
from sdpo_exp.evaluation.benchmarks.judged import (
    QUALITY_SYSTEM,
    JudgedItem,
    QualityJudge,
    judge_benchmark,
    judge_label,
    make_benchmark_judge,
    read_items,
)
from sdpo_exp.evaluation.benchmarks.registry import get_benchmark
from sdpo_exp.users.judge import RuleBasedJudge
from sdpo_exp.users.profiles import load_profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "users"))
from anthropic_server import MessagesServer  # noqa: E402

KEY = "sk-test-benchmark-7c2d"


def _lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- reading question files ------------------------------------------------------------------------

ALPACA_ROWS = [
    {"instruction": "What is 2+2?", "output": "4", "generator": "gpt4_turbo", "dataset": "helpful_base"},
    "just a string",  # not_an_object
    {"output": "no instruction"},  # missing_prompt
    {"instruction": "   ", "output": "x"},  # empty_prompt
    {"instruction": 5, "output": "x"},  # wrong_type
    {"instruction": "Name a colour.", "output": "Blue.", "generator": "gpt4_turbo", "dataset": "koala"},
    {"id": "x1", "instruction": "First x1.", "output": "a"},
    {"id": "x1", "instruction": "Second x1.", "output": "b"},  # duplicate_id
    {"instruction": "No reference here."},
]


def test_alpaca_eval_json_list_with_bad_rows(tmp_path):
    path = tmp_path / "alpaca_eval.json"
    path.write_text(json.dumps(ALPACA_ROWS), encoding="utf-8")
    got = read_items(get_benchmark("alpaca_eval"), path)
    assert [i.id for i in got.items] == ["0", "5", "x1", "8"]
    assert got.items[0] == JudgedItem("0", "What is 2+2?", "helpful_base", "4")
    assert got.items[1] == JudgedItem("5", "Name a colour.", "koala", "Blue.")
    assert got.items[2].prompt == "First x1." and got.items[2].category is None
    assert got.items[3].reference is None
    assert got.rows == 9 and got.available == 4 and got.path == path
    assert dict(got.skipped) == {
        "not_an_object": 1, "missing_prompt": 1, "empty_prompt": 1, "wrong_type": 1, "duplicate_id": 1,
    }  # fmt: skip

    limited = read_items(get_benchmark("alpaca_eval"), path, limit=2)
    assert [i.id for i in limited.items] == ["0", "5"] and limited.available == 4


def test_alpaca_eval_jsonl_counts_undecodable_and_blank_lines(tmp_path):
    lines = [json.dumps(r) for r in ALPACA_ROWS[:3]] + [
        '{"instruction": "cut',
        "",
        json.dumps(ALPACA_ROWS[5]),
    ]
    got = read_items(get_benchmark("alpaca_eval"), _lines(tmp_path / "alpaca_eval.jsonl", lines))
    # ids are positions in the file, bad lines included
    assert [i.id for i in got.items] == ["0", "5"]
    assert got.rows == 6 and got.available == 2
    assert dict(got.skipped) == {"not_an_object": 1, "missing_prompt": 1, "invalid_json": 1, "blank_line": 1}


ARENA_LINES = [
    '{"uid": "u1", "category": "hard_prompt", "subcategory": "coding", "prompt": "Write a zig program."}',
    '{"uid": "u2", "category": "creative_writing", "subcategory": "creative_writing", "prompt": "A poem."}',
    '{"uid": "u3", "category": "hard_prompt", "subcategory": "math", "prompt": "Prove it."}',
    '{"uid": "u4", "category": "hard_p',  # invalid_json
    "[1, 2]",  # not_an_object
    '{"uid": "u5", "category": "hard_prompt"}',  # missing_prompt
    '{"uid": "u1", "category": "hard_prompt", "prompt": "Again."}',  # duplicate (or other category)
    '{"category": "hard_prompt", "prompt": "No uid."}',  # missing_id
    '{"uid": "u6", "category": "creative_writing", "prompt": " "}',  # empty_prompt
]


def test_arena_hard_keeps_the_benchmarks_category(tmp_path):
    path = _lines(tmp_path / "question.jsonl", ARENA_LINES)
    hard = read_items(get_benchmark("arena_hard"), path)
    assert hard.items == [
        JudgedItem("u1", "Write a zig program.", "hard_prompt"),
        JudgedItem("u3", "Prove it.", "hard_prompt"),
    ]
    assert hard.rows == 9 and hard.available == 2
    assert dict(hard.skipped) == {
        "other_category": 1, "invalid_json": 1, "not_an_object": 1, "missing_prompt": 1, "duplicate_id": 1,
        "missing_id": 1, "empty_prompt": 1,
    }  # fmt: skip

    creative = read_items(get_benchmark("arena_hard_creative"), path)
    assert creative.items == [JudgedItem("u2", "A poem.", "creative_writing")]
    # u1, u3 and the second u1 are hard prompts: another category before they could be duplicates
    assert dict(creative.skipped) == {
        "other_category": 3, "invalid_json": 1, "not_an_object": 1, "missing_prompt": 1, "missing_id": 1,
        "empty_prompt": 1,
    }  # fmt: skip
    assert sum(creative.skipped.values()) + creative.available == creative.rows == 9

    assert [i.id for i in read_items(get_benchmark("arena_hard"), path, limit=1).items] == ["u1"]


def test_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "question.parquet"
    table = {"uid": ["p1", "p2", "p3"], "category": ["hard_prompt", "hard_prompt", "creative_writing"],
             "subcategory": ["math", "coding", "creative_writing"], "prompt": ["Integrate x.", None, "A song."]}  # fmt: skip
    pq.write_table(pa.table(table), path)
    got = read_items(get_benchmark("arena_hard"), path)
    assert got.items == [JudgedItem("p1", "Integrate x.", "hard_prompt")]
    assert got.rows == 3 and dict(got.skipped) == {"missing_prompt": 1, "other_category": 1}
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_items(get_benchmark("arena_hard"), tmp_path / "broken.parquet")


def test_unusable_files_are_data_errors(tmp_path):
    bad = _lines(tmp_path / "question.jsonl", ARENA_LINES[3:6])
    with pytest.raises(
        DataError, match=r"no valid ArenaHard-v2 \(hard prompts\) item in .*question.jsonl \(3 records"
    ):
        read_items(get_benchmark("arena_hard"), bad)
    only_creative = _lines(tmp_path / "creative.jsonl", [ARENA_LINES[1]])
    with pytest.raises(DataError, match="other_category 1"):
        read_items(get_benchmark("arena_hard"), only_creative)
    obj = tmp_path / "alpaca_eval.json"
    obj.write_text(json.dumps(ALPACA_ROWS[0]), encoding="utf-8")
    with pytest.raises(DataError, match="holds a JSON dict, not a list"):
        read_items(get_benchmark("alpaca_eval"), obj)
    with pytest.raises(DataError, match="no question-file reader"):
        read_items(get_benchmark("ifeval"), obj)


# -- judging ---------------------------------------------------------------------------------------

LONG = " ".join(f"word{i}" for i in range(160))  # 160 distinct words: too long, not repetitive

# answer_directly breaks: heavy markdown (2+ headers/bold/code blocks), a list of 3+ lines, more than
# 150 words; the rules every user holds: repetition, an opening apology. Fewer broken rules wins.
RULE_CASES = [  # id, answer, reference, broken by answer, broken by reference, outcome
    ("cap", "Paris is the capital of France.", "## Capital\n\n**Paris** is the capital.", 0, 1, "win"),
    ("list", "Three primes:\n- 2\n- 3\n- 5", "The first three primes are 2, 3 and 5.", 1, 0, "loss"),
    ("same", "Water boils at 100 degrees at sea level.", "At sea level, 100 degrees.", 0, 0, "tie"),
    ("sorry", "I'm sorry, but here:\n- a\n- b\n- c", "# Title\n**b** is it.", 2, 1, "loss"),
    ("long", "Use a sieve.", LONG, 0, 1, "win"),
    ("md", "Short and plain.", "**One** and **two**.", 0, 1, "win"),
]


def _outcome(as_a: str | None, as_b: str | None) -> str:
    """The answer's outcome from the raw replies, shown as A then as B (anything but A/B/C: a tie)."""
    first = {"A": "win", "B": "loss"}.get((as_a or "").strip(), "tie")
    second = {"B": "win", "A": "loss"}.get((as_b or "").strip(), "tie")
    return first if first == second else "tie"


def _check_win_rate(records, result, expected_invalid):
    outcomes = [_outcome(r["verdict_answer_as_a"], r["verdict_answer_as_b"]) for r in records]
    assert outcomes == [r["outcome"] for r in records]
    wins, losses = outcomes.count("win"), outcomes.count("loss")
    invalid = sum(
        (v or "").strip() not in ("A", "B", "C")
        for r in records
        for v in (r["verdict_answer_as_a"], r["verdict_answer_as_b"])
    )
    p = wins / (wins + losses)
    assert (result.wins, result.losses, result.ties) == (wins, losses, len(records) - wins - losses)
    assert result.invalid == invalid == expected_invalid
    assert result.win_rate == pytest.approx(p)
    assert result.se == pytest.approx(math.sqrt(p * (1 - p) / (wins + losses)))
    assert result.coverage == pytest.approx((wins + losses) / len(records))
    assert math.isfinite(result.bootstrap_se) and result.bootstrap_se > 0


def test_rule_based_judge_decides_each_pair_by_the_profiles_rules(tmp_path):
    profile = load_profile("answer_directly")
    cfg = OmegaConf.structured(RuleBasedUserConfig)
    judge = make_benchmark_judge(cfg, profile, str(tmp_path))
    assert isinstance(judge, RuleBasedJudge) and judge.profile.name == "answer_directly"
    assert judge_label(cfg, profile) == "rule-based (profile answer_directly)"

    items = [JudgedItem(c[0], f"Question {c[0]}?", "hard_prompt") for c in RULE_CASES]
    records, result = judge_benchmark(
        judge, items, [c[1] for c in RULE_CASES], [c[2] for c in RULE_CASES], bootstrap_samples=300
    )
    assert [r["outcome"] for r in records] == [c[5] for c in RULE_CASES]
    for record, case in zip(records, RULE_CASES, strict=True):
        letter = {"win": ("A", "B"), "loss": ("B", "A"), "tie": ("C", "C")}[case[5]]
        assert (record["verdict_answer_as_a"], record["verdict_answer_as_b"]) == letter, case[0]
        assert (record["id"], record["answer"], record["reference"]) == case[:3]
        assert record["prompt"] == f"Question {case[0]}?" and record["category"] == "hard_prompt"
    assert (result.wins, result.losses, result.ties, result.pairs) == (3, 2, 1, 6)
    assert result.win_rate == pytest.approx(0.6) and result.se == pytest.approx(math.sqrt(0.6 * 0.4 / 5))
    _check_win_rate(records, result, expected_invalid=0)
    assert judge.metrics()["calls"] == 12

    with pytest.raises(ValueError, match="item 'same' has no reference answer"):
        judge_benchmark(judge, items, [c[1] for c in RULE_CASES], [c[2] for c in RULE_CASES[:2]] + [None] * 4)
    with pytest.raises(ValueError, match="one entry per item"):
        judge_benchmark(judge, items, ["a"], [c[2] for c in RULE_CASES])


@pytest.fixture()
def server():
    with MessagesServer(timeout_sleep=1.5) as srv:
        yield srv


def _anthropic_cfg(server):
    cfg = OmegaConf.structured(AnthropicUserConfig(name="claude_judge"))
    settings = dict(base_url=server.url, api_key_env="SDPO_TEST_ANTHROPIC_KEY", timeout_s=2.0,
                    backoff_base_s=0.01, backoff_max_s=0.2, max_retries=3, max_concurrency=4, max_tokens=4)  # fmt: skip
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value)
    return cfg


# The server answers `[case:judge answer=X]` with X, taking the first marker in the user message: the
# one in the response shown as A. Other markers choose a fault; unmarked requests get a sentence.
QUALITY_CASES = [  # id, prompt, answer, reference, outcome, invalid verdicts
    (
        "w",
        "Which is warmer, tea or ice?",
        "Tea. [case:judge answer=A]",
        "Ice. [case:judge answer=B]",
        "win",
        0,
    ),
    ("l", "Capital of Peru?", "Quito. [case:judge answer=B]", "Lima. [case:judge answer=A]", "loss", 0),
    ("t", "Pick a number.", "Four. [case:judge answer=A]", "Nine. [case:judge answer=A]", "tie", 0),
    ("o", "Name a prime. [case:overloaded]", "Seven.", "Eleven.", "tie", 2),
    ("m", "Name a metal. [case:malformed]", "Iron.", "Gold.", "tie", 2),
    ("x", "Say hello.", "Hello.", "Hi there.", "tie", 2),
]
_SECTION = re.compile(r"===== Response (A|B) =====\n(.*?)\n===== End of Response \1 =====", re.S)


def test_quality_judge_through_the_sdk_with_faults(server, monkeypatch, tmp_path):
    monkeypatch.setenv("SDPO_TEST_ANTHROPIC_KEY", KEY)
    cfg = _anthropic_cfg(server)
    judge = make_benchmark_judge(cfg, load_profile("answer_directly"), str(tmp_path))
    assert isinstance(judge, QualityJudge) and judge.profile.name == "quality"
    assert judge_label(cfg) == "claude-haiku-4-5-20251001 (anthropic)"

    items = [JudgedItem(c[0], c[1]) for c in QUALITY_CASES]
    records, result = judge_benchmark(
        judge, items, [c[2] for c in QUALITY_CASES], [c[3] for c in QUALITY_CASES], bootstrap_samples=300
    )
    assert [r["outcome"] for r in records] == [c[4] for c in QUALITY_CASES]
    assert (records[0]["verdict_answer_as_a"], records[0]["verdict_answer_as_b"]) == ("A", "B")
    assert records[3]["verdict_answer_as_a"].startswith("Reply to overloaded, attempt ")
    assert (result.wins, result.losses, result.ties) == (1, 1, 4)
    _check_win_rate(records, result, expected_invalid=sum(c[5] for c in QUALITY_CASES))

    m = judge.metrics()
    assert m["calls"] == 12 and m.get("failed", 0) == 0
    assert m["retried/http_529"] == 1 and m["retried/malformed_reply"] == 1 and m["retries"] == 2

    # every pair went out twice, the answer as Response A and then as Response B
    for _, prompt, answer, reference, _, _ in QUALITY_CASES:
        sent = {
            b["messages"][-1]["content"]
            for b in server.recorder.bodies
            if b["messages"][-1]["content"].startswith(f"Instruction:\n{prompt}\n")
        }
        orders = sorted(tuple(dict(_SECTION.findall(text)).values()) for text in sent)
        assert orders == sorted([(answer, reference), (reference, answer)]), prompt
    body = server.recorder.bodies[0]
    assert body["system"] == QUALITY_SYSTEM and "exactly one character" in body["system"]
    assert body["model"] == "claude-haiku-4-5-20251001" and body["max_tokens"] == 4


def test_judge_label_of_a_local_model():
    cfg = OmegaConf.structured(LocalUserConfig(name="local_judge"))
    OmegaConf.update(cfg, "model.name", "qwen3_8b")
    assert judge_label(cfg) == "qwen3_8b (hf)"


# -- exports ---------------------------------------------------------------------------------------


def test_alpaca_eval_model_outputs(tmp_path):
    items = [JudgedItem("0", "What is 2+2?", "helpful_base", "4"), JudgedItem("1", "Name a colour.")]
    path = tmp_path / "out" / "model_outputs.json"
    write_alpaca_eval(path, items, ["Four.", "Blue."], "sdpo-run-7")
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert rows == [
        {
            "instruction": "What is 2+2?",
            "output": "Four.",
            "generator": "sdpo-run-7",
            "dataset": "helpful_base",
        },
        {"instruction": "Name a colour.", "output": "Blue.", "generator": "sdpo-run-7"},
    ]
    assert [p.name for p in path.parent.iterdir()] == ["model_outputs.json"]
    with pytest.raises(ValueError, match="2 items but 1 answers"):
        write_alpaca_eval(path, items, ["Four."], "x")


def test_arena_hard_model_answers(tmp_path):
    items = [JudgedItem("u2", "A poem.", "creative_writing"), JudgedItem("u1", "Zig?", "hard_prompt")]
    styled = (
        "# Title\n\nSome **bold** and __under__ text.\n\n- one\n- two\n1. first\n"
        "```\n# not a header\n- not a list\n```\n### Third"
    )
    path = tmp_path / "model_answer" / "sdpo-run-7.jsonl"
    t0 = time.time()
    write_arena_hard(path, items, ["Roses are red.", styled], "sdpo-run-7")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["uid"] for r in rows] == ["u2", "u1"]
    for row, item, answer in zip(rows, items, ["Roses are red.", styled], strict=True):
        assert set(row) == {"uid", "ans_id", "model", "messages", "tstamp", "metadata"}
        assert row["model"] == "sdpo-run-7"
        assert row["messages"] == [
            {"role": "user", "content": item.prompt},
            {"role": "assistant", "content": {"answer": answer}},
        ]
        assert t0 <= row["tstamp"] <= time.time()
    assert rows[0]["ans_id"] != rows[1]["ans_id"]
    assert rows[0]["metadata"]["token_len"] == 3
    # outside the code block: one h1, one h3, two unordered and one ordered list line, one bold of each kind
    assert rows[1]["metadata"] == {
        "token_len": len(styled.split()),
        "header_count": {"h1": 1, "h2": 0, "h3": 1, "h4": 0, "h5": 0, "h6": 0},
        "list_count": {"ordered": 1, "unordered": 2},
        "bold_count": {"**": 1, "__": 1},
    }
    assert [p.name for p in path.parent.iterdir()] == ["sdpo-run-7.jsonl"]

    write_arena_hard(path, items[:1], ["Roses are red."], "m", count_tokens=lambda text: 42)
    assert json.loads(path.read_text(encoding="utf-8"))["metadata"]["token_len"] == 42
