"""`python -m sdpo_exp.sweeps SWEEP_DIR [SWEEP_DIR...]`: write the summary of a sweep directory (also
while its jobs still run): sweep_summary.csv, sweep_summary.md and sweep_summary.png in it."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sdpo_exp.sweeps.summary import MARKDOWN, summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sdpo_exp.sweeps", description=__doc__.split(":", 1)[1].strip()
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="a multirun's directory (hydra.sweep.dir)")
    parser.add_argument("--metric", default=None,
                        help="sort by this metric (e.g. benchmark/ifeval after task=benchmark scored the jobs); "
                        "default: the sweep's optimized_metric")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    code = 0
    for sweep_dir in args.sweep_dirs:
        try:
            rows = summarize(sweep_dir, metric=args.metric)
        except FileNotFoundError as exc:
            sys.stderr.write(f"error: {exc}\n")
            code = 2
            continue
        if not rows:
            sys.stderr.write(f"error: {sweep_dir} has no jobs (no job directories, nothing in .submitit/)\n")
            code = 2
            continue
        sys.stdout.write((sweep_dir / MARKDOWN).read_text())
    return code


if __name__ == "__main__":
    sys.exit(main())
