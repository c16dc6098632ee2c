"""Scale-out: GPU requests checked against the cluster, and the pipeline as a Ray job on two nodes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray.job_submission import JobStatus, JobSubmissionClient

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

FAKE_GPU_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, ray
    from amber_ray.config import parse_config
    from amber_ray.data import load_splits
    from amber_ray.errors import AmberInputError
    from amber_ray.search.loop import SearchDriver

    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    raw = {
        "data": {"simulate": {"num_sequences": 200, "length": 64, "motifs": ["MA0079.5"]}},
        "space": {"first_filters": 4, "stem_channels": 4, "dense_units": 8},
        "search": {"workers": 2, "gpus_per_worker": 0.5},
    }
    config = parse_config(raw)
    driver = SearchDriver(config, sys.argv[1], load_splits(config.data, 0))
    placements = ray.get([w.placement.remote() for w in driver.workers])
    driver.close()
    raw["search"]["gpus_per_worker"] = 3
    config, splits = parse_config(raw), load_splits(config.data, 0)
    started = time.monotonic()
    try:
        SearchDriver(config, sys.argv[1], splits)
        error = None
    except AmberInputError as caught:
        error = str(caught)
    seconds = time.monotonic() - started
    print(json.dumps({"placements": placements, "error": error, "seconds": seconds}))
    """
)


