"""On Ray's own autoscaler: the fake multi-node provider shipped in the ray wheel, with the node types of cluster.yaml.

A CPU head without GPUs and a GPU worker type that scales from 0 (its GPUs are Ray resources
only, so ``train.device: auto`` resolves to the CPU there), and an S3 server (moto) as shared
storage. The pipeline is submitted with ``ray job submit --working-dir``: GPU requests wait for
the GPU nodes the autoscaler starts, a request no node type could hold fails at once naming its
key, and a GPU node killed mid-search is replaced while the search goes on.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from ray.job_submission import JobStatus
from test_jobs import ENV, NODE_PORT_FLAGS, free_ports, node_ports, stop_cluster, submit_job

ROOT = Path(__file__).resolve().parents[1]
GPU_NODE = {"resources": {"CPU": 2, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2}
# A few seconds of work per stage: 2 search iterations, 2 retraining trials of 2 epochs.
TINY = [
    "data.simulate.num_sequences=600",
    "space.first_filters=8",
    "space.stem_channels=8",
    "space.dense_units=16",
    "search.iterations=2",
    "search.archs_per_iteration=4",
    "search.valid_max_sequences=100",
    "search.final_samples=0",
    "search.final_candidates=2",
    "search.final_iterations=1",
    "train.max_epochs=2",
    "train.patience=1",
    "retrain.replicates=1",
    "retrain.sampled=1",
    "retrain.random_search=false",  # the cluster's mechanics, not the demo's ablation
]

pytestmark = [pytest.mark.skipif(shutil.which("ray") is None, reason="the ray CLI is not on PATH"), pytest.mark.slow]


def fake_cluster_config(gcs_address: str) -> dict:
    """cluster.yaml's node types on the fake provider: the head has no GPU (and, as there, no CPU for work)."""
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and cluster["available_node_types"]["gpu_worker"]["min_workers"] == 0
    return {
        "cluster_name": "amber-fake",
        "max_workers": GPU_NODE["max_workers"],
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0, "GPU": 0}, "node_config": {}, "max_workers": 0},
            "gpu_worker": GPU_NODE,
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "docker": {},
        "file_mounts": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


