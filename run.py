#!/usr/bin/env python
"""sdpo-exp: the single entry point. `python run.py --help` lists the config groups.

`python run.py` runs the CPU demo (`experiment=demo`: online SDPO with a simulated user, against a
control); so does any command line that picks neither a task nor an experiment (`python run.py seed=2`
is the demo with seed 2). `task=...` or `experiment=...` composes from `conf/config.yaml` as usual."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from sdpo_exp.config.check import check_overrides
from sdpo_exp.config.help import help_text
from sdpo_exp.config.store import register_configs
from sdpo_exp.errors import ConfigError
from sdpo_exp.run_lock import RunDirectoryInUse, describe, holder
from sdpo_exp.tasks import check_optimized_metric, task_config

CONF_DIR = Path(__file__).resolve().parent / "conf"
DEFAULT_RUN = "experiment=demo"  # what `python run.py` runs unless a task or an experiment is chosen
# Overrides that choose what runs: with neither, the command line is the default run plus its overrides.
_CHOOSERS = ("task", "experiment")

# Hydra flags that take a value, and flags after which our own config check does not apply.
_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--info",
    "-i",
}
_UNCHECKED = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--hydra-help",
    "--version",
}


def _overrides(argv: list[str]) -> list[str] | None:
    """The overrides in `argv`, or None when a flag makes our pre-check inapplicable."""
    overrides, skip_next = [], False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        name = arg.split("=", 1)[0]
        if name in _UNCHECKED:
            return None
        if arg.startswith("-"):
            skip_next = name in _FLAGS_WITH_VALUE and "=" not in arg
            continue
        overrides.append(arg)
    return overrides


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sdpo_exp.tasks.runner import execute

    hydra_cfg = HydraConfig.get()
    try:
        metrics = execute(cfg, Path(hydra_cfg.runtime.output_dir))
    except RunDirectoryInUse as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    except Exception:
        # Already logged with its cause by the task wrapper; a single run just exits non-zero,
        # a sweep lets its launcher see the failure.
        if hydra_cfg.mode == RunMode.RUN:
            sys.exit(1)
        raise
    if cfg.optimized_metric:  # the task wrapper made sure that it is there
        return float(metrics[cfg.optimized_metric])
    return metrics


def _refuse_a_live_run_directory(overrides: list[str]) -> None:
    """Before Hydra writes its files there: exit 2 if `hydra.run.dir` is held by a live run."""
    for override in overrides:
        if override.startswith("hydra.run.dir="):
            info = holder(Path(override.split("=", 1)[1]))
            if info is not None:
                sys.stderr.write(f"error: {override.split('=', 1)[1]} is in use by {describe(info)}; wait for "
                                 "that run to end, or choose another hydra.run.dir\n")  # fmt: skip
                sys.exit(2)


def _chooses_a_run(overrides: list[str]) -> bool:
    return any(o.lstrip("+~").split("=", 1)[0] in _CHOOSERS for o in overrides)


def _print_task_config(argv: list[str], composed: list) -> bool:
    """`--cfg job` (not in a sweep): the config as the task reads it, unused groups named at the top."""
    if "--cfg=job" not in argv and not any(
        a in ("--cfg", "-c") and b == "job" for a, b in zip(argv, argv[1:], strict=False)
    ):
        return False
    if len(composed) != 1 or "-m" in argv or "--multirun" in argv or "--resolve" in argv:
        return False
    import yaml

    cfg = composed[0]
    plain, unused = task_config(cfg)
    if unused:
        sys.stdout.write(f"# task={cfg.task.name} does not read: {', '.join(unused)} (left out)\n")
    sys.stdout.write(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
    return True


def cli() -> None:
    register_configs()
    argv = sys.argv[1:]
    if "--help" in argv or "-h" in argv:
        sys.stdout.write(help_text(CONF_DIR))
        return
    overrides = _overrides(argv)
    if overrides is not None and not _chooses_a_run(overrides):
        sys.argv.append(DEFAULT_RUN)
        overrides = [*overrides, DEFAULT_RUN]
    if overrides is not None:
        try:
            composed = check_overrides(CONF_DIR, overrides)
            for cfg in composed:
                check_optimized_metric(str(cfg.task.name), cfg.optimized_metric)
        except ConfigError as exc:
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(2)
        _refuse_a_live_run_directory(overrides)
        if _print_task_config(argv, composed):
            return
    try:
        main()
    finally:  # a multirun with failed jobs ends before Hydra's on_multirun_end: summarise it here
        from sdpo_exp.sweeps.callback import write_pending

        write_pending()


if __name__ == "__main__":
    cli()
