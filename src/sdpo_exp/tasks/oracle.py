"""`task=oracle`: the in-context oracle (paper, Section 4.2). The same model, told the profile in its
system prompt, answers the held-out prompts; a judge playing the profile compares its greedy replies
with the model's own replies without that system prompt. Writes the online task's files:
`winrate.jsonl`, `winrate.png`, `report.md`, and the replies under `eval_replies/`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from sdpo_exp.data.prompt_files import read_prompt_sets
from sdpo_exp.evaluation.tracker import WinRateTracker
from sdpo_exp.generation import make_generator
from sdpo_exp.models import load_model, load_tokenizer
from sdpo_exp.tasks.context import RunContext
from sdpo_exp.tasks.online_files import OnlineFiles
from sdpo_exp.users.profiles import UserProfile
from sdpo_exp.users.roles import UserRoles
from sdpo_exp.users.schedule import ProfileSchedule

log = logging.getLogger(__name__)


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, Any]:
    _, held = read_prompt_sets(cfg.dataset, int(cfg.task.eval.num_eval_prompts), train=False)
    profile = UserProfile.from_config(cfg.user_profile)
    schedule = ProfileSchedule(((0, profile),))
    roles = UserRoles(cfg, [profile], simulators=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    model = load_model(cfg.model, cfg.paths.cache_dir, tokenizer, device=device, trainable=False).eval()
    policy = make_generator(
        "hf", model, tokenizer, dict(cfg.model.chat_template_kwargs or {}), int(cfg.generation.batch_size)
    )
    system = str(cfg.task.system_prompt).format(profile=profile.description)
    log.info("In-context oracle: %s with the system prompt %r", cfg.model.name, system)
    tracker = WinRateTracker(
        cfg,
        held,
        schedule,
        roles.judges,
        policy,
        Path(ctx.run_dir),
        system=system,
        base_label="no system prompt",
    )
    tracker.prepare_baseline(fresh=True)
    rows = tracker.evaluate(0, 0, 0)
    files = OnlineFiles(Path(ctx.run_dir), main=True)
    files.truncate(0, 0, fresh=True)
    files.add_winrates(rows)
    files.write_outputs(cfg, schedule, offered=0, global_batch=0)
    out: dict[str, Any] = {}
    for r in rows:
        if r["win_rate"] is not None:
            out[f"final/{r['profile']}/win_rate"] = float(r["win_rate"])
        out[f"final/{r['profile']}/coverage"] = float(r["coverage"] or 0.0)
    out.update({f"judge/{k}": v for k, v in roles.judge_metrics().items()})
    log.info("Outputs: report %s; win rates %s", Path(ctx.run_dir) / "report.md", files.winrate_path)
    ctx.log(out, step=0)
    return out
