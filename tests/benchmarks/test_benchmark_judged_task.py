"""`task=benchmark` on the judged benchmarks end to end, through the CLI in a fresh process: greedy
answers of tiny models, judged by Claude through the real anthropic SDK against a loopback server
(with an overloaded reply and a malformed one, both retried, and replies that are not one letter),
or by the rule-based judge; every verdict kept, the win rates recomputed here from the verdict files,
and the answers exported for the official tools.

The server decides from what it receives, so that every verdict can be predicted: markers in an
item's prompt choose the rule (`[judge:longer]`, the default: the longer response is better;
`[judge:shorter]`; `[judge:say=X]`: reply X whatever the responses) and the faults
(`[fault:overloaded]`: 529 the first time; `[fault:malformed]`: a body that is not JSON the first
time). The tiny random model answers every prompt with the same 16 newlines; the reference model
answers with nothing (its final norm zeroed, greedy decoding picks a special token), so each pair's
lengths differ and `longer`/`shorter` decide it."""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from sdpo_exp.evaluation.benchmarks.judged import QUALITY_SYSTEM
from sdpo_exp.evaluation.benchmarks.suite import slug

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "users"))
from anthropic_server import MessagesServer, Recorder, _error, _message, make_handler  # noqa: E402

KEY = "sk-test-benchmark-task-41f9"
KEY_ENV = "SDPO_TEST_BENCHMARK_JUDGE_KEY"
TINY_ANSWER = "\n" * 16  # tiny_random's greedy answer to every prompt, up to 8 tokens
_SECTION = re.compile(r"===== Response (A|B) =====\n(.*?)\n===== End of Response \1 =====", re.S)
_SAY = re.compile(r"\[judge:say=([^\]]*)\]")

# -- the judge server --------------------------------------------------------------------------------


def decide(prompt: str, a: str, b: str) -> str:
    """The server's verdict on Response A `a` and Response B `b` to an instruction containing `prompt`."""
    say = _SAY.search(prompt)
    if say:
        return say.group(1)
    longer = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"
    if "[judge:shorter]" in prompt:
        return {"A": "B", "B": "A"}.get(longer, "C")
    return longer


def _judge_handler(rec: Recorder):
    class Handler(make_handler(rec)):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            text = body["messages"][-1]["content"]
            with rec.lock:
                rec.headers.append(dict(self.headers))
                rec.bodies.append(body)
                fault = next((f for f in ("overloaded", "malformed") if f"[fault:{f}]" in text), None)
                if fault is not None:
                    rec.attempts[fault] += 1
                first_try = fault is not None and rec.attempts[fault] == 1
            if fault == "overloaded" and first_try:
                return self._send(529, _error("overloaded_error", "overloaded"))
            if fault == "malformed" and first_try:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "9")
                self.end_headers()
                self.wfile.write(b"not json{")
                return None
            sections = dict(_SECTION.findall(text))
            return self._send(200, _message(decide(text, sections["A"], sections["B"])))

    return Handler


class JudgeServer(MessagesServer):
    """The project's loopback Messages API server, answering as a judge by the rules above."""

    def __init__(self) -> None:
        self.recorder = Recorder(timeout_sleep=0.0)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _judge_handler(self.recorder))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


# -- data and models ---------------------------------------------------------------------------------

