"""Stopping a run on purpose: SIGINT/SIGTERM, and the test hook that SIGKILLs the process at a named point.

SIGINT and SIGTERM do not stop the process wherever it happens to be. While the trainer runs, the
handler only notes the signal; the step in progress finishes, the trainer writes a checkpoint of
that complete state, and then ``RunInterrupted`` ends the run (the flow marks the MLflow run KILLED
and the CLI prints how to resume, exit 128 + signal number: 130 for SIGINT, 143 for SIGTERM, the
shell's convention). Outside training (validation, evaluation, export, registration) it raises at
once: those stages restart from their inputs on resume, and registration is idempotent. A second
signal while the first waits for the end of a step raises at once.

SIGKILL cannot be caught. ``kill_point(name)`` lets tests deliver it at a named moment:
``GANPIPE_TEST_KILL_AT=<point>:<n>`` kills the process the n-th time it passes ``<point>`` (several
comma-separated entries allowed). The points: ``prepare``, ``train.step``, ``train.checkpoint``,
``evaluate``, ``export``, ``register.model_logged``, ``register.version_created``,
``register.aliases_set``, ``finish``. Unset, it does nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from ganmodels.train import Callback
from pipelines.errors import RunInterrupted

__all__ = ["CheckpointOnSignal", "KILL_ENV", "RunInterrupted", "kill_point", "stop_on_signals", "training_window"]

KILL_ENV = "GANPIPE_TEST_KILL_AT"
_kill_counts: dict[str, int] = {}


class _SignalState:
    def __init__(self) -> None:
        self.deferring = False  # True while the trainer runs: the signal waits for the end of the step
        self.pending: int | None = None


_state = _SignalState()


def _handle(signum, frame) -> None:
    if _state.deferring and _state.pending is None:
        _state.pending = signum
        return
    raise RunInterrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT/SIGTERM raise ``RunInterrupted`` (deferred to the end of a training step) inside the block.

    Installed inside the flow, i.e. after Prefect's engine installed its own SIGTERM handler, so this
    one decides; the previous handlers come back on exit. Signals can only be handled in the main
    thread: elsewhere (a flow run in a worker thread) the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in (signal.SIGINT, signal.SIGTERM)}
    _state.deferring, _state.pending = False, None
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.deferring, _state.pending = False, None


class CheckpointOnSignal(Callback):
    """Defers SIGINT/SIGTERM while the trainer runs; at the end of the step, checkpoints and stops.

    Must be the last callback, so that every other callback has seen the step the checkpoint holds.
    """

    def on_train_start(self, trainer) -> None:
        _state.deferring = True

    def needs_live_state(self, trainer, step) -> bool:
        return _state.pending is not None

    def on_step_end(self, trainer, step, logs) -> None:
        kill_point("train.step")
        # Only at the step the trainer is at (the last of a batch of synced steps): the checkpoint
        # then holds the step every other callback has seen last.
        if _state.pending is not None and step == trainer.step:
            signum, _state.pending = _state.pending, None
            _state.deferring = False
            trainer.checkpoint()
            raise RunInterrupted(signum)

    def on_checkpoint(self, trainer, path) -> None:
        kill_point("train.checkpoint")

    def on_train_end(self, trainer, result) -> None:
        _state.deferring = False


@contextmanager
def training_window() -> Iterator[None]:
    """Whatever way training ends (an error included), signals are no longer deferred afterwards."""
    try:
        yield
    finally:
        _state.deferring, _state.pending = False, None


def kill_point(name: str) -> None:
    """SIGKILL this process here when ``GANPIPE_TEST_KILL_AT`` asks for it (tests only; see the module doc)."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    _kill_counts[name] = _kill_counts.get(name, 0) + 1
    for entry in spec.split(","):
        point, _, nth = entry.strip().rpartition(":")
        if point == name and nth.isdigit() and _kill_counts[name] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
