"""What a run with controls writes at its top: `report.md`, whose first lines say in words whether the
run beat each control, and `winrate.png`, the arms' curves with the in-context oracle's line."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sdpo_exp.evaluation.plots import oracle_lines, save_winrate_figure
from sdpo_exp.evaluation.report import pct

SIGNIFICANCE = 0.05  # two-sided, on the sign test


def _pts(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):+.1f} points"


def _p(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.3g}"


def _z(rate: Any, se: Any) -> float | None:
    if rate is None or se is None or not float(se) > 0:
        return None
    return (float(rate) - 0.5) / float(se)


def _from_half(rate: Any, se: Any) -> str:
    z = _z(rate, se)
    if z is None:
        return "SE n/a"
    return f"{abs(z):.1f} SE {'above' if z > 0 else 'below'} 50%" if abs(z) >= 0.05 else "at 50%"


def beat(row: Mapping[str, Any]) -> bool:
    """The run beat the control at this point: a higher win rate, and a significant sign test."""
    return row["diff"] is not None and row["diff"] > 0 and row["p_sign"] < SIGNIFICANCE


def criterion_met(row: Mapping[str, Any]) -> bool:
    """The demo's bar: the run above 50% by more than 2 SE, the control within 2 SE of 50%."""
    z_run, z_control = _z(row["win_rate_a"], row["se"]), _z(row["win_rate_b"], row["control_se"])
    return z_run is not None and z_run > 2 and (z_control is None or abs(z_control) <= 2)


def verdict(row: Mapping[str, Any], judge: str, oracle: Mapping[str, Any] | None) -> list[str]:
    """The paragraph that opens the report: the last evaluation's comparison with one control."""
    control, prompts = row["control"], row["prompts"]
    if beat(row):
        head = f"**SDPO beat the `{control}` control**"
    elif row["diff"] is not None and row["diff"] > 0:
        head = f"**SDPO did not beat the `{control}` control significantly**"
    else:
        head = f"**SDPO did not beat the `{control}` control**"
    text = (
        f"{head} (profile `{row['profile']}`, judge {judge}). After {row['interactions']} interactions, against "
        f"the base model on {prompts} held-out prompts, SDPO won {pct(row['win_rate_a'])} ± {pct(row['se'])} "
        f"of its decided pairs ({row['pairs_decided']} of {prompts} decided; {_from_half(row['win_rate_a'], row['se'])}); "
        f"trained the same way with `{control}` follow-ups it won {pct(row['win_rate_b'])} ± {pct(row['control_se'])} "
        f"({row['control_pairs_decided']} decided; {_from_half(row['win_rate_b'], row['control_se'])}). "
        f"Difference {_pts(row['diff'])} (paired bootstrap over prompts: SE {pct(row['bootstrap_se'])}, 95% interval "
        f"[{pct(row['ci_low'])}, {pct(row['ci_high'])}]); SDPO's outcome was better than the control's on "
        f"{row['favour_a']} prompts and worse on {row['favour_b']} (sign test p = {row['p_sign']:.3g})."
    )
    lines = [text, ""]
    if oracle is not None:
        lines += [
            f"The in-context oracle (the untrained model told the profile in its system prompt) won "
            f"{pct(oracle['win_rate'])} ± {pct(oracle['se'])} against the base model on the same prompts.",
            "",
        ]
    met = "met" if criterion_met(row) else "not met"
    lines += [
        f"SDPO above 50% by more than 2 SE while the control stays within 2 SE of 50%: **{met}**.",
        "",
    ]
    return lines


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = [
        "| interactions | profile | control | SDPO win rate | control win rate | difference | bootstrap SE | 95% interval | prompts better / worse / same | sign test p | bootstrap p |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['interactions']} | {r['profile']} | {r['control']} | {pct(r['win_rate_a'])} ± {pct(r['se'])} | "
            f"{pct(r['win_rate_b'])} ± {pct(r['control_se'])} | {_pts(r['diff'])} | {pct(r['bootstrap_se'])} | "
            f"[{pct(r['ci_low'])}, {pct(r['ci_high'])}] | {r['favour_a']} / {r['favour_b']} / {r['same']} | "
            f"{r['p_sign']:.3g} | {_p(r['p_bootstrap'])} |"
        )
    return out