@pytest.fixture(scope="module")
def autoscaling_cluster(s3):
    """``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=...`` on its own ports and temp dir, every node
    reaching the S3 server; yields the dashboard URL."""
    temp_dir = tempfile.mkdtemp(prefix="ra", dir="/tmp")
    gcs, dashboard, client_server, *agent_ports = free_ports(3 + len(NODE_PORT_FLAGS))
    config = Path(temp_dir) / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(fake_cluster_config(f"127.0.0.1:{gcs}")))
    # The autoscaler starts the fake nodes from its own process: they inherit this environment.
    env = {
        **ENV,
        **s3,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_TMPDIR": temp_dir,
        "PYTHONPATH": str(ROOT),
    }
    try:
        head = subprocess.run(
            [
                "ray",
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={gcs}",
                "--num-cpus=0",
                "--num-gpus=0",
                f"--autoscaling-config={config}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--ray-client-server-port={client_server}",
                f"--temp-dir={temp_dir}",
                "--disable-usage-stats",
                *node_ports(agent_ports),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert head.returncode == 0, head.stderr
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        stop_cluster(temp_dir, f"127.0.0.1:{gcs}")
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit(
    address: str, working_dir: str, *arguments: str, during: Callable[[], None] | None = None
) -> tuple[JobStatus, str, float]:
    """The pipeline as a job on the fake cluster (:func:`test_jobs.submit_job`, up to 280 s)."""
    return submit_job(address, working_dir, *arguments, temp_dir=tempfile.gettempdir(), timeout=280, during=during)


def gpu_nodes(address: str) -> list:
    from ray.util.state import list_nodes

    return [node for node in list_nodes(address=address, detail=True) if node.resources_total.get("GPU", 0) > 0]


def test_a_gpu_request_no_node_type_can_hold_fails_at_once(autoscaling_cluster, tmp_path):
    out = tmp_path / "runs"
    sets = [part for value in [*TINY, "search.gpus_per_worker=8"] for part in ("--set", value)]
    status, logs, seconds = submit(autoscaling_cluster, str(ROOT), "jobs/configs/demo.yaml", "--out", str(out), *sets)
    assert status == JobStatus.FAILED, logs[-3000:]
    assert "config key 'search.gpus_per_worker' asks for 8 GPU per worker, more than any node" in " ".join(logs.split())
    assert "gpu_worker (CPU 2, GPU 1, up to 2)" in " ".join(logs.split())
    assert seconds < 90, seconds  # no wait for nodes that could never come
    assert gpu_nodes(autoscaling_cluster) == []  # and no GPU node started for it


def s3_keys(prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket="amber", Prefix=prefix)
    return [entry["Key"] for page in pages for entry in page.get("Contents", [])]


def test_gpu_pipeline_waits_for_the_autoscaler_and_completes_on_s3_storage(autoscaling_cluster, tmp_path):
    assert gpu_nodes(autoscaling_cluster) == []  # none up before the job asks
    out = tmp_path / "runs"
    gpu_sets = ["search.gpus_per_worker=1", "retrain.gpus_per_trial=0.5", "storage=s3://amber/cluster"]
    sets = [part for value in [*TINY, *gpu_sets] for part in ("--set", value)]
    # The repository in place (``local://``), not an uploaded copy: every fake node shares the head's
    # temp dir, and each node's runtime-env agent re-unpacks an uploaded working dir there, deleting
    # it under the processes already running in it. Real nodes have their own disks.
    status, logs, seconds = submit(autoscaling_cluster, f"local://{ROOT}", "jobs/configs/demo.yaml", "--out", str(out), *sets)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert "waiting for the autoscaler: 1 x {CPU: 1, GPU: 1}" in " ".join(logs.split()), logs[-3000:]
    started = gpu_nodes(autoscaling_cluster)
    assert 1 <= len(started) <= GPU_NODE["max_workers"]
    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    (search_run,) = [run for run in runs if run.data.tags.get("command") == "search"]
    assert search_run.data.tags["worker_nodes"] in {
        node.node_id for node in started
    }  # the supernet worker ran on a started GPU node
    assert search_run.data.tags["worker_devices"] == "cpu"  # fake GPUs: auto is the CPU, never a CUDA call
    assert sum(run.data.tags.get("role") in ("searched", "sampled") for run in runs) == 2  # (searched + 1 sampled) x 1 replicate
    assert (out / "retrain" / "compare.json").is_file() and (out / "report.html").is_file()

    # Shared storage: trial checkpoints written from the GPU node, the search checkpoint, MLflow artifacts.
    keys = s3_keys("cluster/" + out.relative_to("/").as_posix())
    assert any("/retrain/tune/grid/" in key and key.endswith("best_model.pt") for key in keys), keys[:20]
    assert any(key.endswith("/search/checkpoints/search.pt") for key in keys), keys[:20]
    assert any("/mlartifacts/" in key and key.endswith("final_architectures.json") for key in keys), keys[:20]
    # A replaced head (its disk lost) resumes from the mirrored search checkpoint.
    from amber_ray.checkpoint import load_checkpoint
    from amber_ray.config import parse_config
    from amber_ray.search.loop import checkpoint_path, has_search_checkpoint

    shutil.rmtree(checkpoint_path(out / "search").parent)
    assert has_search_checkpoint(parse_config({"storage": "s3://amber/cluster"}), out / "search")
    assert load_checkpoint(checkpoint_path(out / "search"))["iteration"] == 1
    print(f"autoscaled pipeline: {seconds:.0f} s, {len(started)} GPU node(s) started")

    # A command that asks the job for a GPU runs on a GPU node, its inputs and outputs on storage.
    predicts_on_a_gpu_node_from_storage(autoscaling_cluster, out / "retrain" / "final", tmp_path)


def predicts_on_a_gpu_node_from_storage(address: str, final: Path, tmp_path: Path) -> None:
    """``ray job submit --entrypoint-num-gpus 1 -- python jobs/predict.py s3://... --out s3://...``: the driver runs
    on a GPU node, whose disk holds neither the model nor the FASTA, and writes what a local predict writes to S3."""
    import boto3
    import numpy as np
    import pandas as pd
    from conftest import invoke
    from ray.job_submission import JobSubmissionClient

    client = boto3.client("s3")
    for path in final.iterdir():
        client.upload_file(str(path), "amber", f"models/final/{path.name}")
    rng = np.random.default_rng(0)
    fasta = tmp_path / "query.fa"
    fasta.write_text("".join(f">q{i}\n{''.join(rng.choice(list('ACGT'), 100))}\n" for i in range(8)))
    client.upload_file(str(fasta), "amber", "inputs/query.fa")
    arguments = ["s3://amber/models/final", "--fasta", "s3://amber/inputs/query.fa", "--out", "s3://amber/predictions"]
    status, logs, _ = submit_job(
        address, f"local://{ROOT}", *arguments, temp_dir=tempfile.gettempdir(), timeout=150, script="jobs/predict.py", gpus=1
    )
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    (job,) = [job for job in JobSubmissionClient(address).list_jobs() if "jobs/predict.py" in job.entrypoint]
    assert job.driver_node_id in {node.node_id for node in gpu_nodes(address)}
    (tmp_path / "got.parquet").write_bytes(
        client.get_object(Bucket="amber", Key="predictions/predictions.parquet")["Body"].read()
    )
    local = invoke("predict", final, "--fasta", fasta, "--out", tmp_path / "local")
    assert local.exit_code == 0, local.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "got.parquet"), pd.read_parquet(tmp_path / "local" / "predictions.parquet")
    )


