"""The MLflow UI of a run's store, started as a server on 127.0.0.1 unless the user asks for another host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from amber_ray.errors import AmberInputError
from amber_ray.tracking import open_client


def serve_ui(store: Path, host: str = "127.0.0.1", port: int = 5000) -> subprocess.Popen:
    """Start ``mlflow ui`` for the SQLite ``store`` (artifacts are read from the paths it records).

    A port that is already taken is an input error (the server would fail after printing its address).
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            problem = f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port"
            raise AmberInputError(problem, "--port") from None
    open_client(f"sqlite:///{store.resolve()}")  # a copied store is pointed at its own artifacts first
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store.resolve()}"]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    return subprocess.Popen(command, env=env)
