"""Raw rows of a source: `datasets.load_dataset` from the Hub, or local files (`dataset.local_path`).

Both paths give a `datasets.Dataset`, so everything after loading is the same code. Which local
files hold a split is decided in :mod:`sdpo_exp.data.raw_files`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sdpo_exp.data.raw_files import builder_of, split_files
from sdpo_exp.errors import DataError

log = logging.getLogger(__name__)


def hub_arguments(cfg: Any, split: str) -> dict[str, Any]:
    """The keyword arguments of `datasets.load_dataset` for one split of a source on the Hub.

    With `hf_data_files` (a pattern with `{config}` and `{split}`) the split's files are named
    explicitly and no builder config is asked for: the Hub's parquet export has no dataset card, so
    `datasets` finds no named config there, only `default`.
    """
    if cfg.hf_data_files:
        pattern = cfg.hf_data_files.format(config=cfg.hf_config or "default", split=split)
        return {"path": cfg.hf_id, "data_files": {split: pattern}, "split": split, "revision": cfg.revision}
    return {"path": cfg.hf_id, "name": cfg.hf_config, "split": split, "revision": cfg.revision}


def load_split(cfg: Any, split: str, single_split: bool = True) -> Any:
    """One split of a raw source (a `RawSourceConfig`) as a `datasets.Dataset`."""
    import datasets

    if cfg.local_path:
        files = split_files(cfg.local_path, split, single_split, cfg.hf_config, cfg.hf_data_files)
        shown = ", ".join(str(f) for f in files[:3]) + (
            f" and {len(files) - 3} more" if len(files) > 3 else ""
        )
        log.info("Reading %s split '%s' from %d local file(s): %s", cfg.hf_id, split, len(files), shown)
        builder = builder_of(files)
        try:
            return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
        except Exception as exc:  # pyarrow / json errors carry the file name
            raise DataError(f"cannot read {files[0]} as raw {cfg.hf_id} rows: {exc}") from exc
    arguments = hub_arguments(cfg, split)
    log.info("Loading from the Hugging Face Hub: %s", arguments)
    try:
        return datasets.load_dataset(**arguments)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"could not load {cfg.hf_id} ({cfg.hf_config}, split {split}) from the Hugging Face Hub: {first}. "
            f"Download it where there is network access and set dataset.local_path to the downloaded "
            f"directory or files."
        ) from exc


def source_rows(cfg: Any, split: str, splits: Sequence[str], shuffle_seed: int | None = None) -> Any:
    """One split of a raw source: loaded, shuffled when asked, cut to `cfg.max_rows`."""
    rows = load_split(cfg, split, len(splits) == 1)
    if shuffle_seed is not None:
        rows = rows.shuffle(seed=shuffle_seed)
    if cfg.max_rows is not None:
        rows = rows.select(range(min(cfg.max_rows, len(rows))))
    return rows
