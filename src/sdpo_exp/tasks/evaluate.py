"""`task=evaluate`: the win rate of each of several models (trained checkpoints) against a baseline,
for each of several profiles, on the held-out prompts. Writes `evaluation.json` (one row per model
and profile), `evaluation.md` (a table) and `evaluation.png` (a heatmap), and the greedy replies
under `eval_replies/`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sdpo_exp.data.jsonl import write_json
from sdpo_exp.data.prompt_files import read_prompt_sets
from sdpo_exp.errors import ConfigError
from sdpo_exp.evaluation.compare import compare_replies
from sdpo_exp.evaluation.plots import plot_heatmap
from sdpo_exp.evaluation.replies import policy_replies, save_replies
from sdpo_exp.generation import make_generator
from sdpo_exp.models import load_model, load_tokenizer
from sdpo_exp.tasks.context import RunContext
from sdpo_exp.users.profiles import UserProfile, load_profile
from sdpo_exp.users.roles import UserRoles

log = logging.getLogger(__name__)


def model_dir(entry: str) -> Path:
    """A Hugging Face model directory, or a run directory whose `final/` is one."""
    path = Path(entry).expanduser()
    for candidate in (path, path / "final"):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(
        f"task.checkpoints: {entry} is neither a model directory nor a run directory with final/"
    )


def _replies(cfg: DictConfig, path: str | None, held: list, device: torch.device) -> list[str]:
    model_cfg = OmegaConf.merge(cfg.model, {"path": path}) if path else cfg.model
    tokenizer = load_tokenizer(model_cfg, cfg.paths.cache_dir)
    model = load_model(model_cfg, cfg.paths.cache_dir, tokenizer, device=device, trainable=False).eval()
    generator = make_generator(
        "hf", model, tokenizer, dict(cfg.model.chat_template_kwargs or {}), int(cfg.generation.batch_size)
    )
    max_new = int(cfg.task.eval.max_new_tokens or cfg.generation.max_new_tokens)
    replies = policy_replies(generator, held, max_new)
    del model, generator
    return replies


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, Any]:
    if not cfg.task.checkpoints:
        raise ConfigError(
            "task=evaluate needs task.checkpoints=[DIR,...] (model directories or run directories)"
        )
    models = {str(entry): model_dir(str(entry)) for entry in cfg.task.checkpoints}
    _, held = read_prompt_sets(cfg.dataset, int(cfg.task.eval.num_eval_prompts), train=False)
    names = list(cfg.task.profiles) or [str(cfg.user_profile.name)]
    profiles = [
        UserProfile.from_config(cfg.user_profile) if n == cfg.user_profile.name else load_profile(n)
        for n in names
    ]
    judges = UserRoles(cfg, profiles, simulators=False).judges
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run_dir = Path(ctx.run_dir)
    out_dir = run_dir / "eval_replies"
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline_label = cfg.task.baseline or f"base ({cfg.model.name})"
    log.info("Baseline %s: greedy replies to %d held-out prompts", baseline_label, len(held))
    base = _replies(cfg, str(model_dir(cfg.task.baseline)) if cfg.task.baseline else None, held, device)
    save_replies(out_dir / "baseline.jsonl", held, base)
    rows: list[dict[str, Any]] = []
    for k, (entry, path) in enumerate(models.items()):
        log.info("Model %d/%d: %s", k + 1, len(models), path)
        replies = _replies(cfg, str(path), held, device)
        save_replies(out_dir / f"model_{k}.jsonl", held, replies)
        found = compare_replies(judges, held, replies, {p.name: {"baseline": base} for p in profiles},
                                int(cfg.task.eval.bootstrap_samples), int(cfg.seed))  # fmt: skip
        for row in found:
            row.update(model=entry, model_dir=str(path), baseline=baseline_label)
            rows.append(row)
            rate = "n/a" if row["win_rate"] is None else f"{100 * row['win_rate']:.1f}%"
            log.info(
                "%s, %s: win rate %s (%d/%d/%d)",
                entry,
                row["profile"],
                rate,
                row["wins"],
                row["losses"],
                row["ties"],
            )
    write_json(run_dir / "evaluation.json", rows)
    _table(run_dir / "evaluation.md", rows, list(models), names, baseline_label, len(held))
    plot_heatmap(rows, list(models), names, run_dir / "evaluation.png", f"win rate against {baseline_label}")
    log.info(
        "Outputs: %s, %s, %s",
        run_dir / "evaluation.md",
        run_dir / "evaluation.json",
        run_dir / "evaluation.png",
    )
    out = {
        f"win_rate/{r['model']}/{r['profile']}": float(r["win_rate"])
        for r in rows
        if r["win_rate"] is not None
    }
    ctx.log(out, step=0)  # one row in metrics.jsonl (the run has no steps)
    return out


def _table(
    path: Path, rows: list[dict[str, Any]], models: list[str], profiles: list[str], baseline: str, n: int
) -> None:
    by = {(r["model"], r["profile"]): r for r in rows}
    lines = [f"# Win rates against {baseline}", "", f"{n} held-out prompts, each pair judged in both orders; "
             "win rate ± analytic SE (decided pairs of all pairs).", "",
             "| model | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]  # fmt: skip
    for m in models:
        cells = []
        for p in profiles:
            r = by[(m, p)]
            rate = "n/a" if r["win_rate"] is None else f"{100 * r['win_rate']:.1f}% ± {100 * r['se']:.1f}"
            cells.append(f"{rate} ({r['wins'] + r['losses']}/{r['pairs']})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
