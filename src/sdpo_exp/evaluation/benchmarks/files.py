"""Where a benchmark's data come from: the hub (`benchmark.data_dir=null`) or local files
`<data_dir>/<folder>/<stem>.{jsonl,json,parquet}`, checked before any model loads."""

from __future__ import annotations

from pathlib import Path

from sdpo_exp.errors import ConfigError
from sdpo_exp.evaluation.benchmarks.registry import Benchmark

EXTENSIONS = (".jsonl", ".json", ".parquet")
# The project's demo files, in each benchmark's format with items written for the project.
DEMO_DIR = Path(__file__).resolve().parents[2] / "resources" / "benchmarks_demo"


def is_demo_data(data_dir: str | Path | None) -> bool:
    """Whether `data_dir` is the shipped demo folder (its scores say nothing about the benchmarks)."""
    return data_dir is not None and Path(data_dir).expanduser().resolve() == DEMO_DIR


def builder(path: Path) -> str:
    """The `datasets` builder that reads `path` (`json` reads JSON lines too)."""
    return "parquet" if path.suffix == ".parquet" else "json"


def find_file(data_dir: str | Path, bench: Benchmark, split: str) -> Path | None:
    folder = Path(data_dir).expanduser() / bench.data_folder
    stem = bench.files[split]
    for ext in EXTENSIONS:
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def local_files(data_dir: str | Path, bench: Benchmark) -> dict[str, Path]:
    """split -> file of `bench` under `data_dir`; ConfigError in one line when one is missing."""
    found, missing = {}, []
    for split, stem in bench.files.items():
        path = find_file(data_dir, bench, split)
        if path is None:
            missing.append(f"{Path(data_dir).expanduser() / bench.data_folder / stem}.{{jsonl,json,parquet}}")
        else:
            found[split] = path
    if missing:
        raise ConfigError(
            f"benchmark {bench.name}: no file {' nor '.join(missing)}; get it on a machine with network "
            f"access with `python -m sdpo_exp.evaluation.benchmarks.download {bench.name} --data-dir "
            f"{data_dir}` (from {bench.hub}), or set benchmark.data_dir=null to read the hub"
        )
    return found


def check_data(data_dir: str | Path | None, benches: list[Benchmark]) -> None:
    """Every local file there (nothing to check for the hub); raises on the first missing one."""
    if data_dir is None:
        return
    if not Path(data_dir).expanduser().is_dir():
        raise ConfigError(
            f"benchmark.data_dir={data_dir}: no such directory; download the benchmarks into it "
            "(python -m sdpo_exp.evaluation.benchmarks.download --help) or set benchmark.data_dir=null"
        )
    for bench in benches:
        local_files(data_dir, bench)


def check_hub(benches: list[Benchmark]) -> None:
    """Each harness benchmark's dataset is readable from the hub (or the hub cache), before any model
    loads; ConfigError in one line naming the way to a local copy otherwise."""
    from datasets import load_dataset_builder

    for bench in benches:
        try:
            load_dataset_builder(bench.hub_id, bench.hub_config)
        except Exception as exc:  # offline, gated, renamed
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"benchmark {bench.name}: cannot read {bench.hub} from the hub ({first[:160]}); on a machine "
                f"with network access run `python -m sdpo_exp.evaluation.benchmarks.download {bench.name} "
                "--data-dir DIR` and set benchmark.data_dir=DIR"
            ) from None
