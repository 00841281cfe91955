"""`python -m sdpo_exp.evaluation.user_table [--profile NAME ...] [--write FILE]`: what the rule-based user says and how
the rule-based judge rules, on the shipped replies (`resources/users_demo/replies.json`).

Prints a markdown table per profile: each reply's follow-up from the rule-based simulator, and the
rule-based judge's win rate of that reply against the plain one (both orders). `--write FILE` puts
the tables between the `<!-- users-table:start -->` and `<!-- users-table:end -->` marks of FILE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sdpo_exp.config.store import resource_path
from sdpo_exp.evaluation.pairs import judge_win_rate
from sdpo_exp.users.judge import RuleBasedJudge
from sdpo_exp.users.profiles import load_profile
from sdpo_exp.users.simulator import RuleBasedSimulator

PAPER_PROFILES = [
    "no_emojis",
    "no_phatic",
    "answer_directly",
    "concise_casual_beginner",
    "detailed_professional_expert",
]
START, END = "<!-- users-table:start -->", "<!-- users-table:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def tables(profiles: list[str]) -> str:
    cases = json.loads(Path(resource_path("users_demo/replies.json")).read_text())["cases"]
    styles = list(cases[0]["replies"])
    out = []
    for name in profiles:
        profile = load_profile(name)
        simulator, judge = RuleBasedSimulator(profile), RuleBasedJudge(profile)
        out += [f"**{name}**: {profile.description}", "", "| reply style | follow-up (first prompt) | follow-up (second prompt) | judge: this style vs plain |", "|---|---|---|---|"]  # fmt: skip
        for style in styles:
            prompts = [c["prompt"] for c in cases]
            replies = [c["replies"][style] for c in cases]
            plain = [c["replies"]["plain"] for c in cases]
            followups = simulator.followups(prompts, replies)
            result = judge_win_rate(judge, prompts, replies, plain, bootstrap_samples=0)
            verdict = f"{result.wins} won, {result.losses} lost, {result.ties} tied"
            out.append(f"| {style} | {_cell(followups[0])} | {_cell(followups[1])} | {verdict} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="append", help="profiles to show (default: the paper's five)")
    parser.add_argument("--write", type=Path, help="fill the marked section of this markdown file")
    args = parser.parse_args()
    text = tables(args.profile or PAPER_PROFILES)
    if args.write:
        doc = args.write.read_text()
        if START not in doc or END not in doc:
            raise SystemExit(f"{args.write} has no {START} ... {END} section")
        head, rest = doc.split(START, 1)
        args.write.write_text(f"{head}{START}\n{text}{END}{rest.split(END, 1)[1]}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
