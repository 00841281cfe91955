"""Results of `benchmarks/step.py` as markdown tables, a JSON file and a scaling plot, and the longest
context that fits a memory budget (from the context sweep)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench_measure import ratio

MARK_START, MARK_END = "<!-- step-results:start -->", "<!-- step-results:end -->"
HEADING = "## Results of `make bench`"


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def longest_context(points: list[dict[str, Any]], method: str, budget_mib: float) -> dict[str, float | None]:
    """Over the context sweep: the longest measured context whose peak memory fits `budget_mib`, and an
    estimate between (or beyond) the measured points by linear interpolation of peak memory."""
    sweep = sorted(
        (p["context"], p["methods"][method]["peak_mib"]) for p in points if p["sweep"] == "context"
    )
    sweep = [(c, m) for c, m in sweep if m is not None]
    if not sweep:
        return {"measured": None, "estimated": None}
    fitting = [c for c, m in sweep if m <= budget_mib]
    measured = max(fitting) if fitting else None
    beyond = [i for i, (_, m) in enumerate(sweep) if m > budget_mib]
    i = beyond[0] if beyond else len(sweep) - 1
    (c1, m1), (c2, m2) = sweep[max(i - 1, 0)], sweep[i]
    estimated = None
    if m2 > m1 and c2 > c1:
        estimated = c1 + (budget_mib - m1) * (c2 - c1) / (m2 - m1)
        estimated = max(estimated, 0.0)
    return {"measured": measured, "estimated": estimated}


def _method_rows(methods: dict[str, Any], names: list[str], base: str = "naive") -> list[str]:
    rows = []
    ref = methods[base]
    for name in names:
        m = methods[name]
        tps = m.get("completion_tokens_per_s")
        rows.append(
            f"| {name} | {_f(m['wall_s'])} | {_f(m['cpu_s'])} | {_f(m['best_wall_s'])} | "
            f"{_f(tps, 1) if tps is not None else '-'} | {_f(m['peak_mib'], 0)} | "
            f"{_x(ratio(m['wall_s'], ref['wall_s']))} | {_x(ratio(m['cpu_s'], ref['cpu_s']))} | "
            f"{_x(ratio(m['peak_mib'], ref['peak_mib']))} |"
        )
    return rows


HEAD = (
    "| method | wall s (median) | CPU s (median) | best wall s | completion tok/s | peak MiB | wall / naive "
    "| CPU / naive | memory / naive |\n|---|---|---|---|---|---|---|---|---|"
)


def _sizes(result: dict[str, Any]) -> str:
    s, shape = result["sizes"], result.get("shape", {})
    text = f"{s['model']} {s['dtype']}, batch {s['batch']}"
    if shape:
        text += (
            f", contexts {shape['student_context_mean']:.0f} tokens on average (teacher "
            f"{shape['teacher_context_mean']:.0f}), {shape['completion_tokens']} completion tokens"
        )
    return text + f", {s['repeats']} timed repeat(s) per method"


def _machine_line(m: dict[str, Any]) -> str:
    bf16 = ", ".join(m.get("bf16_instructions", [])) or "none (bf16 runs emulated)"
    load = " / ".join(map(str, m.get("load_average_end", [])))
    return (f"{m['cores']} x {m['cpu']}, CPU bf16 instructions: {bf16}, torch {m['torch']}, "
            f"{m['torch_threads']} torch thread(s) per worker; load average at the start "
            f"{' / '.join(map(str, m['load_average']))}{', at the end ' + load if load else ''}.")  # fmt: skip


def markdown(results: dict[str, Any], plot_name: str | None) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} on {m['cores']} x {m['cpu']}, {m['memory_gib']} GiB RAM, "
        f"{'a GPU present (unused)' if m['gpu'] else 'no GPU'}; Python {m['python']}, torch {m['torch']}, "
        f"transformers {m['transformers']}, {m['torch_threads']} torch thread(s) per worker. Load average at "
        f"the start {' / '.join(map(str, m['load_average']))}, at the end "
        f"{' / '.join(map(str, results['load_average_end']))}; the whole run took {results['elapsed_s']:.0f} s"
        f"{' (tiny mode: tiny_random, sizes of a smoke test, not a measurement)' if results['tiny'] else ''}.",
        "",
    ]
    if results.get("remeasured"):
        later = ", ".join(f"{part} ({when})" for part, when in sorted(results["remeasured"].items()))
        lines[-1:] = [f"Parts measured again later with `--part`: {later}.", ""]
        groups: dict[str, list[str]] = {}
        for part, again in results.get("remeasured_machines", {}).items():
            groups.setdefault(_machine_line(again), []).append(part)
        for about, names in groups.items():
            lines[-1:] = [f"Measured again ({', '.join(sorted(names))}) on {about}", ""]
    parts = results["parts"]
    if "step" in parts:
        r = parts["step"]
        lines += [
            f"**Whole offline step** (`Learner.step`, loss `{r['loss']}`, shared prefix on): {_sizes(r)}.",
            "",
        ]
        lines += [HEAD, *_method_rows(r["methods"], ["naive", "ours"]), ""]
    if "teacher" in parts:
        r = parts["teacher"]
        lines += [
            f"**Teacher pass alone**: {_sizes(r)}; shared prefix {r['prefix_mean']:.0f} tokens per row on "
            f"average. Largest |log-prob difference|: plain vs shared {r['max_abs_diff_plain_shared']:.2g}; "
            f"for scale, plain batched vs each row alone {r['max_abs_diff_plain_rowwise']:.2g} (rounding of "
            f"the model's dtype), naive vs plain {r['max_abs_diff_naive_plain']:.2g} (the same pass).",
            "",
            HEAD,
            *_method_rows(r["methods"], ["naive", "plain", "shared"]),
            "",
        ]
        plain, shared = r["methods"]["plain"], r["methods"]["shared"]
        lines += [f"Shared / plain: wall {_x(ratio(shared['wall_s'], plain['wall_s']))}, "
                  f"CPU {_x(ratio(shared['cpu_s'], plain['cpu_s']))}.", ""]  # fmt: skip
    if "trl" in parts:
        r = parts["trl"]
        if "skipped" in r:
            lines += [f"**Loss step against TRL**: skipped: {r['skipped']}.", ""]
        else:
            values = ", ".join(f"{k} {v['value']:.6g}" for k, v in r["methods"].items())
            lines += [
                f"**Loss step against TRL's SDPO loss path** (`topk`, K = {r['k']}, tail bucket, reverse KL, "
                f"per-sequence mean): {_sizes(r)}. Loss values: {values}.",
                "",
                HEAD,
                *_method_rows(r["methods"], ["naive", "ours", "trl"]),
                "",
            ]
    if "scaling" in parts:
        lines += _scaling_lines(parts["scaling"], plot_name)
    if "realistic" in parts:
        lines += realistic_lines(parts["realistic"])
    lines += round_two_lines(parts)
    return "\n".join(lines)


REALISTIC_NAMES = {
    "naive": "naive",
    "ours_defaults": "ours (defaults)",
    "ours_plain": "ours (plain)",
    "trl": "TRL `SDPOTrainer` step",
}
REALISTIC_HEAD = (
    "| method | wall s (median) | CPU s (median) | best wall s | tokens/s | completion tok/s | peak MiB "
    "| wall / naive | wall / TRL | memory / naive | memory / TRL |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"`{k}={'null' if v is None else str(v).lower()}`" for k, v in values.items())


def realistic_lines(r: dict[str, Any]) -> list[str]:
    s, lengths, shape = r["sizes"], r["lengths"], r["shape"]
    summary = lengths["summary"]
    methods = r["methods"]
    trl = methods.get("trl")
    rows = ", ".join(f"{x['context']}/{x['completion']}/{x['followup']}" for x in lengths["rows"])
    lines = [
        f"**Whole step on lengths of logged conversations** (`--part realistic`, loss `{r['loss']}`): "
        f"{s['model']} {s['dtype']}, {s['batch']} interactions in {r['micro_batches']} micro-batches of "
        f"{r['per_device']}, lengths drawn from `benchmarks/lengths.py` (seed {lengths['seed']}; "
        f"{lengths['source']}; contexts clipped to {lengths['max_context']} tokens, completions to "
        f"{lengths['max_completion']}, follow-ups to {lengths['max_followup']}). Context / completion / "
        f"follow-up tokens of the rows: {rows} (content tokens); rendered contexts "
        f"{shape['student_context_mean']:.0f} tokens on average (teacher {shape['teacher_context_mean']:.0f}), "
        f"median sampled context {summary['context_median']:.0f}; {shape['completion_tokens']} completion "
        f"tokens, {r['tokens']} student + teacher tokens without padding (tokens/s counts these); "
        f"{s['repeats']} timed repeat(s) per method, after a warm-up step of each on the first two "
        "interactions (a micro-batch of one each).",
        "",
        f"Settings: ours (defaults) resolved {_settings(r['config']['defaults'])}; ours (plain) "
        f"{_settings(r['config']['plain'])}.",
    ]
    if "skipped" in r.get("trl", {}):
        lines[-1] += f" TRL: skipped: {r['trl']['skipped']}."
    else:
        t = r["trl"]
        lines[-1] += (
            f" TRL: `distillation_mode={t['distillation_mode']}` (alpha {t['distillation_alpha']}, the same "
            f"per-token term as `pg`), `distillation_weight={t['distillation_weight']}`, "
            f"`teacher_model_kind={t['teacher_model_kind']}`, {t['per_device_train_batch_size']} rows x "
            f"{t['gradient_accumulation_steps']} accumulation steps; its generation batch is padded as one, "
            f"{t['padded_tokens']} token positions against {r['padded_tokens']['micro_batches']} for the "
            f"project's per-micro-batch padding."
        )
    values = ", ".join(f"{REALISTIC_NAMES[k]} {v['value']:.6g}" for k, v in methods.items())
    lines += [
        f"Loss values of the warm-up steps (same initial weights, same rows): {values}.",
        "",
        REALISTIC_HEAD,
    ]
    base = methods["naive"]
    for name, m in methods.items():
        lines.append(
            f"| {REALISTIC_NAMES[name]} | {_f(m['wall_s'])} | {_f(m['cpu_s'])} | {_f(m['best_wall_s'])} | "
            f"{_f(m['tokens_per_s'], 1)} | {_f(m['completion_tokens_per_s'], 1)} | {_f(m['peak_mib'], 0)} | "
            f"{_x(ratio(m['wall_s'], base['wall_s']))} | "
            f"{_x(ratio(m['wall_s'], trl['wall_s'])) if trl else 'n/a'} | "
            f"{_x(ratio(m['peak_mib'], base['peak_mib']))} | "
            f"{_x(ratio(m['peak_mib'], trl['peak_mib'])) if trl else 'n/a'} |"
        )
    ours = methods["ours_defaults"]
    text = f"Speed-up of ours (defaults), tokens/s: {_x(ratio(base['wall_s'], ours['wall_s']))} against naive"
    if trl:
        text += f", {_x(ratio(trl['wall_s'], ours['wall_s']))} against TRL's step"
    text += f", {_x(ratio(methods['ours_plain']['wall_s'], ours['wall_s']))} against ours (plain)."
    return lines + ["", text, ""]


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "no")


def round_two_lines(parts: dict[str, Any]) -> list[str]:
    """The round-two targets of the performance issue, with this run's figures (where measured)."""
    rows = []
    r = parts.get("realistic")
    if r:
        m = r["methods"]
        ours, naive, trl = m["ours_defaults"], m["naive"], m.get("trl")
        speed = ratio(naive["wall_s"], ours["wall_s"])
        rows.append(
            f"| whole step, defaults, >= 1.5x faster than naive (realistic lengths) | {_x(speed)} | "
            f"{_met(None if speed is None else speed >= 1.5)} |"
        )
        if trl:
            speed_trl = ratio(trl["wall_s"], ours["wall_s"])
            memory_trl = ratio(ours["peak_mib"], trl["peak_mib"])
            ok = None if speed_trl is None or memory_trl is None else speed_trl >= 1.3 and memory_trl <= 1.0
            rows.append(
                f"| whole step, defaults, >= 1.3x faster than TRL's whole step at no more memory | "
                f"{_x(speed_trl)}, memory {_x(memory_trl)} of TRL's | {_met(ok)} |"
            )
        memory = ratio(ours["peak_mib"], naive["peak_mib"])
        rows.append(
            f"| whole-step peak memory, defaults, <= 50% of naive (realistic lengths) | "
            f"{_f(ours['peak_mib'], 0)} / {_f(naive['peak_mib'], 0)} MiB = {_x(memory)} | "
            f"{_met(None if memory is None else memory <= 0.5)} |"
        )
    t = parts.get("teacher")
    if t:
        shared, plain = t["methods"]["shared"], t["methods"]["plain"]
        teacher = ratio(shared["wall_s"], plain["wall_s"])
        rows.append(
            f"| teacher pass with the shared prefix <= 0.4x of the plain pass (contexts 1,024; the `teacher` "
            f"part) | {_x(teacher)} | {_met(None if teacher is None else teacher <= 0.4)} |"
        )
    if not rows:
        return []
    return [
        "**Round-two targets of the performance issue, figures of this run** (ratios of medians; "
        "docs/benchmarks.md, end, says what limits them):",
        "",
        "| target | measured | met? |",
        "|---|---|---|",
        *rows,
        "",
    ]