def test_fractional_gpus_are_placed_and_impossible_requests_fail_at_once(tmp_path):
    """Fake GPUs (``ray.init(num_gpus=2)``): two workers at 0.5 GPU each are placed; 3 GPUs fail with a message,
    before any actor is asked for (an actor that asks for more GPUs than the cluster has would wait forever)."""
    result = subprocess.run(
        [sys.executable, "-c", FAKE_GPU_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**ENV, "RAY_FAKE_CLUSTER": "1"},  # GPUs that are Ray resources only, explicitly: workers run on the CPU
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [len(p["gpu_ids"]) for p in report["placements"]] == [1, 1]
    assert "'search.gpus_per_worker' asks for 3 GPU per worker, more than any node" in report["error"]
    assert [p["device"] for p in report["placements"]] == ["cpu", "cpu"]  # the GPUs are Ray resources only: auto is the CPU
    assert report["seconds"] < 10, report  # checked up front, not after a wait for placement


@pytest.mark.parametrize("job", ["pipeline", "search", "retrain"])
def test_a_job_takes_the_arguments_of_its_command(job, tmp_path):
    """``python jobs/X.py`` is ``amber-ray X``: positional CONFIG, same options, the same one-line errors."""
    usage = subprocess.run(
        [sys.executable, f"jobs/{job}.py", "--help"], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=120
    )
    assert usage.returncode == 0, usage.stderr
    assert f"Usage: amber-ray {job} [OPTIONS]" in usage.stdout and "--out" in usage.stdout and "--set" in usage.stdout
    missing = subprocess.run(
        [
            sys.executable,
            f"jobs/{job}.py",
            "jobs/configs/missing.yaml",
            "--out",
            str(tmp_path),
            *(["--search", str(tmp_path)] if job == "retrain" else []),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert missing.returncode == 2 and "missing.yaml: config file not found" in " ".join(missing.stderr.split()), missing.stderr


@pytest.mark.parametrize("job", ["train", "interpret"])
def test_train_and_interpret_run_as_jobs_with_the_arguments_of_their_command(job):
    """What ``ray job submit --entrypoint-num-gpus 1 -- python jobs/X.py`` runs on a GPU node."""
    usage = subprocess.run(
        [sys.executable, f"jobs/{job}.py", "--help"], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=120
    )
    assert usage.returncode == 0, usage.stderr
    assert f"Usage: amber-ray {job} [OPTIONS]" in usage.stdout and "--out" in usage.stdout and "--device" in usage.stdout


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all sockets stay bound until every port is drawn, so none repeats."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


NODE_PORT_FLAGS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")


def node_ports(ports: list[int]) -> list[str]:
    """Flags giving every service a node starts its own port: the test session's cluster holds the defaults."""
    return [f"--{flag}={port}" for flag, port in zip(NODE_PORT_FLAGS, ports, strict=True)]


def ray_cli(*args: str, temp_dir: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ray", *args], capture_output=True, text=True, env={**ENV, "RAY_TMPDIR": temp_dir}, timeout=300)


def submit_job(
    address: str,
    working_dir: str,
    *arguments: str,
    temp_dir: str,
    timeout: float,
    during: Callable[[], None] | None = None,
    script: str = "jobs/pipeline.py",
    gpus: int = 0,
) -> tuple[JobStatus, str, float]:
    """``ray job submit --working-dir W [--entrypoint-num-gpus G] -- python SCRIPT ...`` (the pipeline unless
    ``script`` says otherwise), then wait for its end (at most ``timeout`` seconds): its status, logs and seconds.
    ``during`` is called once while it runs (e.g. to kill a node)."""
    command = [
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        working_dir,
        *(["--entrypoint-num-gpus", str(gpus)] if gpus else []),
        "--no-wait",
        "--",
        "python",
        script,
        *arguments,
    ]
    started = time.monotonic()
    for _ in range(30):  # the job agent takes a few seconds to come up after `ray start`
        submitted = ray_cli(*command, temp_dir=temp_dir)
        if "No available agent" not in submitted.stderr:
            break
        time.sleep(2)
    assert submitted.returncode == 0, submitted.stderr
    job_id = re.search(r"raysubmit_\w+", submitted.stdout + submitted.stderr).group()
    jobs = JobSubmissionClient(address)
    if during is not None:
        during()
    while not (status := jobs.get_job_status(job_id)).is_terminal() and time.monotonic() - started < timeout:
        time.sleep(2)
    return status, jobs.get_job_logs(job_id), time.monotonic() - started


@pytest.mark.skipif(shutil.which("ray") is None, reason="the ray CLI is not on PATH")
@pytest.mark.slow
def test_pipeline_job_runs_on_a_two_node_cluster(tmp_path):
    # Each node needs its own temp dir: two nodes of one host sharing one would unpack the job's
    # working dir into the same folder and delete it under each other.
    temp_dir, worker_temp_dir = (tempfile.mkdtemp(prefix="rj", dir="/tmp") for _ in range(2))
    gcs, dashboard, client_server, *agent_ports = free_ports(3 + 2 * len(NODE_PORT_FLAGS))
    head_ports, worker_ports = agent_ports[: len(NODE_PORT_FLAGS)], agent_ports[len(NODE_PORT_FLAGS) :]
    out = tmp_path / "runs"
    try:
        head = ray_cli(
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
            f"--ray-client-server-port={client_server}",
            *node_ports(head_ports),
            temp_dir=temp_dir,
        )
        assert head.returncode == 0, head.stderr
        worker = ray_cli(
            "start",
            f"--address=127.0.0.1:{gcs}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            '--resources={"second_node": 1}',
            f"--temp-dir={worker_temp_dir}",
            *node_ports(worker_ports),
            temp_dir=temp_dir,
        )
        assert worker.returncode == 0, worker.stderr
        status, logs, _ = submit_job(
            f"http://127.0.0.1:{dashboard}",
            str(ROOT),
            "jobs/configs/demo.yaml",
            "--out",
            str(out),
            "--set",
            "search.workers=2",
            "--set",
            "search.iterations=4",
            "--set",
            "retrain.sampled=1",
            "--set",
            "retrain.random_search=false",
            "--set",
            f"storage={tmp_path / 'shared'}",  # two nodes need shared storage (here both on one host's disk)
            temp_dir=temp_dir,
            timeout=600,
        )
        assert status == JobStatus.SUCCEEDED, logs[-4000:]

        client = MlflowClient(f"sqlite:///{out}/mlflow.db")
        runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
        commands = sorted(run.data.tags.get("command", "trial") for run in runs)
        assert (
            commands.count("search") == 1 and commands.count("retrain") == 1 and commands.count("trial") == (1 + 1) * 2
        )  # (searched + 1 sampled) x 2 replicates
        (search_run,) = [run for run in runs if run.data.tags.get("command") == "search"]
        assert len(set(search_run.data.tags["worker_nodes"].split(","))) == 2  # one supernet worker per node
        assert (out / "retrain" / "compare.json").is_file()
    finally:
        stop_cluster(temp_dir, worker_temp_dir, f"127.0.0.1:{gcs}")
        for directory in (temp_dir, worker_temp_dir):
            shutil.rmtree(directory, ignore_errors=True)


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), read from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            table[int(entry.name)] = (parent, cmdline)
    return table


def stop_cluster(*markers: str) -> None:
    """Kill this test's Ray cluster only (``ray stop`` would also kill the test session's cluster):
    the processes whose command line names one of ``markers`` (its temp dir, its address), and their descendants."""
    table = processes()
    doomed = {pid for pid, (_, cmdline) in table.items() if any(m in cmdline for m in markers)} - {os.getpid()}
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in doomed} - doomed
        doomed |= children
        grew = bool(children)
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
