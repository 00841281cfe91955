"""Hydra's ConfigStore filled with every schema, and the `${resource:...}` resolver."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from sdpo_exp.config import schemas
from sdpo_exp.config.paths import REPO_ROOT
from sdpo_exp.config.registry import SCHEMA_ROOT, registered_schemas
from sdpo_exp.config.schemas.root import RootConfig

RESOURCES_DIR = Path(__file__).resolve().parents[1] / "resources"


def resource_path(relative: str) -> str:
    """`${resource:offline_demo/train.jsonl}`: a file shipped inside the package."""
    path = RESOURCES_DIR / relative
    if not path.exists():
        raise FileNotFoundError(f"no packaged resource '{relative}' (looked in {RESOURCES_DIR})")
    return str(path)


def project_path(path: str) -> str:
    """`${project_path:data}`: a path as given when absolute, else relative to the project root (so
    that `task=prepare` and the runs that read its output agree from any working directory)."""
    candidate = Path(str(path)).expanduser()
    return str(candidate if candidate.is_absolute() else (REPO_ROOT / candidate).resolve())


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("resource"):
        OmegaConf.register_new_resolver("resource", resource_path)
    if not OmegaConf.has_resolver("project_path"):
        OmegaConf.register_new_resolver("project_path", project_path)


def register_configs() -> None:
    """Import every schema module and store the schemas and the root config in the ConfigStore."""
    register_resolvers()
    for mod in pkgutil.iter_modules(schemas.__path__):
        importlib.import_module(f"{schemas.__name__}.{mod.name}")
    cs = ConfigStore.instance()
    cs.store(name="root_schema", node=RootConfig)
    for (group, name), cls in registered_schemas().items():
        cs.store(group=f"{SCHEMA_ROOT}/{group}", name=name, node=cls)
