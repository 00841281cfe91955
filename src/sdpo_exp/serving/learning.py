"""learn=online: SDPO updates between turns, in a background thread, on a copy of the served weights.

Interactions arrive in the order they are logged in interactions.jsonl (each with its line number).
Every `update_every` usable ones, the learner (the project's `training.Learner`: the same step as
`task=offline` and `task=online`) takes one optimiser step on exactly those, in that order, on its
own model; meanwhile requests are served by the previous weights. A copy of the updated model is
then swapped into the policy at once, and a checkpoint records the learner's state with the number
of interactions.jsonl lines consumed, so that a restarted server (resume=auto) continues with the
same weights, optimiser state and the lines not yet trained on.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from sdpo_exp.interaction import Interaction
from sdpo_exp.sdpo.hindsight import SkipInteraction
from sdpo_exp.serving.policy import ServedPolicy
from sdpo_exp.training.learner import Learner, split_micro_batches

log = logging.getLogger(__name__)


@dataclass
class LearnState:
    updates: int = 0
    lines_consumed: int = 0  # lines of interactions.jsonl before this one are trained on or unusable
    interactions_trained: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # unusable interactions by reason
    update_seconds: float = 0.0


class BackgroundLearner:
    def __init__(
        self,
        learner: Learner,
        policy: ServedPolicy,
        update_every: int,
        max_updates: int | None,
        save_every: int,
        on_metrics: Callable[[dict[str, float], int], None] = lambda metrics, step: None,
        state: LearnState | None = None,
    ) -> None:
        self.learner, self.policy = learner, policy
        self.update_every, self.max_updates, self.save_every = int(update_every), max_updates, int(save_every)
        self.on_metrics = on_metrics
        self.state = state or LearnState()
        self.error: str | None = None
        self._queue: list[tuple[int, Interaction]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="sdpo-learner", daemon=True)

    # -- feeding ------------------------------------------------------------------------------------
    def offer(self, line: int, interaction: Interaction) -> bool:
        """Queue a logged interaction (line number in interactions.jsonl); False if it is unusable."""
        try:
            self.learner.builder.encode_one(interaction)
        except SkipInteraction as exc:
            with self._cond:
                self.state.skipped[exc.reason] = self.state.skipped.get(exc.reason, 0) + 1
            log.warning("Interaction %s cannot be trained on (%s): left out", interaction.id, exc.reason)
            return False
        with self._cond:
            self._queue.append((line, interaction))
            self._cond.notify_all()
        return True

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Let a running update finish, then end the thread (queued interactions stay in the log)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Until no update is due or running (tests); False on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._busy or (
                len(self._queue) >= self.update_every and not self._done() and self.error is None
            ):
                if not self._cond.wait(max(end - time.monotonic(), 0)):
                    return False
        return True

    # -- the loop -----------------------------------------------------------------------------------
    def _done(self) -> bool:
        return self.max_updates is not None and self.state.updates >= int(self.max_updates)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (len(self._queue) < self.update_every or self._done()):
                    self._cond.wait()
                if self._stopping:
                    return
                batch, self._queue = self._queue[: self.update_every], self._queue[self.update_every :]
                self._busy = True
            try:
                self._update(batch)
            except Exception as exc:  # keep serving; say why learning stopped
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("The background update failed; serving goes on without learning")
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                return
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _update(self, batch: list[tuple[int, Interaction]]) -> None:
        t0 = time.perf_counter()
        items = [interaction for _, interaction in batch]
        per_device = self.learner.geometry.per_device
        micro = split_micro_batches(items, per_device, -(-len(items) // per_device))
        metrics = self.learner.step(micro, items[0])
        served = copy.deepcopy(self.learner.acc.unwrap_model(self.learner.model))
        served.requires_grad_(False)
        version = self.policy.swap(served)
        seconds = time.perf_counter() - t0
        with self._cond:
            self.state.updates += 1
            self.state.lines_consumed = batch[-1][0] + 1
            self.state.interactions_trained += len(items)
            self.state.update_seconds += seconds
        log.info("Update %d on %d interactions (lines %d-%d) in %.1f s: loss %.4g; now serving version %d",
                 self.state.updates, len(items), batch[0][0] + 1, batch[-1][0] + 1, seconds,
                 metrics.get("loss", float("nan")), version)  # fmt: skip
        if self.save_every > 0 and self.state.updates % self.save_every == 0:
            self.save()
        metrics.update(update_seconds=seconds, weights_version=float(version))
        self.on_metrics({f"train/{k}": v for k, v in metrics.items()}, self.state.updates)

    def save(self) -> None:
        self.learner.save(self.state.updates, {"serve": asdict(self.state)})
