"""User profiles: the style a simulated user holds (`user_profile` group) and its opposite."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from sdpo_exp.config.paths import CONF_DIR
from sdpo_exp.config.schemas.user import UserProfileConfig
from sdpo_exp.errors import ConfigError

PROFILE_DIR = CONF_DIR / "user_profile"


@dataclass(frozen=True)
class UserProfile:
    name: str
    description: str  # the text after "USER PROFILE: "
    opposite: str | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> UserProfile:
        return cls(
            str(cfg.name), str(cfg.description), None if cfg.get("opposite") is None else str(cfg.opposite)
        )


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name: str) -> UserProfile:
    """The `user_profile` option `name` (for example a profile's opposite)."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown user profile '{name}'; valid choices: {', '.join(available_profiles())}")
    cfg = OmegaConf.merge(OmegaConf.structured(UserProfileConfig), OmegaConf.load(path))
    return UserProfile.from_config(cfg)


def opposite_of(profile: UserProfile) -> UserProfile:
    if not profile.opposite:
        raise ConfigError(
            f"user profile '{profile.name}' names no opposite (user_profile.opposite), so it cannot be flipped"
        )
    return load_profile(profile.opposite)
