"""Ctrl-C or SIGTERM at any moment of `retrain` or `pipeline`: a clean stop that never looks finished, and a
`--resume` (or the same pipeline command) that ends with the full grid, each trial tracked once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

NAME = "interrupt-test"
SEARCHED = "conv8,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1"
TRIALS = 3  # the searched architecture and two sampled ones, one replicate each
EPOCHS = 10  # long enough that the trials left are still running when the signal has been handled, under load too
RAW = {
    "name": NAME,
    "seed": 3,
    "data": {
        "kind": "simulate",
        "simulate": {"num_sequences": 300, "length": 100, "motifs": ["MA0139.1", "MA0079.5"], "prevalence": 0.4},
        "split": {"valid": 0.2, "test": 0.2},
    },
    "space": {"profile": "small", "first_filters": 8, "stem_channels": 8, "dense_units": 16},
    "search": {"iterations": 2, "archs_per_iteration": 4, "warmup_batch_size": 50, "batch_size": 50, "top_k": 2},
    "train": {"batch_size": 50, "max_epochs": EPOCHS, "patience": EPOCHS},
    "retrain": {"replicates": 1, "sampled": TRIALS - 1, "cpus_per_trial": 1},
}


def trial_epochs(grid: Path) -> list[tuple[int, bool]]:
    """Per trial directory of the Tune grid: the epochs reported so far, and whether its final result is in."""
    trials = []
    for result in grid.glob("train_trial*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip().endswith("}")]
        trials.append((len(lines), any("test_auroc" in line for line in lines)))
    return trials


# The moments of a grid at which the driver is stopped, read from what Tune has written to disk.
MOMENTS: dict[str, Callable[[list[tuple[int, bool]]], bool]] = {
    "before-any-trial-ends": lambda trials: any(epochs for epochs, _ in trials) and not any(done for _, done in trials),
    # two trials run side by side and may end within one poll of each other: any end short of the last counts
    "after-the-first-trials-end": lambda trials: 0 < sum(done for _, done in trials) < TRIALS,
    "during-the-last-trial": lambda trials: sum(done for _, done in trials) == TRIALS - 1,
}


def stop_at(command: list[str], env: dict[str, str], grid: Path, moment: str, signum: int) -> subprocess.CompletedProcess:
    """Run ``command``, send ``signum`` to it once the grid in ``grid`` reaches ``moment``; its exit and output."""
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None and not MOMENTS[moment](trial_epochs(grid)):
        time.sleep(0.005)
    assert driver.poll() is None, f"the command ended before {moment}"
    driver.send_signal(signum)
    stdout, stderr = driver.communicate(timeout=120)
    return subprocess.CompletedProcess(command, driver.returncode, stdout, stderr)


def our_tracebacks(stderr: str) -> list[str]:
    """The tracebacks in ``stderr`` that pass through amber_ray's code. Ray prints tracebacks of its own that are
    no failure of the command (a trial actor's SIGTERM at shutdown, its background syncer copying a state file
    being replaced), which the resumed command survives."""
    lines = [re.sub(r"^\S*\([^)]*pid=\d+\)\S* ?", "", line) for line in stderr.splitlines()]  # Ray's worker prefix
    found, block = [], None
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            block = []
        elif block is not None:
            block.append(line)
            if line and not line[0].isspace():  # the exception's own line ends the traceback
                if any("amber_ray" in frame for frame in block):
                    found.append("\n".join(block))
                block = None
    return found


def registered_versions(client: MlflowClient) -> list:
    try:
        return client.search_model_versions(f"name = '{NAME}'")
    except MlflowException:
        return []


def retrain_run(client: MlflowClient):
    (run,) = client.search_runs([client.get_experiment_by_name(NAME).experiment_id], filter_string="tags.command = 'retrain'")
    return run


def assert_stopped_cleanly(stopped: subprocess.CompletedProcess, signum: int, retrain: Path, store: Path) -> None:
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    assert our_tracebacks(stopped.stderr) == [], stopped.stderr[-3000:]
    assert "resumewith" in "".join(stopped.stderr.split()), stopped.stderr[-3000:]  # however the console wrapped it
    assert sum(done for _, done in trial_epochs(retrain / "tune" / "grid")) < TRIALS  # it was stopped before the end
    assert not (retrain / "final").exists()
    assert not (retrain / "results.parquet").exists()
    client = MlflowClient(f"sqlite:///{store}")
    assert registered_versions(client) == []
    assert retrain_run(client).info.status == "KILLED"


def assert_full_grid_tracked_once(retrain: Path, store: Path) -> None:
    results = pd.read_parquet(retrain / "results.parquet")
    assert len(results) == TRIALS and sorted(results.role) == ["sampled"] * (TRIALS - 1) + ["searched"]
    assert (retrain / "final" / "model.pt").is_file()
    client = MlflowClient(f"sqlite:///{store}")
    assert len(registered_versions(client)) == 1
    parent = retrain_run(client)
    assert parent.info.status == "FINISHED"
    trials = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(trials) == TRIALS
    for run in trials:
        assert run.info.status == "FINISHED"
        for key in ("test_auroc", "test_aupr", "num_params", "epochs"):
            assert len(client.get_metric_history(run.info.run_id, key)) == 1, (key, run.data.tags)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "valid_auroc")]
        assert steps == list(range(int(run.data.metrics["epochs"]))), steps


@pytest.fixture
def cli_env(ray_session) -> dict[str, str]:
    """The test's Ray cluster for the command (no second cluster per command); MLflow as the command chooses."""
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


