"""The `@schema(group, name)` decorator: schema modules declare which config option they type.

`sdpo_exp.config.store` puts the declared schemas into Hydra's ConfigStore."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

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