def write_arms_report(
    path: Path,
    settings: Mapping[str, Any],
    comparison: Sequence[Mapping[str, Any]],
    judge: str,
    oracle: Sequence[Mapping[str, Any]],
    arms: Sequence[str],
    plot: str = "winrate.png",
) -> Path:
    end = max((r["interactions"] for r in comparison), default=None)
    oracle_by = {r["profile"]: r for r in oracle}
    lines = ["# Online SDPO against a control", ""]
    for row in comparison:
        if row["interactions"] == end:
            lines += verdict(row, judge, oracle_by.get(row["profile"]))
    if end is None:
        lines += ["No evaluation point is common to the run and its controls: nothing to compare.", ""]
    lines += [
        "Each arm is the same online run (same seed, prompts, sampling, loss and updates) with another simulated "
        "user: `user` plays the profile; a control's follow-ups carry no information about the reply. Win rates "
        "are against the base model's greedy replies, each pair judged in both orders (ties left out; SE = "
        "sqrt(p(1-p)/decided)). The paired comparison matches the arms' outcomes prompt by prompt: the sign test "
        "counts the prompts on which one arm's outcome (win > tie > loss) is better than the other's.",
        "",
        f"![win rates]({plot})",
        "",
        "## The arms compared at every evaluation",
        "",
        *comparison_table(comparison),
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in settings.items()],
        "",
        "## Each arm",
        "",
        *[
            f"- `{a}`: [arms/{a}/report.md](arms/{a}/report.md) (its interactions, win rates and replies)"
            for a in arms
        ],
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plot_arms(
    arm_rows: Mapping[str, Sequence[Mapping[str, Any]]],
    oracle: Sequence[Mapping[str, Any]],
    comparison: Sequence[Mapping[str, Any]],
    path: Path,
    title: str,
    baseline: str = "base",
) -> Path:
    """Each arm's win rate against the base over interactions (+-1 SE bands), the oracle's line, and
    the sign test's p-value of the run against each control under each evaluation point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for label, rows in arm_rows.items():
        points = sorted(
            (r for r in rows if r["baseline"] == baseline), key=lambda r: (r["profile"], r["interactions"])
        )
        for profile in sorted({r["profile"] for r in points}):
            mine = [r for r in points if r["profile"] == profile]
            xs = [r["interactions"] for r in mine]
            # at 0 interactions the policy is the base model: every pair a tie, 50% by definition
            ys = [0.5 if r["interactions"] == 0 and r["ties"] == r["pairs"] else
                  math.nan if r["win_rate"] is None else r["win_rate"] for r in mine]  # fmt: skip
            se = [r["se"] or 0.0 for r in mine]
            name = "SDPO (the profile's user)" if label == "user" else f"control: {label} follow-ups"
            (line,) = ax.plot(
                xs, ys, marker="o", label=name if len(points) == len(mine) else f"{name}, {profile}"
            )
            ax.fill_between(xs, [y - s for y, s in zip(ys, se, strict=True)], [y + s for y, s in zip(ys, se, strict=True)],
                            color=line.get_color(), alpha=0.15)  # fmt: skip
    oracle_lines(ax, oracle)
    for row in comparison:
        star = "*" if row["p_sign"] < SIGNIFICANCE and (row["diff"] or 0) > 0 else ""
        ax.annotate(
            f"p={row['p_sign']:.2g}{star}",
            (row["interactions"], 0.02),
            ha="center",
            fontsize=7,
            color="dimgrey",
        )
    if comparison:
        ax.text(0.99, 0.08, "p: sign test, SDPO against the control, prompt by prompt", transform=ax.transAxes,
                ha="right", fontsize=7, color="dimgrey")  # fmt: skip
    return save_winrate_figure(fig, ax, path, title, f"win rate against the {baseline} model", "upper left")