ALPACA = [  # instruction, reference answer in the file, the answer's outcome against the empty reference
    ("Name a fruit. [judge:longer]", "Apple.", "win"),
    ("Name a colour. [judge:shorter] [fault:overloaded]", "Blue.", "loss"),
    ("Name a metal. [judge:say=A.]", "Iron.", "tie"),  # "A." is not a verdict: invalid twice
    ("Name a river. [judge:longer]", "The Nile.", "win"),
    ("Name a planet. [judge:shorter]", "Mars.", None),  # beyond benchmark.limit=4
]
ARENA = [  # uid, category, prompt, outcome
    ("u1", "hard_prompt", "Write a haiku about rust. [judge:shorter]", "loss"),
    ("u2", "creative_writing", "A story about a cat.", None),  # another category
    ("u3", "hard_prompt", "Sort a list in C. [judge:longer] [fault:malformed]", "win"),
    ("u4", "hard_prompt", "Prove that 2 is prime. [judge:say=Response B]", "tie"),  # invalid twice
    ("u5", "hard_prompt", "Explain a mutex. [judge:say=C]", "tie"),  # a valid tie
    ("u6", "hard_prompt", "Explain a semaphore.", None),  # beyond benchmark.limit=4
]
WORDS_160 = " ".join(f"word{i}" for i in range(160))
RULE_ALPACA = [  # instruction, reference (rules of answer_directly it breaks), outcome of the empty-ish answer
    ("Say hello.", "## Hello\n\n**Hello** there.", "win"),  # heavy markdown
    ("Say goodbye.", "Goodbye, see you soon.", "tie"),  # breaks nothing, nor does the answer
    ("List colours.", "Colours:\n- red\n- green\n- blue", "win"),  # a long list
    ("Count words.", WORDS_160, "win"),  # more than 150 words
]


def _write_lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _data_dir(root: Path, alpaca: list[tuple[str, str, str | None]]) -> Path:
    _write_lines(root / "alpaca_eval" / "alpaca_eval.jsonl",
                 [{"instruction": p, "output": r, "generator": "test_reference", "dataset": "test"} for p, r, _ in alpaca])  # fmt: skip
    _write_lines(root / "arena_hard" / "question.jsonl",
                 [{"uid": u, "category": c, "subcategory": "test", "prompt": p} for u, c, p, _ in ARENA])  # fmt: skip
    return root


