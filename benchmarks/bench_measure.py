"""Measuring for `benchmarks/step.py`: alternating timed runs with medians, peak memory from the kernel's
accounting, and what the machine was (CPU, memory, versions, load).

Peak memory of one run: the C allocator hands its free memory back to the kernel (glibc's
`malloc_trim`), the process's peak-RSS mark is reset (`echo 5 > /proc/self/clear_refs`), the run
executes, and VmHWM - VmRSS(before) is its peak resident memory above what the process held before
it. Without the trim, memory freed by the previous run (another method's) stays resident and would
hide part of this run's peak. torch's CPU allocations are invisible to tracemalloc, hence the
kernel's figures.
"""

from __future__ import annotations

import ctypes
import datetime
import gc
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) for k in ("VmRSS", "VmHWM")}


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to hand back
        pass


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_once(run: Callable[[], Any]) -> dict[str, float | None]:
    """Wall time, CPU time (user + system of the process) and peak memory (MiB, None where the
    kernel's figures are unavailable) of one call of `run`."""
    gc.collect()
    _trim()
    can_peak = _reset_peak()
    before = _status()["VmRSS"] if can_peak else 0
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = (_status()["VmHWM"] - before) / 1024 if can_peak else None
    return {"wall_s": wall, "cpu_s": cpu, "peak_mib": peak}


def alternate(
    methods: dict[str, Callable[[], Any]], repeats: int, warmup: bool = True
) -> dict[str, dict[str, Any]]:
    """Each method once as a warm-up (its return value is kept as `value`), then `repeats` rounds
    running the methods in turn; per method the medians (and every run) of wall time, CPU time and
    peak memory."""
    values = {name: run() for name, run in methods.items()} if warmup else {}
    runs: dict[str, list[dict[str, float | None]]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            runs[name].append(measure_once(run))
    return {name: {**summarise(found), "value": values.get(name)} for name, found in runs.items()}


def summarise(runs: list[dict[str, float | None]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": runs}
    for key in ("wall_s", "cpu_s", "peak_mib"):
        values = [r[key] for r in runs if r[key] is not None]
        summary[key] = statistics.median(values) if values else None
    summary["best_wall_s"] = min(r["wall_s"] for r in runs)
    return summary


def ratio(ours: float | None, naive: float | None) -> float | None:
    return None if ours is None or not naive else ours / naive


def machine(threads: int) -> dict[str, Any]:
    """CPU, memory, versions, date and load average, for the results' header and JSON."""
    import torch
    import transformers

    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        pass
    flags: set[str] = set()
    try:
        flags = set(re.search(r"flags\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1).split())
    except (OSError, AttributeError):
        pass
    try:
        mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024**2
    except (OSError, AttributeError):
        mem = float("nan")
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        # without these, bf16 matrix products are emulated on the CPU (many times slower than float32)
        "bf16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16"}),
        "memory_gib": round(mem, 1),
        "gpu": torch.cuda.is_available(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": threads,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
