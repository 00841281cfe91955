"""The simulated user and the judges of a run: one simulator and one judge per profile (of a
schedule, say), sharing one loaded model (or one API client) per role."""

from __future__ import annotations

from typing import Any

from sdpo_exp.users.backends import ChatModel, make_chat_model
from sdpo_exp.users.controls import POOLS
from sdpo_exp.users.judge import Judge, make_judge
from sdpo_exp.users.profiles import UserProfile
from sdpo_exp.users.simulator import Simulator, make_simulator


def _chat(cfg: Any, cache_dir: str, device: Any) -> ChatModel | None:
    backend = str(getattr(cfg.backend, "value", cfg.backend))
    model_free = backend == "rule_based" or backend in POOLS
    return None if model_free else make_chat_model(cfg, cache_dir, device)


class UserRoles:
    """`simulators` (when asked for) and `judges` (when asked for) for each of `profiles`."""

    def __init__(
        self,
        cfg: Any,
        profiles: list[UserProfile],
        device: Any = None,
        simulators: bool = True,
        judges: bool = True,
    ) -> None:
        cache = str(cfg.paths.cache_dir)
        self.counted_before: dict[str, float] = {}  # simulator counters restored from a checkpoint
        self.simulators: dict[str, Simulator] = {}
        if simulators:
            sim_chat = _chat(cfg.simulator, cache, device)
            self.simulators = {
                p.name: make_simulator(cfg.simulator, p, cache, device, sim_chat) for p in profiles
            }
        self.judges: dict[str, Judge] = {}
        if judges:  # only the process that evaluates needs them
            judge_chat = _chat(cfg.judge, cache, device)
            self.judges = {p.name: make_judge(cfg.judge, p, cache, device, judge_chat) for p in profiles}

    def simulator(self, profile: UserProfile) -> Simulator:
        return self.simulators[profile.name]

    @staticmethod
    def _merged(parts: list[Any]) -> dict[str, float]:
        out: dict[str, float] = {}  # integer counters stay integers
        seen: set[int] = set()
        for part in parts:
            source = getattr(part, "chat", part)  # a shared chat model counts once
            if id(source) in seen:
                continue
            seen.add(id(source))
            for key, value in part.metrics().items():
                out[key] = out.get(key, 0) + value
        return out

    def simulator_metrics(self) -> dict[str, float]:
        """The simulators' counters, plus those of the run's earlier attempts (`counted_before`)."""
        out = self._merged(list(self.simulators.values()))
        for key, value in self.counted_before.items():
            out[key] = out.get(key, 0) + value
        return out

    def judge_metrics(self) -> dict[str, float]:
        return self._merged(list(self.judges.values()))
