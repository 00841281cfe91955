"""`python run.py --help`: the config groups, their options and the defaults."""

from __future__ import annotations

from pathlib import Path

import yaml

from sdpo_exp.config.check import group_options

USAGE = """\
sdpo-exp: SDPO from user interactions (self-distillation from follow-up messages)

Usage: python run.py [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--cfg job]

Without task= or experiment=, python run.py is the CPU demo (experiment=demo: online SDPO against an
unrelated-follow-up control, about 15 minutes on 2 cores) with the overrides given; the defaults marked
* below apply once a task or an experiment is chosen.

Examples:
  python run.py seed=2                              # the CPU demo with seed 2
  python run.py experiment=signal_demo              # a preset (see 'experiment' below)
  python run.py experiment=wildfeedback_qwen8b --cfg job   # print the composed config, run nothing
  python run.py task=offline model=tiny_random trainer.lr=1e-5
  python run.py -m experiment=offline_demo trainer.lr=1e-6,5e-6   # a sweep (multirun)
  python run.py -m hydra/launcher=slurm ...          # the same sweep on SLURM through submitit
  python run.py task=benchmark 'task.models=[base,RUN_DIR]'   # benchmark scores before and after training

Config groups (options; * marks the default):
"""


def _defaults(config_dir: Path) -> dict[str, str]:
    primary = yaml.safe_load((config_dir / "config.yaml").read_text())
    chosen: dict[str, str] = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                key = key.replace("optional ", "").replace("override ", "").strip()
                chosen[key] = str(value)
    return chosen


def help_text(config_dir: Path) -> str:
    defaults = _defaults(config_dir)
    lines = [USAGE]
    groups = sorted(p.name for p in config_dir.iterdir() if p.is_dir() and p.name != "hydra")
    for group in groups + ["hydra/launcher"]:
        options = group_options(config_dir, group)
        if group == "hydra/launcher":
            options = sorted(set(options) | {"basic", "submitit_local", "submitit_slurm"})
        shown = [f"{o}*" if defaults.get(group) == o else o for o in options]
        lines.append(f"  {group:<15} {', '.join(shown)}")
    lines.append("")
    lines.append("Any key can be set with KEY=VALUE (e.g. trainer.lr=2e-6, model.path=/my/model);")
    lines.append("see the full config with --cfg job, and Hydra's own flags with --hydra-help.")
    return "\n".join(lines) + "\n"
