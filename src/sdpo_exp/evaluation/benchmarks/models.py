"""The models a `task=benchmark` run scores, from `task.models` entries, resolved and checked before
any model loads: `base` (the `model` group), a Hugging Face model directory, a run directory (its
`final/`), a sweep directory (each job's `final/`) or `latest:<experiment_name>`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from sdpo_exp.errors import ConfigError

log = logging.getLogger(__name__)

BASE = "base"
LATEST = "latest:"


@dataclass(frozen=True)
class ModelEntry:
    label: str  # the column's name in the table
    path: Path | None  # a Hugging Face model directory; None: the `model` group itself
    run_dir: Path | None = None  # the run it came from (its benchmark_summary.json is written there)
    sweep_dir: Path | None = None  # the sweep that run belongs to


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _is_sweep_dir(path: Path) -> bool:
    return (path / "multirun.yaml").is_file() or any(
        (p / ".hydra").is_dir() for p in path.iterdir() if p.is_dir()
    )


def _job_label(job: Path) -> str:
    overrides_file = job / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    swept = _swept_keys(job.parent)
    shown = [str(o) for o in overrides or [] if str(o).split("=", 1)[0].lstrip("+~") in swept]
    return f"{job.parent.name}/{job.name}" + (f" ({' '.join(shown)})" if shown else "")


def _swept_keys(sweep: Path) -> set[str]:
    """The keys the multirun command swept (Hydra's own parser: a list value is not a sweep)."""
    multirun = sweep / "multirun.yaml"
    if not multirun.is_file():
        return set()
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra = (yaml.safe_load(multirun.read_text()) or {}).get("hydra") or {}
    task = (hydra.get("overrides") or {}).get("task") or []
    try:
        parsed = OverridesParser.create().parse_overrides([str(t) for t in task])
    except Exception as exc:
        log.debug("Cannot parse the sweep's overrides: %s", exc)
        return set()
    return {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}


def _sweep_jobs(sweep: Path) -> list[ModelEntry]:
    jobs = sorted(
        (p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir()),
        key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else p.name),
    )
    found, without = [], []
    for job in jobs:
        if _is_model_dir(job / "final"):
            found.append(ModelEntry(_job_label(job), job / "final", job, sweep))
        else:
            without.append(job.name)
    if without:
        log.warning("Sweep %s: job(s) %s have no final/ model (not finished, or failed): left out",
                    sweep, ", ".join(without))  # fmt: skip
    if not found:
        raise ConfigError(f"task.models: sweep directory {sweep} has no job with a final/ model yet")
    return found


def _latest(name: str, output_root: Path) -> ModelEntry:
    """The newest completed run of experiment `name` with a final/ model under `output_root`."""
    best: tuple[str, Path] | None = None
    for record in output_root.glob("**/run.json") if output_root.is_dir() else []:
        run = record.parent
        try:
            info = json.loads(record.read_text())
            config = yaml.safe_load((run / "config.yaml").read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if info.get("status") != "completed" or config.get("experiment_name") != name:
            continue
        if _is_model_dir(run / "final") and (best is None or str(info.get("end_time")) > best[0]):
            best = (str(info.get("end_time")), run)
    if best is None:
        raise ConfigError(
            f"task.models: no completed run of experiment {name} with a final/ model under {output_root}; "
            f"run `python run.py experiment={name}` first, or name a run directory"
        )
    return ModelEntry(f"{name} ({best[1].name})", best[1] / "final", best[1])


def resolve_models(entries: list[str], base_name: str, output_root: str | Path) -> list[ModelEntry]:
    """One ModelEntry per model, in order; ConfigError in one line for an entry that is none."""
    if not entries:
        raise ConfigError("task.models is empty: name at least one model (base, a model or run directory)")
    out: list[ModelEntry] = []
    for entry in map(str, entries):
        if entry == BASE:
            out.append(ModelEntry(f"base ({base_name})", None))
            continue
        if entry.startswith(LATEST):
            out.append(_latest(entry[len(LATEST) :], Path(output_root).expanduser()))
            continue
        path = Path(entry).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"task.models: {entry} does not exist (a model, run or sweep directory, or base)"
            )
        if _is_model_dir(path):
            run = path.parent if (path.parent / "run.json").is_file() else None
            out.append(ModelEntry(run.name if run and path.name == "final" else path.name, path, run))
        elif _is_model_dir(path / "final"):
            out.append(ModelEntry(path.name, path / "final", path))
        elif _is_sweep_dir(path):
            out.extend(_sweep_jobs(path))
        else:
            raise ConfigError(
                f"task.models: {entry} is neither a model directory (config.json), a run directory with "
                "final/, nor a sweep directory"
            )
    labels = [m.label for m in out]
    for i, label in enumerate(labels):  # two runs with one name: tell them apart in the table
        if labels.count(label) > 1:
            out[i] = ModelEntry(f"{label} [{i}]", out[i].path, out[i].run_dir, out[i].sweep_dir)
    return out
