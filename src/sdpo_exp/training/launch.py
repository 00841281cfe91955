"""`python -m sdpo_exp.training.launch [--config FILE] [--num-processes N] -- OVERRIDES...`

Starts `accelerate launch ... run.py OVERRIDES hydra.run.dir=DIR` with one run directory chosen here,
so that every process writes to and resumes from the same place. DIR is the directory a plain
`python run.py OVERRIDES` would use (Hydra's `hydra.run.dir`, resolved once), unless the overrides
already set `hydra.run.dir`. To resume a run, pass its directory: `hydra.run.dir=outputs/offline/...`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from sdpo_exp.config.paths import CONF_DIR, REPO_ROOT

log = logging.getLogger(__name__)


def resolve_run_dir(overrides: list[str]) -> str:
    """Hydra's run directory for these overrides, resolved now (its `${now:...}` included)."""
    for override in overrides:
        if override.startswith("hydra.run.dir="):
            return override.split("=", 1)[1]
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from sdpo_exp.config.store import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    return str(OmegaConf.select(cfg, "hydra.run.dir"))


def _accelerate_config(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def build_command(
    config: str | None, num_processes: int | None, overrides: list[str], run_dir: str
) -> list[str]:
    """`accelerate launch` for GPU configs; torchrun for a CPU config (accelerate's own launcher starts
    a single process on CPUs unless MPI is set up; torchrun starts them all, and the trainer's
    Accelerator picks them up over gloo)."""
    rest = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    script = [str(REPO_ROOT / "run.py"), *rest, f"hydra.run.dir={run_dir}"]
    settings = _accelerate_config(config)
    if settings.get("use_cpu") or settings.get("distributed_type") == "MULTI_CPU":
        n = num_processes or int(settings.get("num_processes", 1))
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n}",
            *script,
        ]
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config:
        cmd += ["--config_file", config]
    if num_processes:
        cmd += ["--num_processes", str(num_processes)]
    return cmd + script


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sdpo_exp.training.launch", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("--config", help="an accelerate config file, e.g. launchers/accelerate/fsdp.yaml")
    parser.add_argument("--num-processes", type=int, help="processes (GPUs) on this node")
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    parser.add_argument("overrides", nargs="*", help="run.py overrides (after --)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from sdpo_exp.config.check import check_overrides
    from sdpo_exp.errors import ConfigError

    try:
        check_overrides(CONF_DIR, args.overrides)
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    run_dir = resolve_run_dir(args.overrides)
    cmd = build_command(args.config, args.num_processes, args.overrides, run_dir)
    log.info("Run directory: %s", run_dir)
    log.info("%s", shlex.join(cmd))
    if args.dry_run:
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
