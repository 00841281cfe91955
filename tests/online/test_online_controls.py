"""task=online with controls (the default run's design) on tiny_random: one run directory holding an
arm per simulated user, trained from the same start; the comparison, the report and the oracle."""

from __future__ import annotations

import json

from online_support import jsonl, online_overrides

from sdpo_exp.users.controls import UNRELATED
from sdpo_exp.users.rules import APPROVALS

from conftest import final_weights, run_in_process

CONTROLLED = ["task.controls=[unrelated]", "task.oracle=true", "user_profile=no_questions_back"]


def test_a_run_with_a_control_trains_both_arms_from_one_start_and_compares_them(compose, tmp_path):
    run_dir = tmp_path / "run"
    summary = run_in_process(compose, run_dir, online_overrides() + CONTROLLED)
    user, control = run_dir / "arms" / "user", run_dir / "arms" / "unrelated"
    mine, theirs = jsonl(user / "interactions.jsonl"), jsonl(control / "interactions.jsonl")
    # the same prompts in the same order, and the same first replies: the arms start from one state
    assert [r["prompt_id"] for r in mine] == [r["prompt_id"] for r in theirs] and len(mine) == 16
    assert [r["completion"] for r in mine[:4]] == [r["completion"] for r in theirs[:4]]
    assert all(r["followup"] in UNRELATED for r in theirs)
    assert all(r["followup"] not in UNRELATED for r in mine)  # the rule-based user plays the profile
    assert any(r["followup"] in APPROVALS for r in mine)
    # the base model's replies are computed once and shared; the oracle is evaluated in the first arm
    base = (run_dir / "eval_replies" / "base.jsonl").read_text()
    assert (
        (user / "eval_replies" / "base.jsonl").read_text()
        == base
        == (control / "eval_replies" / "base.jsonl").read_text()
    )
    oracle = jsonl(run_dir / "oracle.jsonl")
    assert [(r["profile"], r["baseline"], r["pairs"]) for r in oracle] == [("no_questions_back", "base", 4)]
    assert not (control / "oracle.jsonl").exists()

    comparison = json.loads((run_dir / "comparison.json").read_text())
    assert [(r["interactions"], r["control"], r["prompts"]) for r in comparison] == [
        (8, "unrelated", 4),
        (16, "unrelated", 4),
    ]
    for row in comparison:  # the paired counts agree with each arm's own outcomes
        a = [o["outcome"] for o in jsonl(user / "eval_replies" / f"outcomes_at_{row['interactions']}.jsonl")]
        b = [
            o["outcome"] for o in jsonl(control / "eval_replies" / f"outcomes_at_{row['interactions']}.jsonl")
        ]
        score = {"win": 1, "tie": 0, "loss": -1}
        assert row["favour_a"] == sum(score[x] > score[y] for x, y in zip(a, b, strict=True))
        assert row["favour_b"] == sum(score[x] < score[y] for x, y in zip(a, b, strict=True))
    arms = {r["arm"] for r in jsonl(run_dir / "winrate.jsonl")}
    assert arms == {"user", "unrelated"}
    report = (run_dir / "report.md").read_text().splitlines()
    assert report[0] == "# Online SDPO against a control"
    assert (
        report[2].startswith("**SDPO") and "`unrelated` control" in report[2] and "sign test p =" in report[2]
    )
    assert "in-context oracle" in "\n".join(report[:8])
    assert (run_dir / "winrate.png").stat().st_size > 10_000
    # the run's own metrics as without controls, the control's prefixed, the comparison's
    assert summary["interactions"] == 16 and summary["steps"] == 4
    assert "compare/unrelated/no_questions_back/p_sign" in summary
    assert summary["compare/unrelated/no_questions_back/beat"] in (0, 1)
    for arm in (user, control):
        assert json.loads((arm / "arm.json").read_text())["interactions"] == 16
        assert (arm / "report.md").is_file() and (arm / "config.yaml").is_file()
    assert "simulator:\n  name: unrelated" in (control / "config.yaml").read_text()


def test_finished_arms_are_not_run_again(compose, tmp_path, caplog):
    run_dir = tmp_path / "run"
    first = run_in_process(compose, run_dir, online_overrides() + CONTROLLED)
    before = (run_dir / "arms" / "unrelated" / "interactions.jsonl").stat().st_mtime_ns
    caplog.set_level("INFO")
    again = run_in_process(compose, run_dir, online_overrides() + CONTROLLED)
    assert caplog.text.count("not run again") == 2
    assert (run_dir / "arms" / "unrelated" / "interactions.jsonl").stat().st_mtime_ns == before
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in first.items() if k != "seconds"
    }


def test_lr_zero_runs_everything_and_changes_nothing(compose, tmp_path):
    runs = {}
    for n in (4, 16):
        runs[n] = tmp_path / f"lr0_{n}"
        summary = run_in_process(compose, runs[n], online_overrides(num_interactions=n, eval_every=4)
                                 + ["trainer.lr=0", "trainer.save_final=true"])  # fmt: skip
        assert summary["steps"] == n // 4
    a, b = final_weights(runs[4]), final_weights(runs[16])
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    base = jsonl(runs[16] / "eval_replies" / "base.jsonl")
    assert jsonl(runs[16] / "eval_replies" / "at_16.jsonl") == base  # regenerated after 4 steps: unchanged
    assert all(r["ties"] == r["pairs"] for r in jsonl(runs[16] / "winrate.jsonl"))


def test_the_untrained_policy_regenerates_the_base_replies_it_reuses(tiny_model, tiny_tokenizer):
    # at 0 interactions the tracker reuses the base model's replies instead of generating them again;
    # that is only right because greedy decoding of the same weights gives the same replies
    from sdpo_exp.data.prompt_files import read_prompts
    from sdpo_exp.evaluation.replies import policy_replies
    from sdpo_exp.generation import make_generator

    from conftest import REPO

    held = read_prompts(REPO / "src/sdpo_exp/resources/online_demo/eval.jsonl", 6).prompts
    policy = make_generator("hf", tiny_model, tiny_tokenizer, {}, 4)
    first = policy_replies(policy, held, 12)
    assert policy_replies(policy, held, 12) == first
    assert policy_replies(policy, held, 12, batch_size=6) == first  # one batch or two: the same replies
