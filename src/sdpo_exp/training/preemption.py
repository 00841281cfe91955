"""Checkpoint on preemption: SIGTERM (SLURM preemption, `scontrol requeue`) and SIGUSR2 (the
submitit launcher's time-limit signal) only set a flag; the training loop saves a checkpoint at the
next step boundary and then stops. For SIGUSR2 the previous handler (submitit's requeue) is called
from the loop, not from inside the signal handler."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from sdpo_exp.errors import SdpoError

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class Preempted(SdpoError):
    """Raised after the checkpoint was saved, so that the run exits non-zero (it did not finish)."""


class PreemptionWatcher:
    def __init__(self, enabled: bool) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self.enabled = enabled and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> PreemptionWatcher:
        if self.enabled:
            for sig in SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    @property
    def triggered(self) -> bool:
        return self.received is not None

    def hand_over(self) -> None:
        """After the checkpoint: call the previous SIGUSR2 handler (submitit requeues and exits), or
        raise Preempted."""
        signum = self.received
        previous = self._previous.get(signum) if signum is not None else None
        name = signal.Signals(signum).name if signum is not None else "?"
        if signum == signal.SIGUSR2 and callable(previous):
            log.info("Checkpoint written after %s; handing over to the previous handler", name)
            self.__exit__()
            previous(signum, None)
        raise Preempted(
            f"stopped by {name} after saving a checkpoint; restart in the same run directory to resume"
        )
