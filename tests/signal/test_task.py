"""task=signal end to end on tiny_random: signals.json is complete and recomputable, an empty
hindsight addition gives zero advantages, fixed completions are scored as given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from sdpo_exp.errors import ConfigError, DataError
from sdpo_exp.models import load_model
from sdpo_exp.seeding import seed_everything
from sdpo_exp.signal.records import PER_TOKEN
from sdpo_exp.tasks.runner import execute

from conftest import CACHE_DIR, model_cfg

FIXED = "Sure thing 😀 -- here it is:\n\n1. One\n2. Two"
CASES = [
    {
        "id": "sampled_one",
        "kind": "constrain",
        "prompt": "Write a short note to a colleague.",
        "followup": "Please make it formal.",
        "unrelated": "What is 12 times 3?",
    },
    {
        "id": "fixed_one",
        "kind": "reinforce",
        "prompt": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "List two numbers."},
        ],
        "completion": FIXED,
        "followup": "Perfect, thanks!",
        "unrelated": "Which ocean is the largest?",
    },
    {
        "id": "sampled_two",
        "kind": "reinforce",
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Name a colour."},
        ],
        "followup": "Great answer.",
        "unrelated": "How tall is Mount Everest?",
    },
    {"id": "broken", "kind": "constrain", "prompt": "x", "followup": "", "unrelated": "y"},
]


def _cases_file(tmp_path: Path, cases=CASES) -> Path:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    return path


def _cfg(compose, cases_path: Path, *overrides: str):
    return compose(
        "task=signal",
        "model=tiny_random",
        f"task.cases={cases_path}",
        "task.min_completion_tokens=3",
        "task.batch_size=2",
        "generation.max_new_tokens=10",
        *overrides,
    )


@pytest.fixture(scope="module")
def signal_run(tmp_path_factory):
    from sdpo_exp.config.check import compose_config

    from conftest import CONF_DIR

    tmp = tmp_path_factory.mktemp("signal")
    cfg = compose_config(
        CONF_DIR,
        [
            "task=signal",
            "model=tiny_random",
            f"task.cases={_cases_file(tmp)}",
            "task.min_completion_tokens=3",
            "task.batch_size=2",
            "generation.max_new_tokens=10",
            f"paths.cache_dir={CACHE_DIR}",
        ],
    )
    run_dir = tmp / "run"
    metrics = execute(cfg, run_dir)
    document = json.loads((run_dir / "signals.json").read_text())
    return cfg, run_dir, metrics, document


def test_outputs_and_schema(signal_run):
    cfg, run_dir, metrics, document = signal_run
    for name in (
        "signals.json",
        "heatmap_followup.png",
        "heatmap_unrelated.png",
        "side_by_side.png",
        "tokens.html",
    ):
        assert (run_dir / name).stat().st_size > 1000, name
    assert [c["id"] for c in document["cases"]] == ["sampled_one", "fixed_one", "sampled_two"]
    (row,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 0 and row["num_cases"] == 3  # not an empty metrics file
    meta = document["meta"]
    assert meta["model"]["name"] == "tiny_random" and meta["template"] == "paper" and meta["seed"] == cfg.seed
    assert meta["sampling"] == {
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "max_new_tokens": 10,
        "min_completion_tokens": 3,
        "max_resamples": 3,
    }
    assert meta["cases_file"].endswith("cases.json")
    assert meta["skipped_cases"] == {"empty_followup": 1}
    assert metrics["skipped/empty_followup"] == 1.0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_cases"] == 3.0 and summary["skipped/empty_followup"] == 1.0
    for case in document["cases"]:
        n = len(case["completion_token_ids"])
        assert n > 0
        for key in PER_TOKEN:
            assert len(case[key]) == n, (case["id"], key)
        assert all(isinstance(i, int) for i in case["completion_token_ids"])
        for which in ("followup", "unrelated"):
            for a, t, s in zip(
                case[f"advantages_{which}"],
                case[f"teacher_logprobs_{which}"],
                case["student_logprobs"],
                strict=True,
            ):
                assert a == pytest.approx(t - s, abs=1e-6)
    # the summary is the token-weighted mean |A| over every case
    for which in ("followup", "unrelated"):
        values = [abs(a) for c in document["cases"] for a in c[f"advantages_{which}"]]
        assert document["summary"][f"mean_abs_advantage_{which}"] == pytest.approx(sum(values) / len(values))
    s = document["summary"]
    assert s["ratio"] == pytest.approx(s["mean_abs_advantage_followup"] / s["mean_abs_advantage_unrelated"])


def test_contexts_are_the_rendered_chats(signal_run, tiny_tokenizer):
    _, _, _, document = signal_run
    for case in document["cases"]:
        expected = tiny_tokenizer.apply_chat_template(
            case["prompt"], tokenize=False, add_generation_prompt=True, enable_thinking=False
        )
        assert case["student_context"] == expected
        for which in ("followup", "unrelated"):
            teacher = case[f"teacher_context_{which}"]
            assert case[which] in teacher and "<hindsight context>" in teacher
            assert teacher != case["student_context"]


def _recompute(model, tokenizer, context: str, ids: list[int]) -> list[float]:
    """Log-probs of `ids` after `context`: one full forward, log_softmax over the whole vocabulary."""
    prefix = tokenizer(context, add_special_tokens=False)["input_ids"]
    sequence = torch.tensor([prefix + ids])
    with torch.no_grad():
        logits = model(input_ids=sequence).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    positions = torch.arange(len(prefix) - 1, len(prefix) + len(ids) - 1)
    return logp[positions, torch.tensor(ids)].tolist()


def test_advantages_recompute_independently(signal_run, tiny_tokenizer):
    cfg, _, _, document = signal_run
    seed_everything(cfg.seed)  # tiny_random weights come from the seeded RNG, as in the run
    model = load_model(model_cfg("tiny_random"), CACHE_DIR, tiny_tokenizer, trainable=False).eval()
    for case in document["cases"]:
        ids = case["completion_token_ids"]
        student = _recompute(model, tiny_tokenizer, case["student_context"], ids)
        assert student == pytest.approx(case["student_logprobs"], abs=2e-4)
        for which in ("followup", "unrelated"):
            teacher = _recompute(model, tiny_tokenizer, case[f"teacher_context_{which}"], ids)
            assert teacher == pytest.approx(case[f"teacher_logprobs_{which}"], abs=2e-4)
            advantage = [t - s for t, s in zip(teacher, student, strict=True)]
            assert advantage == pytest.approx(case[f"advantages_{which}"], abs=4e-4)


def test_sampled_completion_ids_and_text(signal_run, tiny_tokenizer):
    _, _, _, document = signal_run
    for case in document["cases"]:
        assert "".join(case["tokens"]) == tiny_tokenizer.decode(case["completion_token_ids"])
        if case["completion_source"] == "sampled":
            assert (
                tiny_tokenizer.decode(case["completion_token_ids"], skip_special_tokens=True)
                == case["completion_text"]
            )
            assert 3 <= len(case["completion_token_ids"]) <= 10
            assert case["sampling_attempts"] >= 1


def test_fixed_completion_scored_as_given(signal_run, tiny_tokenizer):
    _, _, _, document = signal_run
    case = next(c for c in document["cases"] if c["id"] == "fixed_one")
    assert case["completion_source"] == "fixed" and case["sampling_attempts"] == 0
    assert case["completion_text"] == FIXED
    assert case["completion_token_ids"] == tiny_tokenizer(FIXED, add_special_tokens=False)["input_ids"]
    assert "".join(case["tokens"]) == FIXED
    assert case["completion_ended"] is False


def test_fixed_completion_with_end_of_turn(compose, tmp_path, tiny_tokenizer):
    cfg = _cfg(compose, _cases_file(tmp_path, CASES[1:2]), "task.fixed_completion_eos=true")
    execute(cfg, tmp_path / "run")
    (case,) = json.loads((tmp_path / "run" / "signals.json").read_text())["cases"]
    given = tiny_tokenizer(FIXED, add_special_tokens=False)["input_ids"]
    assert case["completion_token_ids"][:-1] == given
    assert case["tokens"][-1] == "<|im_end|>" and case["completion_ended"] is True


def test_empty_hindsight_addition_gives_zero_advantages(compose, tmp_path):
    """A template that adds nothing makes every teacher context the student context: A = 0."""
    cfg = _cfg(compose, _cases_file(tmp_path), "hindsight.template=custom", "hindsight.custom=''")
    metrics = execute(cfg, tmp_path / "run")
    document = json.loads((tmp_path / "run" / "signals.json").read_text())
    for case in document["cases"]:
        assert case["teacher_context_unrelated"] == case["student_context"]
        for which in ("followup", "unrelated"):
            assert max(abs(a) for a in case[f"advantages_{which}"]) < 1e-6, case["id"]
    assert metrics["mean_abs_advantage_unrelated"] < 1e-6
    assert "ratio" not in metrics  # 0/0 is not reported as a number


def test_default_template_gives_nonzero_advantages(signal_run):
    """The counterpart of the zero test: with a real hindsight block the advantages move."""
    _, _, metrics, _ = signal_run
    assert metrics["mean_abs_advantage_followup"] > 1e-3 and metrics["mean_abs_advantage_unrelated"] > 1e-3


def test_max_cases_takes_the_first_valid_cases(compose, tmp_path):
    cfg = _cfg(compose, _cases_file(tmp_path, [CASES[-1], *CASES[:3]]), "task.max_cases=2")
    metrics = execute(cfg, tmp_path / "run")
    document = json.loads((tmp_path / "run" / "signals.json").read_text())
    assert [c["id"] for c in document["cases"]] == ["sampled_one", "fixed_one"]
    assert metrics["skipped/empty_followup"] == 1.0 and document["meta"]["max_cases"] == 2


def test_file_without_valid_case_is_an_error(compose, tmp_path):
    path = _cases_file(tmp_path, [CASES[-1]])
    with pytest.raises(DataError, match=str(path)):
        execute(_cfg(compose, path), tmp_path / "run")


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["task.cases=null"], "task.cases"),
        (["task.min_completion_tokens=50"], "exceeds generation.max_new_tokens"),
        (["task.batch_size=0"], "task.batch_size"),
        (["task.max_cases=0"], "task.max_cases"),
    ],
)
def test_config_errors(compose, tmp_path, overrides, match):
    cfg = _cfg(compose, _cases_file(tmp_path), *overrides)
    with pytest.raises(ConfigError, match=match):
        execute(cfg, tmp_path / "run")


def test_shipped_cases_are_the_default(compose):
    cfg = compose("task=signal")
    with open_dict(cfg):
        assert Path(cfg.task.cases).name == "signal_cases.json" and Path(cfg.task.cases).exists()
