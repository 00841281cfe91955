"""Processes: the accelerate `Accelerator` for a run, one shared run directory, small collectives."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import torch

from sdpo_exp.config.schemas.trainer import Precision
from sdpo_exp.errors import ConfigError

log = logging.getLogger(__name__)


def export_job_distribution() -> bool:
    """In a submitit job (SLURM or local) with several tasks, set torch.distributed's environment (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) from submitit's view of the job, so that the tasks
    form one training run. Variables a launcher already set (torchrun) are kept. True when it exported."""
    if ("RANK" in os.environ and "WORLD_SIZE" in os.environ) or not os.environ.get("SUBMITIT_EXECUTOR"):
        return False
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks <= 1:
        return False
    port = os.environ.get("MASTER_PORT") or str(random.Random(str(env.job_id)).randint(20000, 60000))
    values = {
        "RANK": env.global_rank,
        "WORLD_SIZE": env.num_tasks,
        "LOCAL_RANK": env.local_rank,
        "LOCAL_WORLD_SIZE": env.num_tasks // max(env.num_nodes, 1),
        "MASTER_ADDR": env.hostnames[0],
        "MASTER_PORT": port,
    }
    os.environ.update({k: str(v) for k, v in values.items()})
    log.info("Process %d of %d in job %s (master %s:%s)", env.global_rank, env.num_tasks, env.job_id,
             values["MASTER_ADDR"], port)  # fmt: skip
    return True


def resolve_precision(precision: Precision | str) -> Precision:
    """`auto`: bf16 where this machine computes in it natively (the rule of `model.dtype=auto`), else no."""
    precision = precision if isinstance(precision, Precision) else Precision(precision)
    if precision != Precision.auto:
        return precision
    from sdpo_exp.models import resolve_dtype

    device = "cuda" if torch.cuda.is_available() else "cpu"
    native = resolve_dtype("auto", device) == torch.bfloat16
    if not native:
        log.info("trainer.precision=auto: no mixed precision (this %s has no native bf16)", device.upper())
    return Precision.bf16 if native else Precision.no


def make_accelerator(trainer: Any) -> Any:
    """An Accelerator with the run's mixed precision. Distribution (DDP, FSDP) comes from the launcher
    (`accelerate launch --config_file launchers/accelerate/<name>.yaml` or torchrun); on a machine
    without CUDA the processes talk over gloo."""
    from accelerate import Accelerator

    precision = resolve_precision(trainer.precision)
    cpu = not torch.cuda.is_available()
    if precision == Precision.fp16 and cpu:
        raise ConfigError("trainer.precision=fp16 needs a CUDA GPU; use bf16 or no on a CPU")
    return Accelerator(mixed_precision=precision.value, cpu=cpu, step_scheduler_with_optimizer=False)


def shared_run_dir(accelerator: Any, run_dir: Path) -> Path:
    """The main process's run directory, on every process.

    Under `accelerate launch` each process composes its own Hydra config, and `${now:...}` in the
    default run directory can differ by a second between processes. The main process's directory is
    the run's; another process whose Hydra chose a different one only keeps its own log file there.
    `python -m sdpo_exp.training.launch` (or an explicit `hydra.run.dir=...`) avoids the stray one.
    """
    if accelerator.num_processes == 1:
        return run_dir
    from accelerate.utils import broadcast_object_list

    chosen = broadcast_object_list([str(Path(run_dir).resolve())], from_process=0)[0]
    if chosen != str(Path(run_dir).resolve()):
        log.warning(
            "Process %d: Hydra chose %s, the main process %s; using the main process's directory "
            "(pass hydra.run.dir=... or launch with `python -m sdpo_exp.training.launch` to avoid this)",
            accelerator.process_index,
            run_dir,
            chosen,
        )
    return Path(chosen)


def gather_objects(accelerator: Any, obj: Any) -> list[Any]:
    """`obj` from every process, in process order (a one-element list with one process)."""
    if accelerator.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def any_process(accelerator: Any, flag: bool) -> bool:
    """True on every process when `flag` is true on at least one."""
    if accelerator.num_processes == 1:
        return flag
    return any(gather_objects(accelerator, bool(flag)))


_DISTRIBUTION = {"NO": "one process", "MULTI_CPU": "data parallel over gloo", "MULTI_GPU": "data parallel (DDP)",
                 "FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}  # fmt: skip


def distribution_words(accelerator: Any, strategy: str = "ddp") -> str:
    """How the run is spread over processes, in words (accelerate says `NO` for one process)."""
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type))
    words = _DISTRIBUTION.get(kind, kind)
    if strategy == "fsdp":
        words = "FSDP2 (sharded weights, gradients and optimiser state)"
    return words if accelerator.num_processes == 1 else f"{words}, {accelerator.num_processes} processes"


def precision_words(mixed_precision: str) -> str:
    return {"no": "no mixed precision", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}.get(
        str(mixed_precision), str(mixed_precision)
    )
