"""Registration of structured-config schemas with Hydra's ConfigStore."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

T = TypeVar("T")

SCHEMA_ROOT = "schema"
_registered: dict[tuple[str, str], type] = {}


def schema(group: str, name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: register a dataclass as the schema ``/schema/<group>/<name>``."""

    def wrap(cls: type[T]) -> type[T]:
        _registered[(group, name)] = cls
        return cls

    return wrap


def registered_schemas() -> dict[tuple[str, str], type]:
    return dict(_registered)


RESOURCES_DIR = Path(__file__).resolve().parents[1] / "resources"


def resource_path(relative: str) -> str:
    """`${resource:offline_demo/train.jsonl}`: a file shipped inside the package."""
    path = RESOURCES_DIR / relative
    if not path.exists():
        raise FileNotFoundError(f"no packaged resource '{relative}' (looked in {RESOURCES_DIR})")
    return str(path)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("resource"):
        OmegaConf.register_new_resolver("resource", resource_path)


def register_configs() -> None:
    """Import every schema module and store the schemas and the root config in the ConfigStore."""
    register_resolvers()
    from sdpo_exp.config import schemas

    for mod in pkgutil.iter_modules(schemas.__path__):
        importlib.import_module(f"{schemas.__name__}.{mod.name}")
    from sdpo_exp.config.schemas.root import RootConfig

    cs = ConfigStore.instance()
    cs.store(name="root_schema", node=RootConfig)
    for (group, name), cls in _registered.items():
        cs.store(group=f"{SCHEMA_ROOT}/{group}", name=name, node=cls)