@pytest.fixture(scope="module")
def empty_reference_model(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny model directory whose greedy answer is always empty."""
    import torch

    from sdpo_exp.config.schemas.model import TinyModelConfig
    from sdpo_exp.models.tiny import tiny_model

    path = tmp_path_factory.mktemp("models") / "empty_ref"
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(), tiny_tokenizer, torch.float32)
    with torch.no_grad():
        model.model.norm.weight.zero_()  # every logit 0: greedy picks token 0, <|endoftext|> (special)
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


# -- reading a run back ------------------------------------------------------------------------------


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _outcome(as_a: str | None, as_b: str | None) -> str:
    """The answer's outcome from the raw replies, shown as A then as B (anything but A/B/C: a tie)."""
    first = {"A": "win", "B": "loss"}.get((as_a or "").strip(), "tie")
    second = {"B": "win", "A": "loss"}.get((as_b or "").strip(), "tie")
    return first if first == second else "tie"


def _recomputed(records: list[dict]) -> dict:
    """Win rate and analytic SE from the raw verdicts: a win when both orders agree the answer won."""
    outcomes = [_outcome(r["verdict_answer_as_a"], r["verdict_answer_as_b"]) for r in records]
    wins, losses = outcomes.count("win"), outcomes.count("loss")
    invalid = sum((v or "").strip() not in ("A", "B", "C")
                  for r in records for v in (r["verdict_answer_as_a"], r["verdict_answer_as_b"]))  # fmt: skip
    p = wins / (wins + losses)
    return {"outcomes": outcomes, "wins": wins, "losses": losses, "ties": len(records) - wins - losses,
            "invalid": invalid, "value": p, "se": math.sqrt(p * (1 - p) / (wins + losses)),
            "coverage": (wins + losses) / len(records)}  # fmt: skip


def _check_cell(cell: dict, got: dict, n: int, available: int) -> None:
    assert cell["value"] == pytest.approx(got["value"]) and cell["se"] == pytest.approx(got["se"])
    assert (cell["n"], cell["available"], cell["reference"]) == (n, available, False)
    extra = cell["extra"]
    assert {k: extra[k] for k in ("wins", "losses", "ties", "invalid")} == {
        k: got[k] for k in ("wins", "losses", "ties", "invalid")
    }
    assert extra["coverage"] == pytest.approx(got["coverage"])


def _cells(run_dir: Path) -> tuple[list[str], dict[tuple[str, str], dict]]:
    table = json.loads((run_dir / "benchmarks.json").read_text())
    labels = [m["label"] for m in table["models"]]
    return labels, {(c["benchmark"], c["model"]): c for c in table["cells"]}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _base_args(run_dir: Path) -> list[str]:
    return ["task=benchmark", "benchmark=demo_suite", "benchmark.limit=4", "model=tiny_random",
            "benchmark.judged.max_new_tokens=8", f"hydra.run.dir={run_dir}"]  # fmt: skip


# -- the tests ---------------------------------------------------------------------------------------


def test_quality_judge_through_the_cli(run_cli, tmp_path, empty_reference_model):
    data = _data_dir(tmp_path / "data", ALPACA)
    run_dir = tmp_path / "run"
    with JudgeServer() as server:
        args = [*_base_args(run_dir), f"benchmark.data_dir={data}", "benchmark.benchmarks=[alpaca_eval,arena_hard]",
                "task.models=[base,base]", f"benchmark.judged.reference={empty_reference_model}",
                "judge=claude_haiku", f"judge.base_url={server.url}", f"judge.api_key_env={KEY_ENV}",
                "judge.max_retries=2", "judge.backoff_base_s=0"]  # fmt: skip
        proc = run_cli(args, env={KEY_ENV: KEY})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"

    labels, cells = _cells(run_dir)
    assert labels == ["base (tiny_random) [0]", "base (tiny_random) [1]"]
    names = [slug(k, label) for k, label in enumerate(labels)]
    expected = {
        "alpaca_eval": ([p for p, _, o in ALPACA if o], [o for _, _, o in ALPACA if o], 5),
        "arena_hard": ([p for *_, p, o in ARENA if o], [o for *_, o in ARENA if o], 5),
    }
    summary = json.loads((run_dir / "summary.json").read_text())
    for bench, (prompts, outcomes, available) in expected.items():
        folder = run_dir / "judged" / bench
        reference = _jsonl(folder / "reference.jsonl")
        assert [r["prompt"] for r in reference] == prompts
        assert [r["reference"] for r in reference] == [""] * 4  # the reference model's empty answers
        for k, (label, name) in enumerate(zip(labels, names, strict=True)):
            records = _jsonl(folder / f"{name}.jsonl")
            assert [r["prompt"] for r in records] == prompts
            assert [(r["answer"], r["reference"]) for r in records] == [(TINY_ANSWER, "")] * 4
            # each raw verdict is the server's on the pair in that order: the answer as A, then as B
            for r in records:
                assert r["verdict_answer_as_a"] == decide(r["prompt"], r["answer"], r["reference"])
                assert r["verdict_answer_as_b"] == decide(r["prompt"], r["reference"], r["answer"])
            got = _recomputed(records)
            assert got["outcomes"] == [r["outcome"] for r in records] == outcomes
            _check_cell(cells[(bench, label)], got, 4, available)
            if k:  # the same answers as the first model's: no difference
                assert cells[(bench, label)]["diff"] == 0.0
        # summary.json: the last model's scores
        assert summary[f"benchmark/{bench}"] == pytest.approx(got["value"])
        assert summary[f"diff/{bench}"] == 0.0
    assert cells[("alpaca_eval", labels[1])]["value"] == pytest.approx(2 / 3)
    assert cells[("arena_hard", labels[1])]["value"] == pytest.approx(1 / 2)

    # two requests per item and judged model, and one more for each fault (both retried)
    bodies = server.recorder.bodies
    assert len(bodies) == 2 * 4 * 2 * 2 + 2
    assert dict(server.recorder.attempts) == {"overloaded": 2 * 2 + 1, "malformed": 2 * 2 + 1}
    assert all(any(KEY in v for v in h.values()) for h in server.recorder.headers)  # the key from $KEY_ENV
    assert {(b["model"], b["max_tokens"], b["system"]) for b in bodies} == {
        ("claude-haiku-4-5-20251001", 8, QUALITY_SYSTEM)
    }
    sent = [b["messages"][-1]["content"] for b in bodies]
    for prompt in expected["alpaca_eval"][0] + expected["arena_hard"][0]:
        orders = sorted(
            tuple(dict(_SECTION.findall(t)).values())
            for t in sent
            if t.startswith(f"Instruction:\n{prompt}\n")
        )
        n_fault = 1 if "[fault:" in prompt else 0
        assert len(orders) == 4 + n_fault, prompt
        assert set(orders) == {(TINY_ANSWER, ""), ("", TINY_ANSWER)}, prompt

    # the answers in AlpacaEval's and arena-hard-auto's formats, in item order
    for label, name in zip(labels, names, strict=True):
        alpaca = json.loads((run_dir / "exports" / "alpaca_eval" / f"{name}.json").read_text())
        assert alpaca == [{"instruction": p, "output": TINY_ANSWER, "generator": label, "dataset": "test"}
                          for p in expected["alpaca_eval"][0]]  # fmt: skip
        arena = _jsonl(run_dir / "exports" / "arena_hard" / "model_answer" / f"{name}.jsonl")
        assert [r["uid"] for r in arena] == ["u1", "u3", "u4", "u5"]
        for row, prompt in zip(arena, expected["arena_hard"][0], strict=True):
            assert set(row) == {"uid", "ans_id", "model", "messages", "tstamp", "metadata"}
            assert row["model"] == name  # arena-hard-auto names a model after its file
            assert row["messages"] == [{"role": "user", "content": prompt},
                                       {"role": "assistant", "content": {"answer": TINY_ANSWER}}]  # fmt: skip
            assert row["metadata"]["token_len"] == 0 and isinstance(row["tstamp"], float)
        assert len({r["ans_id"] for r in arena}) == 4

    report = _flat((run_dir / "benchmarks.md").read_text())
    assert "Not comparable to the public leaderboard" in report
    assert "judged by claude-haiku-4-5-20251001 (anthropic)" in report
    assert "against the answers of empty_ref" in report and "4 of 5 (subset)" in report
    assert "66.7 ± 27.2" in report and "50.0 ± 35.4" in report


def test_reference_file_without_reference_answers_fails_before_any_model_loads(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    args = [*_base_args(run_dir), "benchmark.benchmarks=[alpaca_eval,arena_hard]", "task.models=[base,base]",
            "benchmark.judged.reference=file", "judge=rule_based"]  # fmt: skip
    proc = run_cli(args)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Loading" not in out and "Built tiny_random" not in out and "Traceback" not in out
    errors = [line for line in out.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "benchmark.judged.reference=file" in errors[0], out[-2000:]
    assert (
        "benchmark.judged.reference=file: arena_hard's file has no reference answer for 4 item(s)"
        in _flat(out)
    )
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "reference=file" in record["error"]
    assert not (run_dir / "models").exists()


def test_rule_based_judge_against_the_files_reference_answers(run_cli, tmp_path):
    data = _data_dir(tmp_path / "data", RULE_ALPACA)
    run_dir = tmp_path / "run"
    args = [*_base_args(run_dir), f"benchmark.data_dir={data}", "benchmark.benchmarks=[alpaca_eval]",
            "task.models=[base]", "benchmark.judged.reference=file", "judge=rule_based",
            "user_profile=answer_directly"]  # fmt: skip
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    labels, cells = _cells(run_dir)
    assert labels == ["base (tiny_random)"]
    records = _jsonl(run_dir / "judged" / "alpaca_eval" / f"{slug(0, labels[0])}.jsonl")
    assert [(r["prompt"], r["answer"], r["reference"]) for r in records] == [
        (p, TINY_ANSWER, ref) for p, ref, _ in RULE_ALPACA
    ]
    letters = {"win": ("A", "B"), "tie": ("C", "C")}
    assert [(r["verdict_answer_as_a"], r["verdict_answer_as_b"]) for r in records] == [
        letters[o] for *_, o in RULE_ALPACA
    ]
    got = _recomputed(records)
    assert got["outcomes"] == [r["outcome"] for r in records] == [o for *_, o in RULE_ALPACA]
    _check_cell(cells[("alpaca_eval", labels[0])], got, 4, 4)
    assert (got["value"], got["se"], got["invalid"]) == (1.0, 0.0, 0)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["benchmark/alpaca_eval"] == pytest.approx(got["value"])
    report = _flat((run_dir / "benchmarks.md").read_text())
    assert "judged by rule-based (profile answer_directly)" in report
    assert "against the reference answers in the file" in report
    assert "Not comparable to the public leaderboard" in report
