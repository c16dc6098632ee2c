"""The run directory: a second command is locked out, resume checks the config, a copied directory
resumes into itself, the MLflow store is created whole or not at all, SIGTERM stops cleanly."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, invoke
from mlflow.tracking import MlflowClient

from amber_ray.checkpoint import load_checkpoint, manifest_path
from amber_ray.tracking import RunTracker

SEARCH = {
    "name": "rundir-test",
    "seed": 2,
    "data": {"kind": "simulate", "simulate": {"num_sequences": 240, "length": 64, "motifs": ["MA0139.1"], "prevalence": 0.4}},
    "space": {"profile": "small", "first_filters": 4, "stem_channels": 4, "dense_units": 8},
    "search": {
        "iterations": 2,
        "archs_per_iteration": 3,
        "warmup_batch_size": 60,
        "batch_size": 60,
        "top_k": 2,
        "final_samples": 0,
    },
}
CHECKPOINT = Path("checkpoints") / "search.pt"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory) -> tuple[Path, Path]:
    """A finished two-iteration search, run through the command line: (config, run directory)."""
    root = tmp_path_factory.mktemp("rundir")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(SEARCH))
    out = root / "run"
    result = invoke("search", config, "--out", out)
    assert result.exit_code == 0, result.output
    return config, out


def test_second_command_on_a_locked_run_directory_fails_at_once_naming_the_holder(finished):
    config, out = finished
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                "os.ftruncate(fd, 0); os.write(fd, f'pid {os.getpid()} on a-host: amber-ray search'.encode())\n"
                "print('locked', flush=True); time.sleep(120)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = digest(out / CHECKPOINT)
        started = time.monotonic()
        result = invoke("search", config, "--out", out, "--resume", "--set", "search.iterations=3")
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2, result.output
    assert f"in use by pid {holder.pid} on a-host: amber-ray search" in error_line(result.output)
    assert elapsed < 30
    assert digest(out / CHECKPOINT) == before


def test_resume_with_a_changed_config_names_every_differing_key(finished):
    config, out = finished
    before = digest(out / CHECKPOINT)
    result = invoke(
        "search",
        config,
        "--out",
        out,
        "--resume",
        "--set",
        "seed=7",
        "--set",
        "search.batch_size=30",
        "--set",
        "search.iterations=3",
    )
    assert result.exit_code == 2, result.output
    line = error_line(result.output)
    assert "search.pt" in line and "seed '2' -> '7'" in line and "search.batch_size '60' -> '30'" in line
    assert "search.iterations '" not in line  # a key that may change is not listed as a difference
    assert digest(out / CHECKPOINT) == before


def artifact_files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in (run_dir / "mlartifacts").rglob("*") if p.is_file()}


def cluster_env() -> dict[str, str]:
    """The environment of a command joined to the test cluster."""
    import ray

    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled", "COLUMNS": "400"}


def test_copied_run_directory_resumes_into_itself(finished, tmp_path):
    config, out = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    original_artifacts = artifact_files(out)
    result = subprocess.run(  # a process of its own, as after a real copy (MLflow caches a run's artifact location)
        [
            sys.executable,
            "-m",
            "amber_ray.cli",
            "search",
            str(config),
            "--out",
            str(copy),
            "--resume",
            "--set",
            "search.iterations=3",
        ],
        env=cluster_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert artifact_files(out) == original_artifacts  # the original is untouched
    assert any(name.endswith("architectures/iter_00002.parquet") for name in artifact_files(copy))
    client = MlflowClient(f"sqlite:///{copy}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rundir-test").experiment_id])
    assert run.info.artifact_uri.startswith((copy / "mlartifacts").as_uri())
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "mean_reward")) == [0, 1, 2]


def test_missing_manifest_does_not_call_an_intact_checkpoint_corrupted(finished, tmp_path, caplog):
    _, out = finished
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(out / CHECKPOINT, tmp_path / CHECKPOINT)
    assert not manifest_path(tmp_path / CHECKPOINT).exists()
    with caplog.at_level(logging.WARNING):
        payload = load_checkpoint(tmp_path / CHECKPOINT)
    assert payload["iteration"] == 1
    assert "corrupted" not in caplog.text and "cannot be verified" in caplog.text


def test_interrupted_store_creation_leaves_no_store_and_the_next_command_creates_it(tmp_path, monkeypatch):
    """An interrupt after MLflow created its tables but before its migrations ran."""
    import mlflow.store.db.utils as db_utils

    def interrupted(engine):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(db_utils, "_upgrade_db", interrupted)
        with pytest.raises(KeyboardInterrupt):
            RunTracker.start(tmp_path, "store-test", "search")
    assert not (tmp_path / "mlflow.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    tracker = RunTracker.start(tmp_path, "store-test", "search")
    tracker.finish()
    assert tracker.details()["status"] == "FINISHED"


def test_a_killed_creations_leftover_is_removed(tmp_path):
    leftover = tmp_path / ".mlflow.db.999999999.dead.tmp"  # no such process
    leftover.write_bytes(b"SQLite format 3\x00" + bytes(100))
    RunTracker.start(tmp_path, "store-test", "search").finish()
    assert not leftover.exists() and (tmp_path / "mlflow.db").is_file()


def test_ui_on_a_busy_port_is_an_error(tmp_path):
    RunTracker.start(tmp_path, "ui-test", "search").finish()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("ui", tmp_path, "--port", port)
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in error_line(result.output)


@pytest.mark.parametrize("entry", [["-m", "amber_ray.cli", "search"], [str(REPO / "jobs" / "search.py")]], ids=["cli", "ray-job"])
def test_sigterm_stops_a_command_like_ctrl_c(ray_session, tmp_path, entry):
    """Exit 143 with the search's resume hint, no traceback or Ray stack dump; the checkpoint is kept.
    The Ray job's entrypoint too: ``ray job stop`` sends it SIGTERM."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**SEARCH, "search": {**SEARCH["search"], "iterations": 200}}))
    out = tmp_path / "run"
    command = subprocess.Popen(
        [sys.executable, *entry, str(config), "--out", str(out)],
        env=cluster_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and command.poll() is None:
        if (out / CHECKPOINT).exists() and torch.load(out / CHECKPOINT, weights_only=True)["iteration"] >= 0:
            break
        time.sleep(0.2)
    assert command.poll() is None, command.communicate()
    command.send_signal(signal.SIGTERM)
    _, stderr = command.communicate(timeout=120)
    assert command.returncode == 143, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr and "*** SIG" not in stderr, stderr
    assert "resume with" in stderr
    assert load_checkpoint(out / CHECKPOINT)["iteration"] >= 0


def test_retrain_resume_with_a_changed_config_names_every_differing_key(tmp_path):
    """The retraining keeps its config beside its MLflow run id; a resume may change only where trials run."""
    from amber_ray.config import ExperimentConfig
    from amber_ray.errors import AmberInputError
    from amber_ray.retrain import check_retrain_resume, parent_run

    config = ExperimentConfig(name="resume-check")
    parent_run(tmp_path, config, resume=False).finish()
    changed = config.model_copy(update={"seed": 7, "retrain": config.retrain.model_copy(update={"replicates": 2})})
    with pytest.raises(AmberInputError) as error:
        check_retrain_resume(tmp_path, changed)
    message = str(error.value)
    assert "seed '0' -> '7'" in message and "retrain.replicates '6' -> '2'" in message and "config.json" in message
    safe = config.model_copy(update={"retrain": config.retrain.model_copy(update={"max_failures": 4, "cpus_per_trial": 2.0})})
    search_only = safe.model_copy(update={"search": safe.search.model_copy(update={"iterations": 5})})
    check_retrain_resume(tmp_path, search_only)
    assert parent_run(tmp_path, search_only, resume=True).run_id
