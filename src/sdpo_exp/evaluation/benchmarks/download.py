"""`python -m sdpo_exp.evaluation.benchmarks.download [NAME ...] --data-dir DIR`: the benchmarks' data
from the Hugging Face hub into the layout `benchmark.data_dir` reads
(`DIR/<benchmark>/<split>.jsonl`, the judged benchmarks' files as published), on a machine with a
network, for compute nodes without one. Files already there are kept (`--force` replaces them)."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from sdpo_exp.evaluation.benchmarks.files import find_file
from sdpo_exp.evaluation.benchmarks.registry import BENCHMARKS, HARNESS, Benchmark, get_benchmark

log = logging.getLogger(__name__)


def download(bench: Benchmark, data_dir: Path, force: bool = False) -> list[Path]:
    """The benchmark's files under `data_dir`; returns their paths."""
    folder = data_dir / bench.data_folder
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for split, stem in bench.files.items():
        found = find_file(data_dir, bench, split)
        if found is not None and not force:
            log.info("%s: %s is there already", bench.name, found)
            written.append(found)
            continue
        if bench.kind == HARNESS:
            from datasets import load_dataset

            dataset = load_dataset(bench.hub_id, bench.hub_config, split=split)
            target = folder / f"{stem}.jsonl"
            dataset.to_json(str(target), lines=True, force_ascii=False)
        else:
            from huggingface_hub import hf_hub_download

            source = Path(hf_hub_download(bench.hub_id, str(bench.hub_file), repo_type="dataset"))
            target = folder / f"{stem}{''.join(source.suffixes[-1:])}"
            shutil.copyfile(source, target)
        log.info("%s: %s -> %s", bench.name, bench.hub, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdpo_exp.evaluation.benchmarks.download",
                                     description=__doc__.split(":", 1)[1].strip())  # fmt: skip
    parser.add_argument("names", nargs="*", help=f"benchmarks (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--data-dir", required=True, type=Path, help="where benchmark.data_dir will point")
    parser.add_argument("--force", action="store_true", help="download again files that are there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        benches = [get_benchmark(n) for n in args.names] if args.names else list(BENCHMARKS.values())
    except Exception as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for bench in benches:
        try:
            download(bench, args.data_dir.expanduser(), args.force)
        except Exception as exc:  # offline, a gated dataset, a renamed file: say which and go on
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            sys.stderr.write(f"error: {bench.name} ({bench.hub}): {first[:300]}\n")
            return 1
    sys.stdout.write(f"benchmark.data_dir={args.data_dir}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
