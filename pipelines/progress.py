"""Terminal progress for training (a rich progress bar fed by trainer callbacks)."""

from __future__ import annotations

import sys

from ganmodels.train import Callback


class ProgressBar(Callback):
    def __init__(self, total: int, description: str = "training"):
        self.total, self.description = total, description
        self._progress = None
        self._task = None

    def on_train_start(self, trainer):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(file=sys.stderr)
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[losses]}"), TimeRemainingColumn(), console=console,
                                  transient=False, disable=not console.is_terminal)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total, completed=trainer.step, losses="")

    def on_step_end(self, trainer, step, logs):
        if step % 10 == 0 or step == self.total:
            text = f"D {logs.get('d_loss', float('nan')):.3f}  G {logs.get('g_loss', float('nan')):.3f}"
            self._progress.update(self._task, completed=step, losses=text)

    def on_rollback(self, trainer, event):
        self._progress.console.print(f"[yellow]divergence at step {event.step}: {event.reason}; rolled back to "
                                     f"step {event.restored_step} with lr x{event.lr_scale:g}")

    def on_train_end(self, trainer, result):
        if self._progress is not None:
            self._progress.update(self._task, completed=result.steps)
            self._progress.stop()