def test_a_gpu_node_killed_mid_search_is_replaced_and_the_search_continues(autoscaling_cluster, tmp_path):
    """The search's checkpoint reaches S3, then the GPU node of the supernet worker is killed: the
    driver replaces the actors, the autoscaler starts another GPU node, and the job completes."""
    out = tmp_path / "runs"
    checkpoint_key = "cluster/" + (out / "search" / "checkpoints" / "search.pt").relative_to("/").as_posix()

    def kill_the_worker_node() -> None:
        deadline = time.monotonic() + 150
        while checkpoint_key not in s3_keys(checkpoint_key) and time.monotonic() < deadline:
            time.sleep(1)
        assert checkpoint_key in s3_keys(checkpoint_key), "no search checkpoint reached the bucket"
        alive = [node for node in gpu_nodes(autoscaling_cluster) if node.state == "ALIVE"]
        assert alive
        killed.extend(alive)
        for node in alive:  # the worker's node (and any idle one left from an earlier test)
            stop_cluster(f"--node_id={node.node_id}")  # its raylet and every process under it

    killed: list = []
    sets = ["search.iterations=30", "search.gpus_per_worker=1", "retrain.gpus_per_trial=0.5", "storage=s3://amber/cluster"]
    arguments = [part for value in [*TINY, *sets] for part in ("--set", value)]
    status, logs, _ = submit(
        autoscaling_cluster,
        f"local://{ROOT}",
        "jobs/configs/demo.yaml",
        "--out",
        str(out),
        *arguments,
        during=kill_the_worker_node,
    )
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    flat = " ".join(logs.split())  # the job's console wraps long log lines
    assert "an actor of the search died" in flat and "restarting all actors from the last checkpoint" in flat
    replacements = [node for node in gpu_nodes(autoscaling_cluster) if node.node_id not in {k.node_id for k in killed}]
    assert replacements, "the autoscaler started no GPU node after the kill"
