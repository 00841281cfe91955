"""Peak memory and time of one SDPO loss step (teacher pass + student pass + loss + backward):
the chunked implementation of `sdpo_exp.sdpo` against a naive reference that does what the
authors' offline trainer does (two full forward passes, full (B, S, V) logits, cross_entropy /
log_softmax over them in float32).

    .venv/bin/python benchmarks/loss_step_memory.py            # all configurations, prints a table
    .venv/bin/python benchmarks/loss_step_memory.py --write docs/benchmarks.md

Memory: every (configuration, loss, method) runs in a fresh subprocess. After one warm-up step the
gradients are freed, the kernel's peak-RSS mark is reset (`echo 5 > /proc/self/clear_refs`, Linux),
one step runs, and the figure is VmHWM - VmRSS (peak resident memory during the step, over what the
process held before it). Time: one subprocess per (configuration, loss) runs both methods
alternately, after a warm-up of each, and reports the median of the repeats.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CONFIGS = {
    # tiny random Qwen3 with Qwen3's vocabulary: the memory target (logits dominate everything)
    "qwen_vocab": {
        "model": "tiny_random",
        "updates": {"tiny.vocab_size": 151936, "dtype": "float32"},
        "batch": 1,
        "completion": 2048,
        "repeats": 2,
    },
    # the real small model in bf16: the time target
    "smollm2_bf16": {
        "model": "smollm2_135m",
        "updates": {"dtype": "bfloat16"},
        "batch": 4,
        "completion": 256,
        "repeats": 5,
    },
}
LOSSES = ("pg", "full_kl", "topk")
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"


# ---------------------------------------------------------------------------------------------
# worker side
def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) for k in ("VmRSS", "VmHWM")}


def _setup(config_name: str, loss: str):
    import torch
    from omegaconf import OmegaConf

    from sdpo_exp.config.schemas.loss import FullKLLossConfig, HindsightConfig, PGLossConfig, TopKLossConfig
    from sdpo_exp.config.schemas.model import ModelConfig
    from sdpo_exp.interaction import Interaction
    from sdpo_exp.models import load_model, load_tokenizer
    from sdpo_exp.sdpo.batching import BatchBuilder
    from sdpo_exp.sdpo.objective import SDPOObjective

    spec = CONFIGS[config_name]
    cache = os.environ.get("SDPO_CACHE_DIR", str(Path.home() / ".cache" / "sdpo-exp"))
    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(REPO / "conf/model" / f"{spec['model']}.yaml")
    )
    for key, value in spec["updates"].items():
        OmegaConf.update(cfg, key, value)
    tokenizer = load_tokenizer(cfg, cache)
    torch.manual_seed(0)
    model = load_model(cfg, cache, tokenizer)
    model.train()
    g = torch.Generator().manual_seed(1)
    vocab = min(model.config.vocab_size, len(tokenizer))
    interactions = []
    for b in range(spec["batch"]):
        context = [
            {"role": "user", "content": f"Question {b}: explain how tides work, with an example. " * 3},
        ]
        ids = torch.randint(100, vocab, (spec["completion"],), generator=g).tolist()
        interactions.append(
            Interaction(
                context,
                "",
                "Too long, and please use simpler words.",
                completion_ids=ids,
                completion_ended=False,
            )
        )
    builder = BatchBuilder(tokenizer, HindsightConfig(), cfg.chat_template_kwargs, 4096, spec["completion"])
    batch, skipped = builder.build(interactions)
    assert batch is not None and not skipped
    loss_cfg = {"pg": PGLossConfig(), "full_kl": FullKLLossConfig(), "topk": TopKLossConfig(k=50)}[loss]
    return model, batch, SDPOObjective(model, loss_cfg), loss_cfg


def naive_step(model, batch, loss: str) -> float:
    """The reference: full logits for both passes, float32 reductions over (B, S, V)."""
    import torch
    import torch.nn.functional as F

    def positions(logp_or_lp, prompt_lens):
        c = batch.completion_ids.shape[1]
        idx = prompt_lens[:, None] + torch.arange(c) - 1  # position predicting completion token j
        # padding positions of a row whose completion is shorter than the batch's: masked, kept in range
        idx = idx.clamp(max=logp_or_lp.shape[1] - 1)
        return logp_or_lp.gather(
            1, idx.view(*idx.shape, *([1] * (logp_or_lp.dim() - 2))).expand(-1, -1, *logp_or_lp.shape[2:])
        )

    def token_logprobs(logits, ids):
        v = logits.shape[-1]
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1), reduction="none")
        return -nll.view(ids.shape[0], -1)

    mask = batch.completion_mask.float()
    with torch.no_grad():
        t_logits = model(
            input_ids=batch.teacher_input_ids, attention_mask=batch.teacher_attention_mask
        ).logits.float()
        if loss == "pg":
            t = positions(token_logprobs(t_logits, batch.teacher_input_ids), batch.teacher_prompt_lens)
        else:
            t_logp = torch.log_softmax(t_logits, -1)
        del t_logits  # not a strawman: the teacher logits are dropped as soon as they are reduced
    s_logits = model(
        input_ids=batch.student_input_ids, attention_mask=batch.student_attention_mask
    ).logits.float()
    if loss == "pg":
        s = positions(token_logprobs(s_logits, batch.student_input_ids), batch.student_prompt_lens)
        adv = (t - s).detach()
        value = (-(adv * s * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    else:
        s_logp = torch.log_softmax(s_logits, -1)
        s_c = positions(s_logp, batch.student_prompt_lens)
        t_c = positions(t_logp, batch.teacher_prompt_lens)
        if loss == "topk":
            ids = s_c.detach().topk(50, dim=-1).indices
            s_k, t_k = s_c.gather(-1, ids), t_c.gather(-1, ids)
            s_tail = torch.log1p(-s_k.exp().sum(-1, keepdim=True).clamp(max=1 - 1e-6))
            t_tail = torch.log1p(-t_k.exp().sum(-1, keepdim=True).clamp(max=1 - 1e-6))
            s_c, t_c = torch.cat([s_k, s_tail], -1), torch.cat([t_k, t_tail], -1)
        kl = (s_c.exp() * (s_c - t_c)).sum(-1)
        value = (kl * mask).sum() / mask.sum()
    value.backward()
    return float(value.detach())


def ours_step(objective, batch) -> float:
    out = objective(batch)
    out.loss.backward()
    return float(out.loss.detach())


def _run(method: str, model, batch, objective, loss: str) -> float:
    return naive_step(model, batch, loss) if method == "naive" else ours_step(objective, batch)


def worker_memory(config: str, loss: str, method: str) -> dict:
    model, batch, objective, _ = _setup(config, loss)
    _run(method, model, batch, objective, loss)  # warm-up
    model.zero_grad(set_to_none=True)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status()["VmRSS"]
    t0 = time.perf_counter()
    value = _run(method, model, batch, objective, loss)
    elapsed = time.perf_counter() - t0
    peak = _status()["VmHWM"]
    return {"peak_mib": (peak - before) / 1024, "step_s": elapsed, "loss": value}


def worker_timing(config: str, loss: str) -> dict:
    """Wall and CPU (user + system) time of alternating steps; CPU time is the steadier figure on a
    machine shared with other jobs."""
    model, batch, objective, _ = _setup(config, loss)
    wall = {"naive": [], "ours": []}
    cpu = {"naive": [], "ours": []}
    values = {}
    for method in ("naive", "ours"):  # warm-up
        values[method] = _run(method, model, batch, objective, loss)
        model.zero_grad(set_to_none=True)
    for _ in range(CONFIGS[config]["repeats"]):
        for method in ("naive", "ours"):
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            _run(method, model, batch, objective, loss)
            cpu[method].append(time.process_time() - c0)
            wall[method].append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
    return {
        "naive_s": statistics.median(wall["naive"]),
        "ours_s": statistics.median(wall["ours"]),
        "naive_cpu_s": statistics.median(cpu["naive"]),
        "ours_cpu_s": statistics.median(cpu["ours"]),
        "naive_min_s": min(wall["naive"]),
        "ours_min_s": min(wall["ours"]),
        "naive_all": wall["naive"],
        "ours_all": wall["ours"],
        "loss_naive": values["naive"],
        "loss_ours": values["ours"],
    }


# ---------------------------------------------------------------------------------------------
# driver side
THREADS = 1


def _subprocess(args: list[str]) -> dict:
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(THREADS),
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        pass
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024**2
    import torch

    return (
        f"{os.cpu_count()} x {cpu}, {mem:.0f} GiB RAM, no GPU; Python {platform.python_version()}, "
        f"torch {torch.__version__}, {THREADS} torch thread(s) per worker"
    )


def run_all(configs: list[str], losses: list[str]) -> str:
    rows_mem, rows_time = [], []
    for config in configs:
        spec = CONFIGS[config]
        for loss in losses:
            naive = _subprocess(["--config", config, "--loss", loss, "--method", "naive"])
            ours = _subprocess(["--config", config, "--loss", loss, "--method", "ours"])
            timing = _subprocess(["--config", config, "--loss", loss, "--timing"])
            ratio = ours["peak_mib"] / naive["peak_mib"]
            slow = timing["ours_s"] / timing["naive_s"]
            slow_cpu = timing["ours_cpu_s"] / timing["naive_cpu_s"]
            slow_min = timing["ours_min_s"] / timing["naive_min_s"]
            print(
                f"{config} {loss}: memory {ours['peak_mib']:.0f} / {naive['peak_mib']:.0f} MiB = {ratio:.1%}; "
                f"time {timing['ours_s']:.2f} / {timing['naive_s']:.2f} s = {slow:.2f}x "
                f"(loss {timing['loss_ours']:.6g} vs {timing['loss_naive']:.6g})",
                file=sys.stderr,
            )
            shape = f"B={spec['batch']}, completion {spec['completion']}"
            rows_mem.append(
                f"| {config} | {shape} | {loss} | {naive['peak_mib']:.0f} | {ours['peak_mib']:.0f} | "
                f"{ratio:.1%} |"
            )
            rows_time.append(
                f"| {config} | {shape} | {loss} | {timing['naive_s']:.2f} | {timing['ours_s']:.2f} | {slow:.2f}x | "
                f"{timing['naive_cpu_s']:.2f} | {timing['ours_cpu_s']:.2f} | {slow_cpu:.2f}x | "
                f"{timing['naive_min_s']:.2f} | {timing['ours_min_s']:.2f} | {slow_min:.2f}x | "
                f"{timing['loss_naive']:.6g} / {timing['loss_ours']:.6g} |"
            )
    load = os.getloadavg()
    header = (
        f"Measured {datetime.date.today().isoformat()} on {_machine()}. "
        f"Load average when the run ended: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(other jobs shared the machine; times are medians of alternating repeats).\n"
    )
    return "\n".join(
        [
            header,
            "Peak memory of one step (MiB over the process's memory before the step):\n",
            "| configuration | batch | loss | naive | chunked | chunked / naive |",
            "|---|---|---|---|---|---|",
            *rows_mem,
            "",
            "Time of one step in seconds: median wall time, median CPU time of the process (user + system), "
            "and the fastest wall time of the repeats:\n",
            "| configuration | batch | loss | naive wall | chunked wall | ratio | naive CPU | chunked CPU | ratio "
            "| naive best | chunked best | ratio | loss value naive / chunked |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows_time,
        ]
    )


def write_results(path: Path, table: str) -> None:
    text = path.read_text()
    if MARK_START not in text or MARK_END not in text:
        raise SystemExit(f"{path} has no {MARK_START} ... {MARK_END} section to fill")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(f"{head}{MARK_START}\n{table}\n{MARK_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=("naive", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--loss", choices=LOSSES, action="append")
    parser.add_argument("--write", type=Path, help="fill the results section of this markdown file")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per worker (default 1: on a shared machine, OpenMP threads spinning at "
        "barriers while another job holds the other core make 2-thread timings erratic)",
    )
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        config, loss = args.config[0], args.loss[0]
        result = worker_timing(config, loss) if args.timing else worker_memory(config, loss, args.method)
        print(json.dumps(result))
        return
    table = run_all(args.config or list(CONFIGS), args.loss or list(LOSSES))
    print(table)
    if args.write:
        write_results(args.write, table)


if __name__ == "__main__":
    main()
