"""IFEval's sentence splitter without a download: NLTK's English punkt_tab parameters written from the
registry package that ships them, found by every process, NLTK's downloader never called."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nltk")
pytest.importorskip("punkt")

# In a clean environment (no NLTK data anywhere, the downloader made to fail loudly): without
# ensure_punkt IFEval's module cannot find punkt_tab; with it, every sentence count is the English
# model's (abbreviations such as "Dr." and "p.m." do not end a sentence).
SCRIPT = """
import sys, nltk
def no_download(*args, **kwargs):
    raise SystemExit("nltk.download was called")
nltk.download = no_download
root = sys.argv[1]
if root != "-":
    from sdpo_exp.evaluation.benchmarks.punkt import ensure_punkt
    ensure_punkt(root)
try:
    nltk.data.find("tokenizers/punkt_tab/english/")
except LookupError:
    print("NOT FOUND")
    raise SystemExit(0)
from lm_eval.tasks.ifeval import instructions_util
print(instructions_util.count_sentences("Dr. Smith arrived at 5 p.m. today. He sat down. The U.S. team won."))
"""


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    env["HOME"] = str(tmp_path / "home")  # NLTK also looks in ~/nltk_data
    return env


def _run(tmp_path: Path, root: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, root], env=_clean_env(tmp_path), capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)  # fmt: skip


def test_ifeval_finds_the_english_model_without_a_download(tmp_path: Path):
    pytest.importorskip("lm_eval")
    without = _run(tmp_path, "-")
    assert without.returncode == 0, without.stderr[-2000:]
    assert without.stdout.strip().endswith("NOT FOUND")  # nothing else on this machine provides it
    proc = _run(tmp_path, str(tmp_path / "nltk_data"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "3"
    files = sorted(
        p.name for p in (tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english").iterdir()
    )
    assert files == ["abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt"]


def test_processes_writing_at_once_agree(tmp_path: Path):
    root = tmp_path / "shared"
    code = "import sys; from sdpo_exp.evaluation.benchmarks.punkt import ensure_punkt; print(ensure_punkt(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_clean_env(tmp_path)) for _ in range(3)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1000:] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    parent = root / "tokenizers" / "punkt_tab"
    assert [p.name for p in parent.iterdir()] == ["english"]  # no staging folder left behind


def test_parameters_round_trip_through_nltk(tmp_path: Path):
    """What NLTK reads back from the files equals what the package ships."""
    import nltk
    from nltk.tokenize.punkt import load_punkt_params
    from punkt.data import english

    from sdpo_exp.evaluation.benchmarks.punkt import ensure_punkt

    ensure_punkt(tmp_path / "nltk_data")
    params = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    assert params.abbrev_types == set(english.ABBREV_TYPES) and "dr" in params.abbrev_types
    assert params.collocations == set(english.COLLOCATIONS)
    assert params.sent_starters == set(english.SENT_STARTERS)
    assert dict(params.ortho_context) == dict(english.ORTHO_CONTEXT)
