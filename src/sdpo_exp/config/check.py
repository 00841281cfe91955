"""Compose the config before Hydra runs, and turn any composition error into one readable line.

Hydra reports a bad override as several lines plus a hint about HYDRA_FULL_ERROR; a misspelt key
should instead say which key, and what the valid keys or choices are.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from sdpo_exp.config.store import register_configs
from sdpo_exp.config.values import check_values
from sdpo_exp.errors import ConfigError


@contextmanager
def _hydra(config_dir: Path) -> Iterator[None]:
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            yield
    finally:
        GlobalHydra.instance().clear()


def compose_config(
    config_dir: Path, overrides: Sequence[str] = (), config_name: str = "config"
) -> DictConfig:
    """Compose the run config (without Hydra's own node); raise ConfigError with one line."""
    with _hydra(config_dir):
        return _compose(config_dir, list(overrides), config_name)


def _compose(config_dir: Path, overrides: list[str], config_name: str) -> DictConfig:
    try:
        return compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as exc:
        raise ConfigError(_missing_option(exc, config_dir)) from None
    except OverrideParseException as exc:
        raise ConfigError(f"cannot parse override: {_first_line(exc)}") from None
    except ConfigCompositionException as exc:
        raise ConfigError(_composition_error(exc, config_dir, overrides, config_name)) from None


def compose_option(config_dir: Path, group: str, option: str) -> DictConfig:
    """The node of `group=option` as Hydra composes it (its schema and defaults applied), for a part
    of a run that uses another option of a group (a control arm's simulator). Inside a running Hydra
    app its own global state is used; elsewhere it is set up for the call."""
    overrides = [f"{group}={option}"]
    if GlobalHydra.instance().is_initialized():
        cfg = _compose(config_dir, overrides, "config")
    else:
        cfg = compose_config(config_dir, overrides)
    return cfg[group]


def check_overrides(
    config_dir: Path, overrides: Sequence[str], config_name: str = "config"
) -> list[DictConfig]:
    """Validate command-line overrides, sweeps included (each swept value is tried once): names and
    types through the schemas, values through `values.check_values`. Returns the composed configs."""
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(list(overrides))
    except OverrideParseException as exc:
        raise ConfigError(f"cannot parse override: {_first_line(exc)}") from None
    base: list[str] = []
    variants: list[tuple[int, list[str]]] = []
    for override in parsed:
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                continue  # interval sweeps (Optuna) have no values to try
            values = list(override.sweep_string_iterator())
            key = override.get_key_element()
            variants.append((len(base), [f"{key}={v}" for v in values]))
            base.append(f"{key}={values[0]}")
        else:
            base.append(override.input_line or "")
    composed = []
    with _hydra(config_dir):
        composed.append(_compose(config_dir, base, config_name))
        for index, alternatives in variants:
            for alternative in alternatives[1:]:
                composed.append(
                    _compose(config_dir, base[:index] + [alternative] + base[index + 1 :], config_name)
                )
    for cfg in composed:
        check_values(cfg)
    return composed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def group_options(config_dir: Path, group: str) -> list[str]:
    folder = config_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _missing_option(exc: MissingConfigException, config_dir: Path) -> str:
    missing = exc.missing_cfg_file or ""
    if "/" in missing:
        group, option = missing.rsplit("/", 1)
        if group == "hydra/sweeper" and option == "optuna":
            return "hparams_search needs Hydra's Optuna sweeper, the optuna extra: pip install -e '.[optuna]'"
        options = list(exc.options or []) or group_options(config_dir, group)
        options = [o for o in options if not o.startswith("_")]
        hint = _suggest(option, options)
        return f"unknown {group} '{option}'{hint}; valid choices: {', '.join(sorted(options)) or '(none)'}"
    return _first_line(exc)


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _composition_error(
    exc: ConfigCompositionException, config_dir: Path, overrides: list[str], config_name: str
) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, MissingConfigException):
        return _missing_option(cause, config_dir)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
        resources = next((o.split("=", 1)[1] for o in overrides if o.startswith("resources=")), None)
        if resources and str(cause.full_key).startswith("hydra.launcher."):
            return (
                f"resources={resources} sets the request of a SLURM job: add hydra/launcher=slurm (or "
                "hydra/launcher=local for local processes) and run a multirun (-m)"
            )
        return _unknown_key(cause.full_key, config_dir, overrides, config_name)
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        return f"invalid value for '{cause.full_key}': {_first_line(cause)}"
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        return f"'{cause.full_key}': {_first_line(cause)}"
    return _first_line(exc)


def _unknown_key(full_key: str, config_dir: Path, overrides: list[str], config_name: str) -> str:
    parent, _, leaf = full_key.rpartition(".")
    # The valid keys are those of the node as composed without the offending override.
    clean = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != full_key]
    try:
        cfg = compose(config_name=config_name, overrides=clean)
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:  # the rest of the overrides may be broken too; report without choices
        node = None
    where = f"'{parent}'" if parent else "the top level"
    if not isinstance(node, DictConfig):
        return f"unknown key '{full_key}'"
    keys = sorted(str(k) for k in node.keys())
    prefix = f"{parent}." if parent else ""
    hint = _suggest(full_key, [prefix + k for k in keys])
    return f"unknown key '{full_key}'{hint}; valid keys in {where}: {', '.join(keys)}"
