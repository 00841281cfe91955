"""Task functions used only by the tests of the task wrapper."""

from __future__ import annotations

import torch


def echo(cfg, ctx):
    for step in range(1, 4):
        ctx.log({"loss": 1.0 / step, "rand": torch.rand(()).item()}, step=step)
    return {"final_loss": 1.0 / 3, "seed": cfg.seed}


def boom(cfg, ctx):
    ctx.log({"loss": 0.5}, step=1)
    raise RuntimeError("intentional failure")
