"""`amber-ray ui` serves the MLflow UI of a run on 127.0.0.1."""

import socket
import subprocess
import sys
import time
import urllib.request

from amber_ray.tracking import RunTracker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_serves_the_runs_on_loopback(tmp_path):
    tracker = RunTracker.start(tmp_path, "ui-test", "search", {"command": "search"})
    tracker.log_metrics({"mean_reward": 0.7}, step=0)
    tracker.finish()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "amber_ray.cli", "ui", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                    data=b'{"max_results": 10}',
                    headers={"Content-Type": "application/json"},
                )
                body = urllib.request.urlopen(request, timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None and "ui-test" in body
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert "<html" in page.lower()
        with socket.socket() as sock:  # bound to loopback only
            assert sock.connect_ex((socket.gethostbyname(socket.gethostname()), port)) != 0 or socket.gethostbyname(socket.gethostname()).startswith("127.")
    finally:
        import os
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
