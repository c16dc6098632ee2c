"""Data on object storage: HDF5 splits given as ``s3://`` URIs, staged once per node (moto's S3 server on 127.0.0.1)."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import ray

from amber_ray.config import parse_config
from amber_ray.data import load_search_data, load_splits, write_hdf5
from amber_ray.data.remote import CACHE_ENV, stage
from amber_ray.errors import AmberInputError
from amber_ray.search.actors import SupernetWorker
from amber_ray.space import ModelSpace

DATA = {"simulate": {"num_sequences": 300, "length": 64, "motifs": ["MA0079.5"]}}


@pytest.fixture(scope="module")
def s3_data(s3, tmp_path_factory):
    """The S3 server's bucket ``amber`` holding ``data/{train,valid,test}.h5``; yields its environment and the local copies."""
    import boto3

    from amber_ray.config import SimulatorConfig
    from amber_ray.data import simulate_dataset
    from amber_ray.data.split import stratified_split

    client = boto3.client("s3")
    splits = stratified_split(simulate_dataset(SimulatorConfig(**DATA["simulate"]), 0)[0], 0.2, 0.2, 0, "simulated")
    local = tmp_path_factory.mktemp("h5")
    for split in ("train", "valid", "test"):
        write_hdf5(getattr(splits, split), local / f"{split}.h5", chunk_size=32)
        client.upload_file(str(local / f"{split}.h5"), "amber", f"data/{split}.h5")
    return s3, local


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_hdf5_on_s3_is_read_by_the_loader_and_by_a_supernet_worker(ray_session, s3_data, cache, tmp_path):
    env, local = s3_data
    config = parse_config({"data": {"kind": "hdf5", "hdf5_dir": "s3://amber/data"}, "space": {"first_filters": 4}})
    assert config.data.hdf5_dir == "s3://amber/data"  # kept as a URI, not made a local path
    splits = load_splits(config.data, 0)
    expected = load_splits(parse_config({"data": {"kind": "hdf5", "hdf5_dir": str(local)}}).data, 0)
    assert np.array_equal(splits.train.y, expected.train.y) and splits.train.names == expected.train.names
    data = load_search_data(config.data, 0)
    assert data.train.source == "s3://amber/data/train.h5" and data.train.path.parent == cache
    space = ModelSpace.from_config(config.space, data.train.length, data.train.num_labels)
    # A worker of its own node: its own cache, the bucket reached through its own environment.
    worker_env = {**env, CACHE_ENV: str(tmp_path / "worker_cache")}
    worker = SupernetWorker.options(num_cpus=1, runtime_env={"env_vars": worker_env}).remote(
        space, data.train, data.valid, config.search, 0, 1
    )
    try:
        ray.get(worker.ready.remote())
        batches = ray.get(worker.num_batches.remote(40, None))
        assert batches == -(-len(expected.train.names) // 40)
        arch = space.sample(np.random.default_rng(0), 0.5).to_text()
        assert ray.get(worker.train_pass.remote([arch] * batches, 0, 40)) > 0
    finally:
        ray.kill(worker)
    assert sorted(p.name.split("-", 1)[1] for p in (tmp_path / "worker_cache").glob("*.h5")) == ["train.h5", "valid.h5"]


def test_concurrent_stagers_on_one_node_download_once(s3_data, cache):
    barrier, results = threading.Barrier(4), []

    def stager() -> None:
        barrier.wait()
        results.append(stage("s3://amber/data/train.h5"))

    threads = [threading.Thread(target=stager) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(downloaded for _, downloaded in results) == [False, False, False, True]
    (path,) = {path for path, _ in results}
    assert path.read_bytes() == (s3_data[1] / "train.h5").read_bytes()
    assert sorted(p.name.split("-", 1)[1] for p in cache.iterdir()) == ["train.h5", "train.h5.lock"]  # no partial copy left
    assert stage("s3://amber/data/train.h5") == (path, False)  # later readers on the node use the copy


def test_data_a_node_cannot_reach_fails_in_one_line_naming_the_path_and_the_node(ray_session, s3_data, cache, tmp_path):
    with pytest.raises(AmberInputError) as caught:
        stage("s3://amber/data/missing.h5")
    message = str(caught.value)
    assert message == f"s3://amber/data/missing.h5: cannot be read from node {socket.gethostname()} (no such object)"
    # A worker whose node cannot reach the bucket (no credentials for it there): ready() raises that line.
    config = parse_config({"data": {"kind": "hdf5", "hdf5_dir": "s3://amber/data"}})
    data = load_search_data(config.data, 0)
    space = ModelSpace.from_config(config.space, data.train.length, data.train.num_labels)
    unreachable = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", CACHE_ENV: str(tmp_path / "worker_cache")}
    worker = SupernetWorker.options(num_cpus=1, runtime_env={"env_vars": {**s3_data[0], **unreachable}}).remote(
        space, data.train, data.valid, config.search, 0, 1
    )
    try:
        with pytest.raises(ray.exceptions.RayTaskError) as failed:
            ray.get(worker.ready.remote())
    finally:
        ray.kill(worker)
    cause = failed.value.cause
    assert isinstance(cause, AmberInputError) and "\n" not in str(cause)
    assert str(cause).startswith("s3://amber/data/train.h5: cannot be read from node ")


def test_fasta_and_labels_on_s3_load_as_the_local_files_do_and_their_errors_name_the_uri(s3_data, cache, tmp_path):
    import boto3

    client = boto3.client("s3")
    fasta, labels = tmp_path / "seqs.fa", tmp_path / "labels.tsv"
    sequences = ["ACGTACGTAC", "TTGACGTCAA", "GGGCCCAAAT", "CATGCATGCA", "ACACACGTGT"] * 4
    fasta.write_text("".join(f">s{i}\n{seq}\n" for i, seq in enumerate(sequences)))
    labels.write_text("name\ttf\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(len(sequences))))
    for path in (fasta, labels):
        client.upload_file(str(path), "amber", f"text/{path.name}")
    split = {"valid": 0.2, "test": 0.2}
    remote = parse_config(
        {
            "data": {
                "kind": "fasta_labels",
                "fasta": "s3://amber/text/seqs.fa",
                "labels_tsv": "s3://amber/text/labels.tsv",
                "split": split,
            }
        }
    )
    local = parse_config({"data": {"kind": "fasta_labels", "fasta": str(fasta), "labels_tsv": str(labels), "split": split}})
    assert remote.data.fasta == "s3://amber/text/seqs.fa"
    got, expected = load_splits(remote.data, 0), load_splits(local.data, 0)
    for name in ("train", "valid", "test"):
        assert getattr(got, name).names == getattr(expected, name).names
        assert np.array_equal(getattr(got, name).x, getattr(expected, name).x)

    labels.write_text("name\ttf\ns0\tmaybe\n")
    client.upload_file(str(labels), "amber", "text/bad.tsv")
    bad = parse_config(
        {
            "data": {
                "kind": "fasta_labels",
                "fasta": "s3://amber/text/seqs.fa",
                "labels_tsv": "s3://amber/text/bad.tsv",
                "split": split,
            }
        }
    )
    with pytest.raises(AmberInputError) as caught:
        load_splits(bad.data, 0)
    # the file the user named, not the node's staged copy
    assert str(caught.value) == "s3://amber/text/bad.tsv: record s1: has no row for this FASTA sequence"


def run_command(*args: str) -> int:
    """``amber-ray ARGS`` as the console script and the Ray jobs run it: its exit code."""
    from amber_ray.cli import run

    sigterm = signal.getsignal(signal.SIGTERM)  # run() installs its own handler, as the console script does
    try:
        with pytest.raises(SystemExit) as ended:
            run(list(args))
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    return ended.value.code


def s3_objects(prefix: str) -> dict[str, bytes]:
    import boto3

    client = boto3.client("s3")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="amber", Prefix=prefix)
    keys = [entry["Key"] for page in pages for entry in page.get("Contents", [])]
    return {key.removeprefix(prefix): client.get_object(Bucket="amber", Key=key)["Body"].read() for key in keys}


def test_predict_reads_its_model_and_sequences_from_uris_and_writes_its_output_to_one(s3, cache, tmp_path, monkeypatch, capfd):
    """A job's driver on a GPU node holds none of the files: the model directory and the FASTA are staged from S3,
    the outputs are copied to S3 once the command succeeds, and a failed command writes nothing there."""
    import boto3
    import pandas as pd
    from conftest import invoke, tiny_net

    from amber_ray.child import save_child

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = boto3.client("s3")
    final = tmp_path / "final"
    save_child(tiny_net(labels=2, length=40, dropout=0.0), final / "model.pt", {"label_names": ["a", "b"]})
    client.upload_file(str(final / "model.pt"), "amber", "runs/final/model.pt")
    rng = np.random.default_rng(0)
    (tmp_path / "in.fa").write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), 40))}\n" for i in range(6)))
    client.upload_file(str(tmp_path / "in.fa"), "amber", "inputs/in.fa")

    code = run_command("predict", "s3://amber/runs/final", "--fasta=s3://amber/inputs/in.fa", "--out", "s3://amber/pred/one")
    assert code == 0, capfd.readouterr().err[-3000:]
    written = s3_objects("pred/one/")
    assert {"predictions.parquet", "summary.json"} <= set(written), sorted(written)
    local = invoke("predict", final, "--fasta", tmp_path / "in.fa", "--out", tmp_path / "local")
    assert local.exit_code == 0, local.output
    (tmp_path / "got.parquet").write_bytes(written["predictions.parquet"])
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "got.parquet"), pd.read_parquet(tmp_path / "local" / "predictions.parquet")
    )

    (tmp_path / "bad.fa").write_text(">s0\nACGTACGTAC\n")  # shorter than the model's input
    client.upload_file(str(tmp_path / "bad.fa"), "amber", "inputs/bad.fa")
    capfd.readouterr()
    for fasta, fragment in [
        ("s3://amber/inputs/bad.fa", "s3://amber/inputs/bad.fa: record s0"),  # the URI, not the node's staged copy
        ("s3://amber/inputs/missing.fa", "s3://amber/inputs/missing.fa: cannot be read from node"),
    ]:
        assert run_command("predict", "s3://amber/runs/final", "--fasta", fasta, "--out", "s3://amber/pred/bad") == 2
        errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and fragment in errors[0], errors
        assert s3_objects("pred/bad") == {}
