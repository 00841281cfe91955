"""`make bench`: a whole SDPO step, the teacher pass, the loss step against TRL, and how step time and
memory grow with context and completion length, each against the naive reference in the same run.

    .venv/bin/python benchmarks/step.py                 # every part; results into docs/
    .venv/bin/python benchmarks/step.py --tiny          # every part in seconds on tiny_random (a smoke test)
    .venv/bin/python benchmarks/step.py --part teacher  # one part (repeatable option)

Each part runs in a fresh worker process (its own model, allocator and peak-memory mark) with
`--threads` torch threads. Within a part the methods alternate after one warm-up run each; every
figure is the median of the repeats and every ratio is against the naive reference measured in the
same process. Results: the section between the `step-results` markers of `<out>/benchmarks.md`, the
JSON file `<out>/benchmarks_step.json` (machine, versions, date, load, every run) and the plot
`<out>/benchmarks_scaling.png`; `<out>` is docs/ (or outputs/bench-tiny/ with --tiny) unless
--out-dir says otherwise. Methods: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_measure import machine
from bench_report import longest_context, markdown, plot, write_json, write_markdown
from bench_setup import REPO, Sizes

SMOL = ("smollm2_135m", "bfloat16")
TINY_MODEL = ("tiny_random", "float32")
# Repeats sized for about 15 minutes on an idle 2-core machine with one torch thread (20 at most).
FULL: dict[str, dict[str, Any]] = {
    "step": {"sizes": Sizes(*SMOL, batch=4, context=1024, completion=256, repeats=3)},
    "teacher": {"sizes": Sizes(*SMOL, batch=4, context=1024, completion=256, repeats=3)},
    "trl": {"sizes": Sizes(*SMOL, batch=4, context=512, completion=256, repeats=2)},
    "scaling": {
        "sizes": Sizes(*SMOL, batch=1, context=256, completion=128, repeats=1),
        "contexts": [256, 512, 1024, 2048, 4096],
        "completions": [128, 256, 512, 1024, 2048],
    },
    # lengths of logged conversations (benchmarks/lengths.py): contexts up to 2,048 tokens,
    # completions up to the default trainer's 256, 8 rows in 2 micro-batches of 4
    "realistic": {"sizes": Sizes(*SMOL, batch=8, context=2048, completion=256, repeats=2), "per_device": 4},
}
TINY: dict[str, dict[str, Any]] = {
    "step": {"sizes": Sizes(*TINY_MODEL, batch=2, context=48, completion=16, repeats=1)},
    "teacher": {"sizes": Sizes(*TINY_MODEL, batch=2, context=48, completion=16, repeats=1)},
    "trl": {"sizes": Sizes(*TINY_MODEL, batch=2, context=48, completion=16, repeats=1)},
    "scaling": {
        "sizes": Sizes(*TINY_MODEL, batch=1, context=32, completion=8, repeats=1),
        "contexts": [32, 64],
        "completions": [8, 16],
    },
    "realistic": {
        "sizes": Sizes(*TINY_MODEL, batch=4, context=64, completion=16, repeats=1),
        "per_device": 2,
        "max_followup": 8,
        "scale": 1 / 16,
    },
}
BUDGET_MIB = {"full": 2048.0, "tiny": 64.0}  # the memory budget of the longest-context question


def _spec_json(spec: dict[str, Any]) -> str:
    return json.dumps({k: v.to_dict() if isinstance(v, Sizes) else v for k, v in spec.items()})


def run_worker(part: str, spec: dict[str, Any], threads: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",
    }
    args = ["--worker", part, "--spec", _spec_json(spec), "--threads", str(threads)]
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=REPO
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the {part} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(part: str, spec: dict[str, Any], threads: int) -> dict[str, Any]:
    import torch
    from bench_parts import PARTS

    torch.set_num_threads(threads)
    kwargs = dict(spec)
    sizes = Sizes(**kwargs.pop("sizes"))
    return PARTS[part](sizes, **kwargs)


def with_dtype(plan: dict[str, dict[str, Any]], dtype: str | None) -> dict[str, dict[str, Any]]:
    """The plan with every part's model weights in `dtype` (None: as planned)."""
    if dtype is None:
        return plan
    changed = {
        part: {**spec, "sizes": dataclasses.replace(spec["sizes"], dtype=dtype)}
        for part, spec in plan.items()
    }
    if dtype == "float32" and plan is FULL:
        # float32 doubles bf16's memory: with micro-batches of 4, the four models with their AdamW
        # states and the naive reference's full logits of 2,300-token rows passed 23.5 GiB
        changed["realistic"]["per_device"] = 2
    return changed


def run_all(parts: list[str], tiny: bool, threads: int, dtype: str | None = None) -> dict[str, Any]:
    plan = with_dtype(TINY if tiny else FULL, dtype)
    started = time.perf_counter()
    results: dict[str, Any] = {"tiny": tiny, "machine": machine(threads), "parts": {}}
    for part in parts:
        t0 = time.perf_counter()
        print(f"bench: {part} ...", file=sys.stderr, flush=True)
        results["parts"][part] = found = run_worker(part, plan[part], threads)
        found["part_elapsed_s"] = time.perf_counter() - t0
        print(f"bench: {part} done in {found['part_elapsed_s']:.0f} s", file=sys.stderr, flush=True)
    if "scaling" in results["parts"]:
        budget = BUDGET_MIB["tiny" if tiny else "full"]
        points = results["parts"]["scaling"]["points"]
        results["parts"]["scaling"]["budget"] = {
            "budget_mib": budget,
            **{method: longest_context(points, method, budget) for method in ("naive", "ours")},
        }
    results["elapsed_s"] = time.perf_counter() - started
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def merge_previous(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """With --part: the parts just measured replace those of the previous run in `path` (same mode);
    the others are kept, and the report says which parts were measured later and when."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return results
    if previous.get("tiny") != results["tiny"]:
        return results
    merged = {**previous, "parts": {**previous.get("parts", {}), **results["parts"]}}
    later = dict(previous.get("remeasured", {}))
    later.update({part: results["machine"]["date"] for part in results["parts"]})
    merged["remeasured"] = later
    machines = dict(previous.get("remeasured_machines", {}))
    machines.update({part: {**results["machine"], "load_average_end": results["load_average_end"]}
                     for part in results["parts"]})  # fmt: skip
    merged["remeasured_machines"] = machines
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=sorted(FULL), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument(
        "--part", choices=sorted(FULL), action="append", help="run only this part (repeatable)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny_random and tiny sizes: every part in seconds"
    )
    parser.add_argument(
        "--out-dir", type=Path, help="where results go (default docs/, or outputs/bench-tiny/)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per worker (default 1: steadier on a shared machine; docs/benchmarks.md)",
    )
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float32"],
        help="the model weights' dtype in every part (default: bfloat16; float32 where the CPU has no "
        "bf16 instructions and bf16 runs emulated, many times slower)",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, json.loads(args.spec), args.threads)))
        return
    parts = [p for p in FULL if p in (args.part or FULL)]
    out = args.out_dir or (REPO / ("outputs/bench-tiny" if args.tiny else "docs"))
    results = run_all(parts, args.tiny, args.threads, args.dtype)
    if args.part:
        results = merge_previous(out / "benchmarks_step.json", results)
    plot_name = None
    if "scaling" in results["parts"]:
        plot_name = "benchmarks_scaling.png"
        plot(out / plot_name, results["parts"]["scaling"])
    text = markdown(results, plot_name)
    write_markdown(out / "benchmarks.md", text)
    write_json(out / "benchmarks_step.json", results)
    print(text)


if __name__ == "__main__":
    main()
