"""One table for a sweep: every job's overrides, status, SLURM job id, restarts, final metrics and error.

Reads what the jobs leave in the sweep directory, so it works while jobs still run and after some
failed: each job's `run.json`, `summary.json` (and `benchmark_summary.json`, the job's benchmark
scores, once a `task=benchmark` run scored it) and `.hydra/overrides.yaml`, and, for jobs that never
wrote a `run.json` (pending, or dead before the task started), submitit's files in `.submitit/`.
Writes `sweep_summary.csv` (all metrics), `sweep_summary.md` (sorted by the optimised metric) and
`sweep_summary.png` (that metric against each swept parameter).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

CSV, MARKDOWN, PLOT = "sweep_summary.csv", "sweep_summary.md", "sweep_summary.png"
BENCHMARKS = "benchmark_summary.json"  # written into a job's directory by a task=benchmark run over the sweep
# Metrics for which a smaller value is better; any other metric is sorted largest first.
LOWER_IS_BETTER = ("*loss*", "*kl*", "*seconds*", "*adv_abs*", "*error*")


@dataclass
class JobRow:
    job: str  # the job's number in the sweep (its subdirectory)
    overrides: dict[str, str] = field(default_factory=dict)
    status: str = "pending"
    slurm_job: str = ""
    restarts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    run_dir: str = ""


def lower_is_better(metric: str, direction: str | None = None) -> bool:
    """`direction` (an Optuna search's minimize/maximize) decides; else the metric's name."""
    if direction in ("minimize", "maximize"):
        return direction == "minimize"
    return any(fnmatch.fnmatchcase(metric, p) for p in LOWER_IS_BETTER)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _as_dict(overrides: list[str]) -> dict[str, str]:
    out = {}
    for item in overrides:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _submitted_jobs(sweep_dir: Path) -> dict[str, tuple[str, list[str], Path]]:
    """job number -> (SLURM/local job id, overrides, submitit folder), from submitit's job pickles."""
    out: dict[str, tuple[str, list[str], Path]] = {}
    for pkl in sorted((sweep_dir / ".submitit").glob("*/*_submitted.pkl")):
        try:
            with open(pkl, "rb") as fh:
                delayed = pickle.load(fh)
            overrides, _, number = delayed.args[:3]
        except Exception as exc:  # another launcher's pickle, or one from other code: skip it
            log.debug("Cannot read %s: %s", pkl, exc)
            continue
        out[str(number)] = (pkl.parent.name, [str(o) for o in overrides], pkl.parent)
    return out


def _submitit_outcome(folder: Path) -> tuple[str, str]:
    """(status, error) of a job from submitit's result pickle and logs, for jobs without run.json."""
    results = sorted(folder.glob("*_result.pkl"))
    if results:
        try:
            with open(results[0], "rb") as fh:
                kind, value = pickle.load(fh)
        except Exception:
            kind, value = "error", ""
        if kind == "error":
            return "failed", _last_line(str(value))
        status = getattr(getattr(value, "status", None), "name", "COMPLETED")
        if status == "FAILED":
            return "failed", _last_line(repr(getattr(value, "_return_value", "")))
    err = sorted(folder.glob("*_log.err"))
    if err:
        return "started", _last_line(err[0].read_text(errors="replace"))
    return "pending", ""


def collect(sweep_dir: Path) -> list[JobRow]:
    """One row per job of the sweep, in job order."""
    sweep_dir = Path(sweep_dir)
    submitted = _submitted_jobs(sweep_dir)
    numbers = {p.name for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()}
    rows = []
    for number in sorted(
        numbers | set(submitted), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else n)
    ):
        row = JobRow(job=number)
        job_dir = sweep_dir / number
        if number in submitted:
            row.slurm_job, overrides, folder = submitted[number]
            row.overrides = _as_dict(overrides)
        if (job_dir / ".hydra" / "overrides.yaml").is_file():
            row.overrides = _as_dict(
                yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
            )
        record = _read_json(job_dir / "run.json")
        if record is not None:
            row.run_dir = str(job_dir)
            row.status = str(record.get("status", "?"))
            row.error = _last_line(str(record.get("error") or ""))
            row.restarts = int(record.get("restart_count") or 0)
            slurm = record.get("slurm") or {}
            if slurm.get("slurm_array_job_id"):
                row.slurm_job = f"{slurm['slurm_array_job_id']}_{slurm.get('slurm_array_task_id', '')}"
            elif slurm.get("slurm_job_id"):
                row.slurm_job = str(slurm["slurm_job_id"])
        elif number in submitted:
            row.status, row.error = _submitit_outcome(submitted[number][2])
        row.metrics = _read_json(job_dir / "summary.json") or {}
        row.metrics.update(_read_json(job_dir / BENCHMARKS) or {})  # task=benchmark's scores of this job
        rows.append(row)
    return rows


def _multirun(sweep_dir: Path | None) -> dict[str, Any]:
    """Hydra's node of the sweep: its `multirun.yaml` (the basic sweeper writes one), else a job's
    `.hydra/hydra.yaml` (the Optuna sweeper writes none); {} when there is neither."""
    if sweep_dir is None:
        return {}
    paths = [Path(sweep_dir) / "multirun.yaml", *sorted(Path(sweep_dir).glob("*/.hydra/hydra.yaml"))[:1]]
    for path in paths:
        if path.is_file():
            try:
                return (yaml.safe_load(path.read_text()) or {}).get("hydra") or {}
            except yaml.YAMLError:
                continue
    return {}


