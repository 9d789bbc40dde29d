"""``ganpipe ui``: MLflow's own UI server for this project's tracking store, on 127.0.0.1 only.

It is ``mlflow server`` with the store ``ganpipe run`` writes to (``pipelines.tracking.tracking_uri``),
started in the project directory and watched until it answers, so the address printed is one that
works; it runs until Ctrl-C, then stops the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipelines.errors import UsageError

HOST = "127.0.0.1"  # never another interface: the store holds the project's models
STARTUP_TIMEOUT_S = 180  # MLflow creates or migrates the SQLite schema first (seconds on a loaded box)


def server_command(uri: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", HOST,
            "--port", str(port), "--workers", str(workers)]


def port_is_free(port: int) -> bool:
    """Whether nothing listens on the port (connections of an earlier server closing down do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_until_up(process: subprocess.Popen, address: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Poll MLflow's ``/health`` until it answers 200; the server's own exit is an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {process.returncode} before it answered")
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer at {address} within {timeout:.0f} s")


def serve(params: str, *, port: int, workers: int) -> None:
    from rich.console import Console

    from pipelines.report import print_ui_links
    from pipelines.tracking import project_store

    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is 1-65535")
    if workers < 1:
        raise UsageError(f"--workers {workers}: at least 1")
    client, uri = project_store(params, Path.cwd())
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "mssql", "file:")):
        print(f"the tracking store is a server already: open {uri}")
        return
    if not port_is_free(port):
        raise UsageError(f"--port {port}: {HOST}:{port} is in use (another `ganpipe ui`?); pass another --port")
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    address = f"http://{HOST}:{port}"
    # Ctrl-C, or a SIGTERM from a supervisor, ends the wait below and the finally block stops the server,
    # which runs in its own session (its workers with it). SIGINT is set explicitly: a shell's background
    # job inherits it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    process = subprocess.Popen(server_command(uri, port, workers), cwd=Path.cwd(), start_new_session=True)
    try:
        wait_until_up(process, address)
        console = Console()
        console.print(f"MLflow UI for {uri} at {address} (Ctrl-C stops it)", soft_wrap=True, highlight=False)
        for experiment in experiments:
            print_ui_links(console, experiment.experiment_id, address=address, note=f"experiment {experiment.name}:")
        for model in sorted(m.name for m in client.search_registered_models()):
            print_ui_links(console, None, model_name=model, address=address, note=f"model {model}:")
        sys.stdout.flush()
        process.wait()
        if process.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
            raise RuntimeError(f"mlflow server stopped with code {process.returncode}")
    except KeyboardInterrupt:
        print("stopping the MLflow UI")
    finally:
        stop(process)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM to the server's process group (its workers too), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
