"""Schema of the ``trainer`` group: optimiser, schedule, batch sizes, precision, checkpointing."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Optimizer(Enum):
    adamw = "adamw"
    adamw_8bit = "adamw_8bit"  # bitsandbytes, GPU only


class Scheduler(Enum):
    constant = "constant"
    cosine = "cosine"
    linear = "linear"


class Precision(Enum):
    no = "no"  # the model's own dtype (model.dtype)
    bf16 = "bf16"  # autocast through accelerate
    fp16 = "fp16"
    # bf16 where the hardware computes in it natively (a GPU with bf16, a CPU with bf16 kernels such as
    # AVX-512 BF16 or AMX), else no: on a CPU without them bf16 runs ~80x slower than float32
    auto = "auto"


class Strategy(Enum):
    ddp = "ddp"  # a full replica per process (accelerate; DDP with several processes)
    fsdp = "fsdp"  # FSDP2: weights, gradients and optimiser state sharded across processes


@dataclass
class TrainerConfig:
    optimizer: Optimizer = Optimizer.adamw
    lr: float = 1e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    lr_scheduler: Scheduler = Scheduler.constant
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    epochs: int = 1
    max_steps: int | None = None  # optimiser steps; overrides epochs when set
    per_device_batch_size: int = 4
    grad_accum_steps: int = 1
    # When set, grad_accum_steps is derived: global_batch_size / (per_device_batch_size x processes).
    global_batch_size: int | None = None
    max_prompt_tokens: int = 1024
    max_completion_tokens: int = 256
    # the rows of a micro-batch laid end to end in one sequence, without padding (sdpo/packing.py)
    packing: bool = True
    # micro-batches cut by tokens, not rows: this process's rows of a step sorted by length and
    # grouped under this many tokens per micro-batch (null: per_device_batch_size rows each)
    max_tokens_per_micro_batch: int | None = None
    precision: Precision = Precision.no
    strategy: Strategy = Strategy.ddp
    log_every: int = 1
    eval_every: int = 0  # optimiser steps; 0 disables periodic evaluation
    save_every: int = 0  # optimiser steps; 0 disables periodic checkpoints
    keep_last: int = 2
    save_final: bool = True
