"""The simulated user and the judges of a run: one simulator per profile of the schedule and one
judge per profile, sharing one loaded model (or one API client) per role."""

from __future__ import annotations

from typing import Any

from sdpo_exp.users.backends import ChatModel, make_chat_model
from sdpo_exp.users.judge import Judge, make_judge
from sdpo_exp.users.profiles import UserProfile
from sdpo_exp.users.schedule import ProfileSchedule
from sdpo_exp.users.simulator import Simulator, make_simulator


def _chat(cfg: Any, cache_dir: str, device: Any) -> ChatModel | None:
    backend = str(getattr(cfg.backend, "value", cfg.backend))
    return None if backend == "rule_based" else make_chat_model(cfg, cache_dir, device)


class UserRoles:
    def __init__(self, cfg: Any, schedule: ProfileSchedule, device: Any = None, judges: bool = True) -> None:
        cache = str(cfg.paths.cache_dir)
        sim_chat = _chat(cfg.simulator, cache, device)
        self.simulators: dict[str, Simulator] = {
            p.name: make_simulator(cfg.simulator, p, cache, device, sim_chat) for p in schedule.profiles
        }
        self.judges: dict[str, Judge] = {}
        if judges:  # only the process that evaluates needs them
            judge_chat = _chat(cfg.judge, cache, device)
            self.judges = {
                p.name: make_judge(cfg.judge, p, cache, device, judge_chat) for p in schedule.profiles
            }

    def simulator(self, profile: UserProfile) -> Simulator:
        return self.simulators[profile.name]

    @staticmethod
    def _merged(parts: list[Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        seen: set[int] = set()
        for part in parts:
            source = getattr(part, "chat", part)  # a shared chat model counts once
            if id(source) in seen:
                continue
            seen.add(id(source))
            for key, value in part.metrics().items():
                out[key] = out.get(key, 0.0) + value
        return out

    def simulator_metrics(self) -> dict[str, float]:
        return self._merged(list(self.simulators.values()))

    def judge_metrics(self) -> dict[str, float]:
        return self._merged(list(self.judges.values()))