def swept_keys(rows: list[JobRow], hydra: dict[str, Any] | None = None) -> list[str]:
    """The overrides the multirun command swept (an Optuna search's parameters too; `hydra`: the
    sweep's Hydra node), then any other override that differs between jobs."""
    keys: list[str] = []
    if hydra:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        task = (hydra.get("overrides") or {}).get("task") or []
        try:
            parsed = OverridesParser.create().parse_overrides([str(t) for t in task])
            keys = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
        except Exception as exc:
            log.debug("Cannot parse the sweep's overrides: %s", exc)
        params = (hydra.get("sweeper") or {}).get("params") or {}
        keys += [str(k) for k in params if str(k) not in keys]
    every = sorted({k for r in rows for k in r.overrides})
    differing = [k for k in every if len({r.overrides.get(k) for r in rows}) > 1]
    return keys + [k for k in differing if k not in keys]


def optimized_metric(rows: list[JobRow]) -> str | None:
    for row in rows:
        if row.overrides.get("optimized_metric"):
            return row.overrides["optimized_metric"]
        config = Path(row.run_dir) / ".hydra" / "config.yaml" if row.run_dir else None
        if config is not None and config.is_file():
            value = (yaml.safe_load(config.read_text()) or {}).get("optimized_metric")
            if value:
                return str(value)
    return None


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN counts as missing


def sort_rows(rows: list[JobRow], metric: str | None, direction: str | None = None) -> list[JobRow]:
    """Best first by `metric` (jobs without it last, in job order)."""
    if not metric:
        return list(rows)
    sign = 1.0 if lower_is_better(metric, direction) else -1.0
    with_value = [r for r in rows if _number(r.metrics.get(metric)) is not None]
    without = [r for r in rows if _number(r.metrics.get(metric)) is None]
    return sorted(with_value, key=lambda r: sign * float(_number(r.metrics[metric]))) + without


def _format(value: Any) -> str:
    number = _number(value)
    if number is None or isinstance(value, bool) or str(value).lower() in ("true", "false", "nan", "inf"):
        return "" if value is None else str(value)
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e15 else f"{number:.4g}"


def write_csv(rows: list[JobRow], keys: list[str], path: Path) -> None:
    metric_names = sorted({m for r in rows for m in r.metrics})
    other = sorted({k for r in rows for k in r.overrides} - set(keys))
    header = [
        "job",
        "status",
        "slurm_job",
        "restarts",
        *keys,
        *metric_names,
        "error",
        "other_overrides",
        "run_dir",
    ]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in rows:
            rest = " ".join(f"{k}={r.overrides[k]}" for k in other if k in r.overrides)
            writer.writerow([r.job, r.status, r.slurm_job, r.restarts, *(r.overrides.get(k, "") for k in keys),
                             *(r.metrics.get(m, "") for m in metric_names), r.error, rest, r.run_dir])  # fmt: skip


def markdown(
    rows: list[JobRow], keys: list[str], metric: str | None, sweep_dir: Path, direction: str | None = None
) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
    ]
    if metric:
        order = "lower is better" if lower_is_better(metric, direction) else "higher is better"
        lines.append(f"Sorted by `{metric}` ({order}); jobs without it last.")
    lines += [
        "",
        "| "
        + " | ".join(
            ["job", *keys, *([metric] if metric else []), "status", "SLURM job", "restarts", "error"]
        )
        + " |",
    ]
    lines.append("|" + "---|" * (len(keys) + (6 if metric else 5)))
    for r in sort_rows(rows, metric, direction):
        cells = [r.job, *(_format(r.overrides.get(k, "")) for k in keys)]
        if metric:
            cells.append(_format(r.metrics.get(metric)))
        cells += [r.status, r.slurm_job, str(r.restarts), r.error.replace("|", "\\|")[:200]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[JobRow], keys: list[str], metric: str, path: Path, direction: str | None = None) -> bool:
    """`metric` against each swept parameter (one panel each); False when there is nothing to plot."""
    points = [(r, _number(r.metrics.get(metric))) for r in rows]
    points = [(r, v) for r, v in points if v is not None]
    if not points or not keys:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        raw = [r.overrides.get(key, "") for r, _ in points]
        values = [v for _, v in points]
        numeric = [_number(x) for x in raw]
        if all(x is not None for x in numeric):
            xs = [float(x) for x in numeric]  # type: ignore[arg-type]
            ax.scatter(xs, values, color="tab:blue", zorder=3)
            if min(xs) > 0 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
        else:
            labels = sorted(set(raw))
            ax.scatter([labels.index(x) for x in raw], values, color="tab:blue", zorder=3)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better), {len(points)} jobs"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def summarize(sweep_dir: Path, metric: str | None = None) -> list[JobRow]:
    """Write the sweep's summary files, sorted by `metric` (default: the sweep's optimised metric);
    return the rows (in job order)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory {sweep_dir}")
    rows = collect(sweep_dir)
    hydra = _multirun(sweep_dir)
    keys = swept_keys(rows, hydra)
    direction = (hydra.get("sweeper") or {}).get("direction") if metric is None else None
    metric = metric or optimized_metric(rows)
    direction = str(direction) if isinstance(direction, str) else None
    write_csv(rows, keys, sweep_dir / CSV)
    (sweep_dir / MARKDOWN).write_text(markdown(rows, keys, metric, sweep_dir, direction))
    plotted = bool(metric) and plot(rows, keys, str(metric), sweep_dir / PLOT, direction)
    failed = [r for r in rows if r.status == "failed"]
    log.info("Sweep summary: %d job(s) (%d failed) in %s%s", len(rows), len(failed), sweep_dir / MARKDOWN,
             f", plot {sweep_dir / PLOT}" if plotted else "")  # fmt: skip
    for r in failed:
        log.error("Job %s (%s) failed: %s", r.job, r.slurm_job or "no SLURM id", r.error or "see its run.log")
    return rows
