"""The pipeline's errors and exit codes, in one module every other pipelines module may import.

Exit codes (documented in the README):
  0  success (for ``run``: the model passed every gate and was registered)
  1  internal error (a bug or an environment problem; the message says which)
  2  bad input: unknown option or value, missing file, bad params.yaml field, unreadable data,
     a model/data mismatch, a gate on a metric the run does not produce
  3  data validation failed (Great Expectations report written; nothing trained)
  4  quality gate rejected the model (nothing registered)
  5  training diverged after the allowed rollbacks (nothing registered)
  6  the ONNX export does not reproduce PyTorch's output (nothing registered)
  7  the evaluation cannot be trusted: the domain classifier behind the offline metrics is too weak
     on this data (checked before training; raise eval.classifier_epochs or install FID weights)
  8  the MLflow tracking store or server cannot be reached, or stays locked, after
     tracking.connect_retries tries with backoff (checked before training; a trained checkpoint is kept)
  9  storage refused a write: disk or quota full, read-only or unwritable run directory (the previous
     checkpoint stays intact; nothing registered)
  10 a training process of a multi-process run (``--nproc N``) died or failed: torchrun stopped the
     others; nothing registered, the last checkpoint kept (``ganpipe run --resume RUN`` continues)
  130  stopped by SIGINT (Ctrl-C) / 143  stopped by SIGTERM: checkpoint written, MLflow run KILLED;
     continue it with the printed `ganpipe run --resume RUN`

This module imports nothing from the rest of ``pipelines``: cli, flow, stages, config and models
all import it, never each other in a cycle.
"""

from __future__ import annotations

import sys
import traceback
from typing import Callable

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_VALIDATION, EXIT_GATES, EXIT_DIVERGED, EXIT_EXPORT = 0, 1, 2, 3, 4, 5, 6
EXIT_EVALUATION = 7
EXIT_TRACKING, EXIT_STORAGE, EXIT_TRAINING_PROCESS = 8, 9, 10
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class ConfigError(ValueError):
    """Bad run configuration; the message names the file or field and the fix (exit code 2)."""


class UsageError(ValueError):
    """A command-line argument is wrong (exit code 2)."""


class DataValidationError(Exception):
    """The source data failed validation. ``report`` holds the details; the message says what and where."""

    def __init__(self, report) -> None:
        self.report = report
        super().__init__(report.format())


class EvaluationError(RuntimeError):
    """The evaluation itself cannot be trusted (e.g. a weak domain classifier); exit code 7."""


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store or server did not answer after the configured retries (exit code 8)."""


class TrainingProcessFailed(RuntimeError):
    """A process of a multi-process (torchrun) training run died or failed (exit code 10)."""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM stopped the run (exit 128 + signal number). A ``BaseException`` like
    ``KeyboardInterrupt``, so no ``except Exception`` on the way up mistakes a deliberate stop for a
    failure. ``hint`` says how to continue (the flow fills it in once it knows the run)."""

    def __init__(self, signum: int, hint: str = ""):
        import signal

        self.signum, self.exit_code, self.hint = signum, 128 + signum, hint
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class GateRejected(Exception):
    """The trained model failed a quality gate; nothing was registered (exit code 4)."""

    def __init__(self, summary: dict):
        super().__init__("; ".join(f"{k}: {v}" for k, v in summary.get("failed_gates", {}).items()))
        self.summary = summary


def exit_code_for(error: BaseException) -> int:
    from ganmodels.data import DataError
    from ganmodels.export import OnnxMismatchError
    from ganmodels.families import IncompatibleData
    from ganmodels.metrics import InceptionWeightsNotFound
    from ganmodels.train import ResumeError, TrainingDiverged

    if isinstance(error, DataValidationError):
        return EXIT_VALIDATION
    if isinstance(error, TrainingDiverged):
        return EXIT_DIVERGED
    if isinstance(error, OnnxMismatchError):
        return EXIT_EXPORT
    if isinstance(error, GateRejected):
        return EXIT_GATES
    if isinstance(error, EvaluationError):
        return EXIT_EVALUATION
    if isinstance(error, TrainingProcessFailed):
        return EXIT_TRAINING_PROCESS
    if isinstance(error, TrackingUnavailable) or _is_tracking_failure(error):
        return EXIT_TRACKING
    if _is_storage_failure(error):
        return EXIT_STORAGE
    if isinstance(error, (ConfigError, DataError, IncompatibleData, InceptionWeightsNotFound, FileNotFoundError,
                          UsageError, ResumeError)):
        return EXIT_BAD_INPUT
    return EXIT_INTERNAL


def _is_storage_failure(error: BaseException) -> bool:
    """A refused write. EACCES/EPERM count only when a writer said so (``StorageError``): a bare
    PermissionError may just as well be an unreadable input file."""
    import errno

    from ganmodels.io import StorageError

    return isinstance(error, StorageError) or (
        isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG))


def _is_tracking_failure(error: BaseException) -> bool:
    """MLflow's client failing to reach its store: a REST server that does not answer (MLflow raises
    ``MlflowException("API request to ... failed with exception ...")`` once its own retries are spent),
    or a SQLite store that stays locked or cannot be opened."""
    module = type(error).__module__ or ""
    if module.startswith("requests.") and type(error).__name__ in ("ConnectionError", "ConnectTimeout",
                                                                   "ReadTimeout", "Timeout"):
        return True
    if module.startswith("sqlalchemy.") and type(error).__name__ == "OperationalError":
        return "prefect" not in str(error).lower()
    if type(error).__name__ == "MlflowException":
        text = str(error)
        return text.startswith("API request to") or "database is locked" in text or "unable to open database" in text
    return False


def _unwrap(error: BaseException) -> BaseException:
    """Prefect may wrap a task's exception; the typed cause decides the exit code."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        if exit_code_for(error) != EXIT_INTERNAL:
            return error
        nxt = error.__cause__ or error.__context__
        if nxt is None:
            break
        error = nxt
    return error


LABELS = {EXIT_BAD_INPUT: "bad input", EXIT_VALIDATION: "data validation failed",
          EXIT_DIVERGED: "training diverged", EXIT_EXPORT: "ONNX export check failed",
          EXIT_EVALUATION: "evaluation cannot be trusted", EXIT_TRACKING: "tracking store unavailable",
          EXIT_STORAGE: "storage error", EXIT_TRAINING_PROCESS: "training process failed"}


def run_guarded(fn: Callable[[], object]) -> int:
    """Run ``fn``; map typed errors to exit codes with a one-paragraph message on stderr.

    Expected failures print no traceback; only an internal error (a bug) shows one.
    """
    try:
        fn()
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunInterrupted as stop:  # one line, no traceback: what stopped it and how to continue
        print(f"ganpipe: {stop}{'; ' + stop.hint if stop.hint else ''}", file=sys.stderr)
        return stop.exit_code
    except BaseException as error:  # noqa: BLE001 (the CLI boundary)
        cause = _unwrap(error)
        code = exit_code_for(cause)
        if code == EXIT_INTERNAL:
            traceback.print_exception(error, file=sys.stderr)
            print(f"\nganpipe: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        elif code == EXIT_VALIDATION:  # the report: one paragraph naming each failed check and sample ids
            print(f"ganpipe: {LABELS[code]}: {cause}", file=sys.stderr)
        elif code != EXIT_GATES:  # one line: a wrapped third-party message must not spill over several
            message = " ".join(line.strip() for line in str(cause).splitlines() if line.strip())
            print(f"ganpipe: {LABELS.get(code, 'error')}: {message}", file=sys.stderr)
        return code
