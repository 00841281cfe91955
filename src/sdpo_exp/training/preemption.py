"""Checkpoint on preemption: SIGTERM (SLURM preemption, `scontrol requeue`) and SIGUSR2 (the
submitit launcher's time-limit signal) only set a flag; the training loop saves a checkpoint at the
next step boundary and raises `Preempted`. The task wrapper records the run as `requeued` or
`preempted` and then calls `Preempted.hand_over`: for SIGUSR2 under submitit, submitit's own handler
(kept from before) requeues the job and exits; otherwise the process exits with 128 + the signal.
Neither path returns normally, so a partial run is never recorded as finished."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from sdpo_exp.errors import SdpoError

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class Preempted(SdpoError):
    """Raised after the checkpoint was saved: the run did not finish and will (or can) resume."""

    def __init__(self, signum: int, requeue: Callable[[int, Any], Any] | None) -> None:
        name = signal.Signals(signum).name
        if requeue is not None:
            how = "the job is requeued and resumes from it"
        elif os.environ.get("SLURM_JOB_ID"):
            how = "a requeued job resumes from it (preemption); else restart in the same run directory"
        else:
            how = "restart in the same run directory to resume"
        super().__init__(f"stopped by {name} after saving a checkpoint; {how}")
        self.signum = signum
        self.requeue = requeue

    @property
    def status(self) -> str:
        """What run.json says: `requeued` (submitit requeues it now) or `preempted`."""
        return "requeued" if self.requeue is not None else "preempted"

    def hand_over(self) -> NoReturn:
        """Call submitit's requeue handler (it exits), or exit with 128 + the signal number."""
        if self.requeue is not None:
            log.info("Handing over to submitit, which requeues the job")
            self.requeue(self.signum, None)  # on rank 0: requeues and raises SystemExit
        raise SystemExit(128 + self.signum)


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
        if self.received is None:
            log.warning("Received %s: saving a checkpoint after this step", signal.Signals(signum).name)
        self.received = signum

    @property
    def triggered(self) -> bool:
        return self.received is not None

    def stop(self) -> NoReturn:
        """After the checkpoint: raise Preempted, carrying submitit's SIGUSR2 handler if there is one."""
        signum = self.received if self.received is not None else signal.SIGTERM
        previous = self._previous.get(signal.SIGUSR2) if signum == signal.SIGUSR2 else None
        self.__exit__()
        raise Preempted(signum, previous if callable(previous) and _is_submitit(previous) else None)


def _is_submitit(handler: Any) -> bool:
    owner = getattr(handler, "__self__", None)
    return type(owner).__module__.startswith("submitit")
