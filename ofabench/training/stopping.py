"""A polite stop for long training runs.

While :meth:`StopSignal.installed` is active, the first SIGTERM or SIGINT only *asks* the trainer
to stop: it finishes the step it is in, saves its state (as a mid-epoch checkpoint does) and
raises :class:`TrainingStopped`, so a killed run loses one step instead of up to
``checkpoint_minutes``. A second signal interrupts at once (``KeyboardInterrupt``), for a user who
really means it. ``ofabench train`` installs it; ``ofabench study`` forwards its own SIGTERM to its
training processes, which then stop this way.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

log = logging.getLogger("ofabench")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(Exception):
    """The trainer saved its state and stopped because a stop was asked for."""

    def __init__(self, stage: str, epoch: int, step: int, state: Path, reason: str) -> None:
        self.stage, self.epoch, self.step, self.state, self.reason = (
            stage,
            epoch,
            step,
            state,
            reason,
        )
        super().__init__(
            f"stopped by {reason} after step {step} of epoch {epoch} of stage {stage}; state saved "
            f"in {state}; the same command with --resume continues from there"
        )


class StopSignal:
    """Whether a stop was asked for (call it); :meth:`installed` routes the signals to it."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self) -> bool:
        return self.reason is not None

    def request(self, reason: str) -> None:
        self.reason = reason

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.reason is not None:
            raise KeyboardInterrupt
        self.request(name)
        log.warning(
            "%s: finishing this step, saving the state and stopping (send it again to stop at "
            "once, losing the steps since the last checkpoint)",
            name,
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignal]:
        """SIGTERM and SIGINT ask for a stop while the block runs (previous handlers restored).
        A signal the process was started ignoring stays ignored (a background job's SIGINT)."""
        previous = {
            s: signal.signal(s, self._handle)
            for s in STOP_SIGNALS
            if signal.getsignal(s) is not signal.SIG_IGN
        }
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
