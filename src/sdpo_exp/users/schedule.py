"""Which profile the simulated user holds after n interactions: one throughout, flipped to its
opposite (paper, Figure 5), or several in turn (Figure 6)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from sdpo_exp.errors import ConfigError
from sdpo_exp.users.profiles import UserProfile, load_profile, opposite_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileSchedule:
    segments: tuple[tuple[int, UserProfile], ...]  # (first interaction, profile), the first at 0

    def profile_at(self, interactions: int) -> UserProfile:
        """The profile in force for a batch that starts after `interactions` interactions."""
        current = self.segments[0][1]
        for start, profile in self.segments:
            if interactions >= start:
                current = profile
        return current

    @property
    def profiles(self) -> list[UserProfile]:
        seen: dict[str, UserProfile] = {}
        for _, profile in self.segments:
            seen.setdefault(profile.name, profile)
        return list(seen.values())

    @property
    def switch_points(self) -> list[int]:
        return [start for start, _ in self.segments[1:]]

    def start_of(self, profile: UserProfile) -> int:
        return next(start for start, p in self.segments if p.name == profile.name)

    def describe(self) -> str:
        return ", then ".join(f"{p.name} from {start}" for start, p in self.segments)


def _at_batch(start: int, batch_size: int) -> int:
    """Profiles change between batches: a switch takes effect with the first batch that starts at or
    after it."""
    aligned = math.ceil(start / batch_size) * batch_size
    if aligned != start:
        log.info(
            "The profile switch at %d interactions takes effect at %d (batches of %d)",
            start,
            aligned,
            batch_size,
        )
    return aligned


def make_schedule(task: Any, profile: UserProfile, batch_size: int = 1) -> ProfileSchedule:
    """The schedule `task.schedule` describes, starting with `profile`; switch points rounded up to
    whole batches of `batch_size` interactions."""
    kind = str(getattr(task.schedule, "value", task.schedule))
    if kind == "single":
        return ProfileSchedule(((0, profile),))
    if kind == "flip":
        after = int(task.flip_after)
        if not 0 < after < int(task.num_interactions):
            raise ConfigError(f"task.flip_after={after} must lie between 0 and task.num_interactions")
        return ProfileSchedule(((0, profile), (_at_batch(after, batch_size), opposite_of(profile))))
    if kind == "sequential":
        names = list(task.profiles) or [profile.name]
        every = int(task.switch_every)
        if every < 1:
            raise ConfigError("task.switch_every must be >= 1")
        if len(set(names)) != len(names):
            raise ConfigError(f"task.profiles lists a profile twice: {names}")
        profiles = [profile if n == profile.name else load_profile(n) for n in names]
        return ProfileSchedule(tuple((_at_batch(i * every, batch_size), p) for i, p in enumerate(profiles)))
    raise ConfigError(f"unknown task.schedule={kind!r}; valid choices: single, flip, sequential")
