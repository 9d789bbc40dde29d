"""Process set-up done once by an entry point (CLI, stage runner, deployment): nothing happens on import."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "False",
}


def setup_environment(project_dir: str | os.PathLike | None = None) -> Path:
    """Telemetry off; project-local Prefect home (fast ephemeral server start, no writes to ~).

    Values already set in the environment win, so a user's PREFECT_HOME or PREFECT_API_URL
    (a real server) is respected.
    """
    root = Path(project_dir or os.getcwd()).resolve()
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    # The ephemeral API server is started per process; give it time on a loaded 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # An expected failure (bad data, a failed gate, divergence) prints one line and ganpipe's summary,
    # never a traceback (pipelines.errors.run_guarded); Prefect's console handler would first print the
    # failed task's traceback. The API handler still sends every record to the Prefect server and UI.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # MLflow draws a progress bar for every artifact it reads back (model loads, registry checks),
    # which buries ganpipe's own progress and summary on the terminal and in CI logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # A REST tracking server that goes away mid-run: MLflow's defaults (7 retries, backoff factor 2,
    # 120 s per request) retry for minutes before the run can fail with exit 8; a few seconds suffice
    # for a server restart. The check before training retries on its own (tracking.connect_retries).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # "Creating initial MLflow database tables..."
    # Idle OpenMP workers sleep instead of spinning. With the default (spinning) policy, two intra-op
    # threads on a 2-core machine with one core taken by another job trained many times slower than
    # one thread (benchmarks/cpu_threads.py, docs/performance.md). libgomp reads this once, when torch
    # (or scikit-learn) loads it: ``ganpipe`` calls this before importing either (a test checks it);
    # the stage runner (dvc repro) and a deployment's flow import torch first, so they inherit the
    # policy from their environment (prefect.yaml sets it for deployments).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    show_library_warnings()
    return root


class _LibraryWarnings(logging.Handler):
    """ganmodels' warnings on stderr, one line each (Prefect's console handler shows only CRITICAL)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("ganpipe: warning: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)  # the stderr of the moment (tests replace it)
        except Exception:
            self.handleError(record)


def show_library_warnings() -> None:
    """Show what the library warns about on the terminal: a setting that cannot take effect here
    (``train.compile`` without a compiler, ``train.cuda_graph`` without a GPU) and trains without it,
    an export that falls back. The records still propagate to Prefect's API handler (the UI)."""
    logger = logging.getLogger("ganmodels")
    if not any(isinstance(h, _LibraryWarnings) for h in logger.handlers):
        logger.addHandler(_LibraryWarnings())


def apply_threads(threads: int) -> None:
    """``run.threads``: torch's intra-op thread count for this process (0 = auto: torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
