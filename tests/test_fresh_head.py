"""Tracking as a cloud cluster keeps it, and a run that survives losing its head node.

A real PostgreSQL server (Debian's ``postgresql``, started here in a temp dir) is the backend
store of a real ``mlflow server`` whose artifacts go to S3 (moto); ``MLFLOW_TRACKING_URI`` points
the driver at it. On Ray's fake multi-node autoscaler the pipeline runs with ``storage`` on S3,
its data HDF5 splits on S3, the driver and the head are killed (``ray stop --force``: SIGKILL, here only
this cluster's processes), the local ``--out`` is deleted, and the same command on a new head (whose
nodes have an empty data cache) finishes the run from S3 and the tracking server alone.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from test_autoscaler import TINY, fake_cluster_config
from test_jobs import ENV, NODE_PORT_FLAGS, free_ports, node_ports, stop_cluster

from amber_ray.data.remote import CACHE_ENV

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "amber"
DATA = f"s3://{BUCKET}/demo-data"  # the demo's simulated set at TINY's size, as HDF5 splits

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("ray") is None, reason="the ray CLI is not on PATH")]


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server programs (Debian keeps them off the PATH)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own (temp dir, free port, 127.0.0.1 only) with an empty database; yields its URI.

    PostgreSQL refuses to run as root, so as root its programs run as the ``postgres`` user.
    """
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):  # .ci/run installs it: a missing server there is a broken CI, not a skip
            pytest.fail("PostgreSQL is not installed, although .ci/run installs it")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    directory = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data, (port,) = directory / "data", free_ports(1)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off"
    try:
        for command in (
            [bindir / "initdb", "-D", data, "-U", "amber", "--auth=trust", "-E", "UTF8", "--no-sync"],
            [bindir / "pg_ctl", "-D", data, "-l", directory / "server.log", "-o", options, "-w", "start"],
            [bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "amber", "mlflow"],
        ):
            done = subprocess.run([*as_owner, *map(str, command)], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{command[0].name}: {done.stderr}"
        yield f"postgresql+psycopg2://amber@127.0.0.1:{port}/mlflow"  # SQLAlchemy 2.1's default driver is psycopg 3
    finally:
        subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(postgres, s3) -> Iterator[str]:
    """``mlflow server`` on the PostgreSQL store with artifacts on S3; sets and yields ``MLFLOW_TRACKING_URI``."""
    (port,) = free_ports(1)
    uri = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="mlflow-server", suffix=".log", delete=False)  # noqa: SIM115
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres]
    command += ["--artifacts-destination", f"s3://{BUCKET}/mlflow", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**ENV, **s3, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        deadline = time.monotonic() + 180  # it migrates the empty database first
        while time.monotonic() < deadline:
            assert server.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5):
                    break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"mlflow server did not answer: {Path(log.name).read_text()[-3000:]}")
        os.environ["MLFLOW_TRACKING_URI"] = uri
        yield uri
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None) if saved is None else os.environ.__setitem__("MLFLOW_TRACKING_URI", saved)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        Path(log.name).unlink(missing_ok=True)


