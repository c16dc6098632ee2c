"""`amber-ray ui` serves the MLflow UI of a run on 127.0.0.1."""

import ipaddress
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from amber_ray.tracking import RunTracker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses of the TCP sockets in state LISTEN on ``port``, from /proc/net/tcp and tcp6
    (addresses there are hex words in host byte order)."""
    found = []
    for name in ("tcp", "tcp6"):
        table = Path("/proc/net") / name
        if not table.is_file():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:
                continue
            raw = b"".join(int(address[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(address), 8))
            found.append(ipaddress.ip_address(raw))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads the listening sockets from /proc/net/tcp (Linux)")
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
        addresses = listening_addresses(port)  # what the server bound: loopback only, not 0.0.0.0 or ::
        assert addresses and all(address.is_loopback for address in addresses), addresses
    finally:
        import os
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
