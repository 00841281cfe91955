"""Raw rows of a source: `datasets.load_dataset` from the Hub, or local parquet / JSON-lines files.

Both paths give a `datasets.Dataset`, so everything after loading is the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdpo_exp.errors import DataError

log = logging.getLogger(__name__)

_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}


def _format_of(files: list[Path]) -> str:
    formats = {_FORMATS.get(f.suffix.lower()) for f in files}
    if None in formats or len(formats) != 1:
        raise DataError(
            f"local raw files must all be parquet or all JSON lines (.parquet, .jsonl, .json): "
            f"{', '.join(str(f) for f in files[:5])}"
        )
    return formats.pop()


def local_files(local_path: str | Path, split: str, single_split: bool) -> list[Path]:
    """The files of `split` under `local_path` (a file, or a directory with per-split files)."""
    root = Path(local_path).expanduser()
    if root.is_file():
        if not single_split:
            raise DataError(
                f"dataset.local_path={root} is a single file, but this source has several splits: "
                f"point it at a directory holding <split>.parquet / <split>.jsonl files"
            )
        return [root]
    if not root.is_dir():
        raise DataError(f"dataset.local_path={root} does not exist")
    candidates: list[Path] = []
    for pattern in (f"{split}.parquet", f"{split}.jsonl", f"{split}.json", f"{split}-*.parquet",
                    f"{split}-*.jsonl", f"{split}/*.parquet", f"{split}/*.jsonl"):  # fmt: skip
        candidates.extend(sorted(root.glob(pattern)))
    if not candidates and single_split:
        candidates = sorted(p for p in root.iterdir() if p.suffix.lower() in _FORMATS)
    if not candidates:
        raise DataError(
            f"no raw files for split '{split}' in {root} (expected {split}.parquet or {split}.jsonl)"
        )
    return candidates


def load_split(
    hf_id: str,
    hf_config: str | None,
    split: str,
    revision: str | None = None,
    local_path: str | None = None,
    single_split: bool = True,
) -> Any:
    """One split as a `datasets.Dataset`."""
    import datasets

    if local_path:
        files = local_files(local_path, split, single_split)
        log.info("Reading %s split '%s' from %d local file(s): %s", hf_id, split, len(files), files[0])
        try:
            return datasets.load_dataset(_format_of(files), data_files=[str(f) for f in files], split="train")
        except Exception as exc:  # pyarrow / json errors carry the file name
            raise DataError(f"cannot read {files[0]} as raw {hf_id} rows: {exc}") from exc
    log.info("Loading %s (config %s, split %s, revision %s)", hf_id, hf_config, split, revision or "main")
    try:
        return datasets.load_dataset(hf_id, hf_config, split=split, revision=revision)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"could not load {hf_id} ({hf_config}, split {split}) from the Hugging Face Hub: {first}. "
            f"Download it where there is network access and set dataset.local_path to the parquet / "
            f"JSON-lines files."
        ) from exc


def source_rows(cfg: Any, split: str, splits: Sequence[str], shuffle_seed: int | None = None) -> Any:
    """One split of a raw source (a `RawSourceConfig`): loaded, shuffled when asked, cut to `cfg.max_rows`."""
    rows = load_split(cfg.hf_id, cfg.hf_config, split, cfg.revision, cfg.local_path, len(splits) == 1)
    if shuffle_seed is not None:
        rows = rows.shuffle(seed=shuffle_seed)
    if cfg.max_rows is not None:
        rows = rows.select(range(min(cfg.max_rows, len(rows))))
    return rows
