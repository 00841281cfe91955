"""Which local files hold one split of a raw source (`dataset.local_path`).

`local_path` is a single data file, or a directory: files of your own or a downloaded copy of the
hub repository (a snapshot, main branch or the parquet export). In a directory the files of a split
are looked for in this order, and the first rule that finds any wins:

1. `dataset.hf_data_files` (a pattern with `{config}` and `{split}`, e.g. the parquet export's
   `{config}/{split}/*.parquet`);
2. the `configs:` list in the snapshot's README.md front matter: the files of the config named
   `dataset.hf_config` (or of the default config), for that split;
3. the usual names: `<split>.<ext>`, `<split>-*.<ext>`, `<split>/*`, `data/<split>-*`, and the same
   under `<config>/`;
4. for a source with one split only: the file named after the config (`wildfeedback.json`), or, with
   no config, the data files at the top of the directory.

Data files are parquet, JSON lines or JSON (an array of objects), the JSON ones optionally compressed
(`.gz`; `.zst` with the `zstandard` package). Anything else is not a data file.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from sdpo_exp.errors import DataError

log = logging.getLogger(__name__)

_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
_COMPRESSIONS = (".gz", ".zst")
_EXTENSIONS = ".parquet, .jsonl, .json (also .jsonl.gz, .json.gz, .jsonl.zst, .json.zst)"


def file_format(path: Path) -> str | None:
    """`parquet` or `json` for a data file, None for anything else (README.md, .gitattributes, ...)."""
    name = path.name.lower()
    compressed = name.endswith(_COMPRESSIONS)
    if compressed:
        name = name.rsplit(".", 1)[0]
    fmt = _FORMATS.get(Path(name).suffix)
    if fmt == "parquet" and compressed:
        return None  # parquet compresses inside the file; a compressed parquet file is not a layout we know
    return fmt


def builder_of(files: list[Path]) -> str:
    """The `datasets` builder that reads all of `files` (they must share one format)."""
    formats = {file_format(f) for f in files}
    if None in formats or len(formats) != 1:
        raise DataError(
            f"local raw files must all be parquet or all JSON ({_EXTENSIONS}): "
            f"{', '.join(str(f) for f in files[:5])}"
        )
    if any(f.name.lower().endswith(".zst") for f in files) and importlib.util.find_spec("zstandard") is None:
        raise DataError(
            f"{files[0]} is zstandard-compressed; reading it needs the zstandard package "
            f"(pip install zstandard), or decompress it first (zstd -d)"
        )
    return formats.pop()


def _data_files(paths: Any) -> list[Path]:
    return sorted({p for p in paths if p.is_file() and file_format(p) is not None})


def _glob(root: Path, patterns: list[str]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        found.extend(root.glob(pattern.lstrip("/")))
    return _data_files(found)


def readme_configs(root: Path) -> list[dict[str, Any]]:
    """The `configs:` list of a dataset card's YAML front matter (empty when there is none)."""
    import yaml

    readme = root / "README.md"
    if not readme.is_file():
        return []
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return []
    front, sep, _ = text[3:].partition("\n---")
    if not sep:
        return []
    try:
        card = yaml.safe_load(front) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{readme}: the YAML front matter cannot be read: {exc}") from exc
    configs = card.get("configs") if isinstance(card, dict) else None
    return [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []


def _pick_config(configs: list[dict[str, Any]], name: str | None, root: Path) -> dict[str, Any]:
    names = [str(c.get("config_name", "default")) for c in configs]
    if name is not None:
        if name in names:
            return configs[names.index(name)]
        raise DataError(
            f"dataset.local_path={root}: its README.md lists the configs {', '.join(names)}, not '{name}' "
            f"(dataset.hf_config)"
        )
    for config, config_name in zip(configs, names, strict=True):
        if config.get("default") is True or config_name == "default":
            return config
    if len(configs) == 1:
        return configs[0]
    raise DataError(
        f"dataset.local_path={root}: its README.md lists several configs ({', '.join(names)}); "
        f"choose one with dataset.hf_config"
    )


def _config_patterns(config: dict[str, Any]) -> dict[str, list[str]]:
    """A card config's `data_files` as split -> patterns (a bare string or list: the train split)."""
    spec = config.get("data_files")
    prefix = f"{config['data_dir'].strip('/')}/" if config.get("data_dir") else ""
    if spec is None:
        return {}
    if isinstance(spec, str):
        return {"train": [prefix + spec]}
    if isinstance(spec, dict):
        spec = [{"split": k, "path": v} for k, v in spec.items()]
    out: dict[str, list[str]] = {}
    for item in spec:
        if isinstance(item, str):
            out.setdefault("train", []).append(prefix + item)
        elif isinstance(item, dict) and "path" in item:
            paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
            out.setdefault(str(item.get("split", "train")), []).extend(prefix + str(p) for p in paths)
    return out


def _from_readme(root: Path, split: str, config_name: str | None, single_split: bool) -> list[Path]:
    configs = readme_configs(root)
    if not configs:
        return []
    config = _pick_config(configs, config_name, root)
    patterns = _config_patterns(config)
    chosen = config.get("config_name", "default")
    if split not in patterns:
        if single_split and len(patterns) == 1:
            split = next(iter(patterns))
        else:
            raise DataError(
                f"dataset.local_path={root}: README.md config '{chosen}' has the splits "
                f"{', '.join(patterns) or '(none)'}, not '{split}'"
            )
    files = _glob(root, patterns[split])
    if not files:
        raise DataError(
            f"dataset.local_path={root}: README.md config '{chosen}' names {', '.join(patterns[split])} "
            f"for split '{split}', but no such file is there (an incomplete download?)"
        )
    log.info("README.md config '%s', split '%s': %d file(s)", chosen, split, len(files))
    return files


def _usual_names(root: Path, split: str, config_name: str | None) -> list[Path]:
    bases = [""] + ([f"{config_name}/"] if config_name else [])
    patterns = []
    for base in bases:
        for name in (f"{split}.*", f"{split}-*", f"{split}_*", f"{split}/*", f"data/{split}.*",
                     f"data/{split}-*", f"data/{split}/*"):  # fmt: skip
            patterns.append(base + name)
    return _glob(root, patterns)


def _single_split_files(root: Path, config_name: str | None) -> list[Path]:
    top = _data_files(root.iterdir())
    if config_name:
        named = [p for p in top if p.name.lower().split(".", 1)[0] == config_name.lower()]
        if named or len(top) <= 1:
            return named or top
        raise DataError(
            f"dataset.local_path={root} holds several raw files and none is named after the config "
            f"'{config_name}': {', '.join(p.name for p in top[:10])}. Point dataset.local_path at the "
            f"right file, or set dataset.hf_config to the config those files belong to"
        )
    return top


def split_files(
    local_path: str | Path,
    split: str,
    single_split: bool,
    config_name: str | None = None,
    layout: str | None = None,
) -> list[Path]:
    """The data files of `split` under `local_path` (rules in the module docstring)."""
    root = Path(local_path).expanduser()
    if root.is_file():
        if not single_split:
            raise DataError(
                f"dataset.local_path={root} is a single file, but this source has several splits: "
                f"point it at a directory holding <split>.parquet / <split>.jsonl[.gz] files"
            )
        if file_format(root) is None:
            raise DataError(f"dataset.local_path={root} is not a raw data file ({_EXTENSIONS})")
        return [root]
    if not root.is_dir():
        raise DataError(f"dataset.local_path={root} does not exist")
    if layout:
        files = _glob(root, [layout.format(config=config_name or "default", split=split)])
        if files:
            return files
    files = _from_readme(root, split, config_name, single_split) or _usual_names(root, split, config_name)
    if not files and single_split:
        files = _single_split_files(root, config_name)
    if not files:
        present = _data_files(root.rglob("*"))
        listing = ", ".join(str(p.relative_to(root)) for p in present[:10]) or "no data file at all"
        raise DataError(
            f"no raw files for split '{split}' in {root} (expected {split}.parquet, {split}.jsonl[.gz], "
            f"{split}-*.parquet or data/{split}-*.parquet); found: {listing}"
        )
    return files
