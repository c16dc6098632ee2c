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


def test_ui_opens_on_searched_vs_sampled_with_test_auroc_in_chromium(tmp_path):
    """The page `ui` prints, rendered by headless Chromium: trials grouped by role, averaged test AUROC."""
    import os
    import re
    import shutil
    import signal

    from amber_ray.tracking import RunTracker

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    parent = RunTracker.start(tmp_path, "ui-compare", "retrain", {"command": "retrain"})
    trials = [
        ("searched", "conv8,skip:;dconv4,skip:0", 0.91),
        ("searched", "conv8,skip:;dconv4,skip:0", 0.93),
        ("sampled", "maxpool,skip:;identity,skip:", 0.80),
        ("sampled", "avgpool,skip:;conv4,skip:", 0.70),
    ]
    for i, (role, arch, auroc) in enumerate(trials):
        run = RunTracker.start(
            tmp_path, "ui-compare", f"{role}-{i}", {"role": role, "arch": arch, "replicate": "0"}, parent=parent
        )
        run.log_metrics({"test_auroc": auroc, "test_aupr": auroc - 0.1, "num_params": 1000 + i})
        run.finish()
    parent.finish()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "amber_ray.cli", "ui", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = None
        while url is None:
            line = server.stdout.readline()
            assert line, "ui exited without printing its address"
            url = next(iter(re.findall(r"http://\S+", line)), None)
        assert "viewStateShareKey=" in url and "workflowType=machine_learning" in url
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1600,1000",
            "--virtual-time-budget=20000",
        ]
        dom = subprocess.run([*command, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        subprocess.run([*command, f"--screenshot={tmp_path / 'ui.png'}", url], capture_output=True, timeout=120)
        text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
        assert "Group: searched" in text and "Group: sampled" in text, text[:2000]
        assert "test_auroc" in text and "0.92" in text and "0.75" in text  # the averages per role
        assert "Model registry" in text and "Overview" not in text  # opened as model training, not on the GenAI overview
        assert (tmp_path / "ui.png").stat().st_size > 10_000
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