CASES = [
    pytest.param(moment, signum, id=f"{signal.Signals(signum).name}-{moment}")
    for moment in MOMENTS
    for signum in (signal.SIGINT, signal.SIGTERM)
]


@pytest.mark.slow
@pytest.mark.parametrize(("moment", "signum"), CASES)
def test_retrain_stopped_at_any_moment_resumes_to_the_full_grid(cli_env, tmp_path, moment, signum):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(RAW))
    search = tmp_path / "search"
    search.mkdir()
    (search / "final_architectures.json").write_text(json.dumps({"best": {"arch": SEARCHED, "reward": 0.9}}))
    out = tmp_path / "retrain"
    command = [sys.executable, "-m", "amber_ray.cli", "retrain", str(config), "--search", str(search), "--out", str(out)]

    stopped = stop_at(command, cli_env, out / "tune" / "grid", moment, signum)
    assert_stopped_cleanly(stopped, signum, out, out / "mlflow.db")

    resumed = subprocess.run([*command, "--resume"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert our_tracebacks(resumed.stderr) == [], resumed.stderr[-3000:]
    assert_full_grid_tracked_once(out, out / "mlflow.db")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("moment", "signum"),
    [
        pytest.param("before-any-trial-ends", signal.SIGTERM, id="SIGTERM-before-any-trial-ends"),
        pytest.param("after-the-first-trials-end", signal.SIGINT, id="SIGINT-after-the-first-trials-end"),
        pytest.param("during-the-last-trial", signal.SIGTERM, id="SIGTERM-during-the-last-trial"),
    ],
)
def test_pipeline_stopped_while_retraining_keeps_its_grid_and_continues(cli_env, tmp_path, moment, signum):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(RAW))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "amber_ray.cli", "pipeline", str(config), "--out", str(out)]

    stopped = stop_at(command, cli_env, out / "retrain" / "tune" / "grid", moment, signum)
    assert_stopped_cleanly(stopped, signum, out / "retrain", out / "mlflow.db")
    assert f"stoppedin{out / 'retrain'}" in "".join(stopped.stderr.split()), stopped.stderr[-3000:]
    assert not (out / "report.html").exists()

    again = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert our_tracebacks(again.stderr) == [], again.stderr[-3000:]
    assert_full_grid_tracked_once(out / "retrain", out / "mlflow.db")
    assert (out / "report.html").is_file()