def test_commands_track_through_the_server_into_postgresql_and_s3(tracking_server, postgres, tmp_path):
    """A run made through ``MLFLOW_TRACKING_URI`` is a row of PostgreSQL with its artifact on S3; a resume
    of a run id the server does not know continues in a new run tagged with it."""
    import boto3
    import psycopg2

    from amber_ray.tracking import RESUMED_FROM, RunTracker

    run = RunTracker.start(tmp_path, "server-check", "search", {"command": "search"})
    run.log_metrics({"mean_reward": 0.5}, step=0)
    (tmp_path / "note.txt").write_text("on S3")
    run.log_artifact(tmp_path / "note.txt")
    run.finish()
    assert not (tmp_path / "mlflow.db").exists()  # no SQLite store beside the run: the server has it
    with psycopg2.connect(postgres.replace("+psycopg2", "")) as db, db.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.run_id,))
        assert cursor.fetchall() == [("FINISHED",)]
    keys = [entry["Key"] for entry in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")["Contents"]]
    assert any(key.endswith(f"{run.run_id}/artifacts/note.txt") for key in keys), keys

    lost = "0" * 32
    resumed = RunTracker.start(tmp_path, "server-check", "search", {"command": "search"}, run_id=lost)
    client = MlflowClient(tracking_server)
    assert resumed.run_id != lost and client.get_run(resumed.run_id).data.tags[RESUMED_FROM] == lost
    assert RunTracker.start(tmp_path, "server-check", "search", run_id=lost).run_id == resumed.run_id  # not another one


# --- a new head -----------------------------------------------------------------------------------


class FakeCluster:
    """A head of Ray's fake multi-node autoscaler (its worker nodes started on demand), on its own ports and temp dir.

    Its processes stage S3 data into a cache of its own (``data_cache``), empty as a new machine's disk."""

    def __init__(self, env: dict[str, str], attempts: int = 3):
        """Started on fresh ports; a start that times out on a loaded machine is tried again."""
        for _ in range(attempts):
            self.temp_dir = tempfile.mkdtemp(prefix="rf", dir="/tmp")
            gcs, dashboard, client_server, *agent_ports = free_ports(3 + len(NODE_PORT_FLAGS))
            self.address = f"127.0.0.1:{gcs}"
            config = Path(self.temp_dir) / "autoscaling.yaml"
            config.write_text(yaml.safe_dump(fake_cluster_config(self.address)))
            command = ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=0", "--num-gpus=0"]
            command += [f"--autoscaling-config={config}", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
            command += [f"--dashboard-port={dashboard}", f"--ray-client-server-port={client_server}"]
            command += [f"--temp-dir={self.temp_dir}", "--disable-usage-stats", *node_ports(agent_ports)]
            # The autoscaler starts the fake nodes from its own process: they inherit this environment.
            self.data_cache = Path(self.temp_dir) / "data-cache"
            head_env = {
                **self.env(env),
                "RAY_FAKE_CLUSTER": "1",
                "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                "RAY_TMPDIR": self.temp_dir,
            }
            head = subprocess.run(command, capture_output=True, text=True, env=head_env, timeout=180)
            if head.returncode == 0:
                return
            self.kill()
        pytest.fail(f"ray start failed {attempts} times: {head.stderr[-3000:]}")

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` for a process of this cluster: its address and its data cache."""
        return {**env, "RAY_ADDRESS": self.address, CACHE_ENV: str(self.data_cache)}

    def kill(self) -> None:
        """``ray stop --force`` for this cluster only: SIGKILL to its head, its nodes and their workers."""
        stop_cluster(self.temp_dir, self.address)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def pipeline(cluster: FakeCluster, env: dict[str, str], config: Path, out: Path, name: str) -> subprocess.Popen:
    """``amber-ray pipeline`` as a driver of ``cluster``, in its own process group."""
    sets = [*TINY, f"name={name}", "search.iterations=5", "train.max_epochs=4", "train.patience=4", f"storage=s3://{BUCKET}/runs"]
    sets += ["data.kind=hdf5", f"data.hdf5_dir={DATA}"]
    command = [sys.executable, "-m", "amber_ray.cli", "pipeline", str(config), "--out", str(out)]
    command += [part for value in sets for part in ("--set", value)]
    return subprocess.Popen(
        command,
        env=cluster.env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(driver: subprocess.Popen, timeout: float = 900) -> str:
    output, _ = driver.communicate(timeout=timeout)
    assert driver.returncode == 0, output[-4000:]
    return output


def wait_for(condition: Callable[[], bool], driver: subprocess.Popen, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if driver.poll() is not None:
            pytest.fail(f"the pipeline ended before {what}: {driver.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.3)


def kill_driver_and_head(driver: subprocess.Popen, cluster: FakeCluster) -> None:
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    cluster.kill()


def remote(out: Path, *parts: str) -> str:
    from amber_ray.storage import location

    return location(f"s3://{BUCKET}/runs", out, *parts)


def keys(uri: str) -> list[str]:
    """Every file under ``uri``."""
    import pyarrow.fs as pafs

    from amber_ray import storage

    fs, path = storage.filesystem(uri)
    return [info.path for info in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))]


def upload_demo_data(directory: Path) -> set[str]:
    """The demo config's simulated set at TINY's size (600 sequences), split as the pipeline splits it, written as
    HDF5 splits and uploaded to ``DATA``; returns the uploaded file names."""
    import boto3

    from amber_ray.config import parse_config
    from amber_ray.data import load_splits, write_hdf5

    raw = yaml.safe_load((ROOT / "jobs" / "configs" / "demo.yaml").read_text())
    raw["data"]["simulate"]["num_sequences"] = 600
    config = parse_config(raw)
    splits = load_splits(config.data, config.seed)
    client, prefix = boto3.client("s3"), DATA.removeprefix(f"s3://{BUCKET}/")
    for split in ("train", "valid", "test"):
        write_hdf5(getattr(splits, split), directory / f"{split}.h5", chunk_size=64)
        client.upload_file(str(directory / f"{split}.h5"), BUCKET, f"{prefix}/{split}.h5")
    return {f"{split}.h5" for split in ("train", "valid", "test")}


def staged_files(cache: Path) -> set[str]:
    """The data files a cluster's processes staged from S3 (cache entries are ``DIGEST-NAME``)."""
    return {path.name.split("-", 1)[1] for path in cache.glob("*.h5")} if cache.is_dir() else set()


def runs_of(client: MlflowClient, name: str) -> dict[str, list]:
    """The experiment's runs by their command tag (``trial`` for the retraining's nested runs)."""
    experiment = client.get_experiment_by_name(name)
    by_command: dict[str, list] = {}
    for run in client.search_runs([experiment.experiment_id]):
        by_command.setdefault(run.data.tags.get("command", "trial"), []).append(run)
    return by_command


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def check_tracking(client: MlflowClient, name: str, out: Path) -> None:
    """One run per step, finished; every iteration and every trial epoch logged once."""
    runs = runs_of(client, name)
    assert [len(runs.get("search", [])), len(runs.get("retrain", []))] == [1, 1], "one run per step, not a new one on resume"
    (search,), (retrain,) = runs["search"], runs["retrain"]
    assert search.info.status == retrain.info.status == "FINISHED"
    assert steps(client, search.info.run_id, "mean_reward") == list(range(5))
    assert steps(client, search.info.run_id, "best_reward") == [0]
    assert len(client.list_artifacts(search.info.run_id, "architectures")) == 5
    results = pd.read_parquet(out / "retrain" / "results.parquet")
    trials = runs["trial"]
    assert len(trials) == len(results) == 2 and {t.data.tags["mlflow.parentRunId"] for t in trials} == {retrain.info.run_id}
    for trial in trials:
        (row,) = results[(results.arch == trial.data.tags["arch"]) & (results.role == trial.data.tags["role"])].itertuples()
        assert trial.info.status == "FINISHED"
        assert steps(client, trial.info.run_id, "valid_auroc") == list(range(row.epochs)), trial.data.tags
        assert steps(client, trial.info.run_id, "test_auroc") == [0]


def test_a_new_head_finishes_a_pipeline_from_storage_and_the_tracking_server(tracking_server, s3, tmp_path):
    """Killed during the retraining (its search ran through: the reference history), then, in a second run,
    killed mid-search (its retraining ran through: the reference results); each time the local --out is
    deleted and a new head resumes. Both end as an uninterrupted run would, tracked once."""
    from amber_ray import storage

    started = time.monotonic()
    config = ROOT / "jobs" / "configs" / "demo.yaml"
    env = {**ENV, **s3, "MLFLOW_TRACKING_URI": tracking_server, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    client = MlflowClient(tracking_server)
    uploaded = upload_demo_data(tmp_path)
    outs = {"retrain": tmp_path / "killed-in-retrain", "search": tmp_path / "killed-in-search"}

    def trial_checkpointed(out: Path) -> Callable[[], bool]:
        """A trial's checkpoint and the grid's state are on S3 (the state is what a new head restores from)."""
        grid = remote(out, "retrain", "tune", "grid")
        return lambda: storage.newest(grid, "experiment_state-") is not None and any("/checkpoint_" in key for key in keys(grid))

    def iterations_tracked(name: str, count: int) -> Callable[[], bool]:
        def tracked() -> bool:
            experiment = client.get_experiment_by_name(name)
            runs = client.search_runs([experiment.experiment_id], "tags.command = 'search'") if experiment else []
            return bool(runs) and len(steps(client, runs[0].info.run_id, "mean_reward")) >= count

        return tracked

    for stage, out in outs.items():
        name = f"fresh-{stage}"
        cluster = FakeCluster(env)
        driver = pipeline(cluster, env, config, out, name)
        if stage == "retrain":
            wait_for(trial_checkpointed(out), driver, "trial checkpoint on S3")
            assert not storage.exists(remote(out, "retrain", "results.parquet"))  # killed mid-retraining
        else:
            wait_for(iterations_tracked(name, 2), driver, "two tracked iterations")
            assert not storage.exists(remote(out, "search", "final_architectures.json"))  # killed mid-search
        kill_driver_and_head(driver, cluster)
        shutil.rmtree(out)

        cluster = FakeCluster(env)
        try:
            finish(pipeline(cluster, env, config, out, name))
            assert staged_files(cluster.data_cache) == uploaded  # the new head's nodes read the data from S3
        finally:
            cluster.kill()
        assert (out / "report.html").is_file() and (out / "retrain" / "compare.json").is_file()
        check_tracking(client, name, out)

    histories = [pd.read_parquet(out / "search" / "history.parquet") for out in outs.values()]
    pd.testing.assert_frame_equal(histories[1], histories[0])  # mid-search kill: the uninterrupted search's history
    results = [pd.read_parquet(out / "retrain" / "results.parquet").sort_values(["role", "arch"]) for out in outs.values()]
    pd.testing.assert_series_equal(
        results[0].test_auroc.reset_index(drop=True), results[1].test_auroc.reset_index(drop=True), atol=1e-6
    )  # mid-retraining kill: the uninterrupted retraining's results
    print(f"fresh-head pipelines: {time.monotonic() - started:.0f} s")