def _scaling_lines(r: dict[str, Any], plot_name: str | None) -> list[str]:
    s = r["sizes"]
    lines = [
        f"**Scaling** (loss step of `pg`, teacher + student + loss + backward, {s['model']} {s['dtype']}, "
        f"batch {s['batch']}; contexts at completion {s['completion']}, completions at context {s['context']}):",
        "",
        "| sweep | context | completion | naive s | ours s | time ratio | naive MiB | ours MiB | memory ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r["points"]:
        n, o = p["methods"]["naive"], p["methods"]["ours"]
        lines.append(
            f"| {p['sweep']} | {p['context']} | {p['completion']} | {_f(n['wall_s'])} | {_f(o['wall_s'])} | "
            f"{_x(ratio(o['wall_s'], n['wall_s']))} | {_f(n['peak_mib'], 0)} | {_f(o['peak_mib'], 0)} | "
            f"{_x(ratio(o['peak_mib'], n['peak_mib']))} |"
        )
    budget = r["budget"]
    lines += [
        "",
        f"Longest context within a {budget['budget_mib']:.0f} MiB step budget (completion {s['completion']}):",
    ]
    for method in ("naive", "ours"):
        found = budget[method]
        text = f"- {method}: {found['measured'] or 'none'} measured"
        if found["estimated"] is not None:
            text += f"; about {found['estimated']:.0f} by interpolating peak memory"
        lines.append(text)
    if plot_name:
        lines += ["", f"![step time and peak memory against context and completion length]({plot_name})"]
    return lines + [""]


def write_markdown(path: Path, text: str) -> None:
    """Fill the results section of `path` between the markers; a file without them gets the section
    appended under a heading of its own (a new file: only that)."""
    section = f"{MARK_START}\n{text}\n{MARK_END}\n"
    old = path.read_text() if path.exists() else ""
    if MARK_START in old and MARK_END in old:
        head, rest = old.split(MARK_START, 1)
        path.write_text(f"{head}{section.rstrip()}{rest.split(MARK_END, 1)[1]}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{old.rstrip()}\n\n{HEADING}\n\n{section}" if old.strip() else f"{HEADING}\n\n{section}")


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def plot(path: Path, scaling: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for col, sweep in enumerate(("context", "completion")):
        points = sorted((p for p in scaling["points"] if p["sweep"] == sweep), key=lambda p: p[sweep])
        xs = [p[sweep] for p in points]
        for row, (key, label) in enumerate((("wall_s", "step time (s)"), ("peak_mib", "peak memory (MiB)"))):
            ax = axes[row][col]
            for method in ("naive", "ours"):
                ax.plot(xs, [p["methods"][method][key] for p in points], marker="o", label=method)
            if key == "peak_mib" and sweep == "context":
                ax.axhline(scaling["budget"]["budget_mib"], color="grey", linestyle="--", label="budget")
            ax.set_xscale("log", base=2)
            ax.set_xlabel(f"{sweep} tokens")
            ax.set_ylabel(label)
            ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
