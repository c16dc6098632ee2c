"""Retraining with Ray Tune: the grid, results.parquet, MLflow nested runs, and resume after a kill."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from amber_ray.cli import app
from amber_ray.compare import compare_results
from amber_ray.config import parse_config
from amber_ray.data import load_splits
from amber_ray.retrain import run_retrain

SEARCHED = "conv8,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1"
RAW = {
    "name": "retrain-test",
    "seed": 1,
    "data": {
        "kind": "simulate",
        "simulate": {"num_sequences": 600, "length": 100, "motifs": ["MA0139.1", "MA0079.5"], "prevalence": 0.4},
        "split": {"valid": 0.2, "test": 0.2},
    },
    "space": {"profile": "small", "first_filters": 8, "stem_channels": 8, "dense_units": 16},
    "train": {"batch_size": 50, "max_epochs": 3, "patience": 5},
    "retrain": {"replicates": 2, "sampled": 2},
}


def search_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "search"
    directory.mkdir()
    final = {"best": {"arch": SEARCHED, "reward": 0.9}, "greedy": {"arch": SEARCHED}, "top_k": []}
    (directory / "final_architectures.json").write_text(json.dumps(final))
    return directory


def trial_runs(out: Path) -> list:
    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    experiment = client.get_experiment_by_name("retrain-test")
    runs = client.search_runs([experiment.experiment_id])
    return client, [run for run in runs if "role" in run.data.tags]


def rescore(model_file: str, test) -> tuple[float, int]:
    """Mean test AUROC over labels (sklearn) and parameter count of a saved model."""
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from amber_ray.child import load_child

    net, _ = load_child(model_file)
    net.eval()
    with torch.no_grad():
        probs = torch.sigmoid(net(torch.as_tensor(test.x, dtype=torch.float32))).numpy()
    auroc = np.mean([roc_auc_score(test.y[:, label], probs[:, label]) for label in range(test.y.shape[1])])
    return float(auroc), sum(p.numel() for p in net.parameters())


def test_grid_results_and_nested_mlflow_runs(ray_session, tmp_path, monkeypatch):
    out = tmp_path / "retrain"
    results = run_retrain(parse_config(RAW), search_dir(tmp_path), out)
    assert len(results) == 6 and results[["arch", "replicate"]].drop_duplicates().shape[0] == 6
    assert (results.role == "searched").sum() == 2 and set(results[results.role == "searched"].arch) == {SEARCHED}
    assert {"auroc.MA0139.1_CTCF", "aupr.MA0079.5_SP1", "epochs", "wall_seconds"} <= set(results.columns)
    assert "test_labels_skipped" not in results.columns  # a count, not a metric to compare
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), results)

    client, runs = trial_runs(out)
    assert len(runs) == 6
    test = load_splits(parse_config(RAW).data, RAW["seed"]).test
    keys = sorted((run.data.tags["role"], run.data.tags["arch"], int(run.data.tags["replicate"])) for run in runs)
    assert keys == sorted(zip(results.role, results.arch, results.replicate))
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/best_model.pt"]
        # known answers: the logged model, scored here on the seeded test split, gives the reported figures
        row = results[
            (results.role == run.data.tags["role"])
            & (results.replicate == int(run.data.tags["replicate"]))
            & (results.arch == run.data.tags["arch"])
        ].iloc[0]
        model_file = client.download_artifacts(run.info.run_id, "model/best_model.pt", str(tmp_path / run.info.run_id))
        expected_auroc, params = rescore(model_file, test)
        assert row.test_auroc == pytest.approx(expected_auroc, abs=1e-6)
        assert run.data.metrics["test_auroc"] == pytest.approx(expected_auroc, abs=1e-6)
        assert row.num_params == params
    comparison = compare_results(results)
    assert comparison["trials"] == {"searched": 2, "sampled": 4}

    # `amber-ray compare` on this grid: compare.json and the retraining run's metrics hold the same comparison
    result = CliRunner().invoke(app, ["compare", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "compare.json").read_text())
    assert written["trials"] == comparison["trials"]
    assert written["params_vs_auroc"]["spearman_rho"] == pytest.approx(comparison["params_vs_auroc"]["spearman_rho"])
    parent = client.get_run((out / "mlflow_run_id").read_text().strip())
    assert parent.data.metrics["params_vs_auroc_spearman"] == pytest.approx(comparison["params_vs_auroc"]["spearman_rho"])
    # the pipeline's layout (`amber-ray compare DEMO/retrain` after the demo): one store, in the directory above
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (out / "mlflow.db").rename(tmp_path / "mlflow.db")
    result = CliRunner().invoke(app, ["compare", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "mlflow.db").exists()  # no empty store made beside it
    above = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert len(above.get_metric_history(parent.info.run_id, "params_vs_auroc_spearman")) == 2  # logged by both compares
    # its output name taken by a directory: a one-line error, not a traceback after the work
    (out / "compare.json").unlink()
    (out / "compare.json").mkdir()
    result = CliRunner().invoke(app, ["compare", str(out)])
    assert result.exit_code == 2 and "compare.json: is a directory" in result.output, result.output
    assert "Traceback" not in result.output


def test_grid_trains_on_hdf5_files(ray_session, tmp_path):
    """`data.kind: hdf5` through the Tune grid: trials get the training file's handle and validation and test as
    base codes (through Ray's object store, read-only); the reported test AUROC is that of the trial's model
    on the one-hot test split in memory."""
    from amber_ray.data import write_hdf5

    splits = load_splits(parse_config(RAW).data, RAW["seed"])
    for split in ("train", "valid", "test"):
        write_hdf5(getattr(splits, split), tmp_path / "data" / f"{split}.h5", chunk_size=64)
    raw = {**RAW, "data": {"kind": "hdf5", "hdf5_dir": str(tmp_path / "data")}, "retrain": {"replicates": 1, "sampled": 1}}
    results = run_retrain(parse_config(raw), search_dir(tmp_path), tmp_path / "retrain")
    assert len(results) == 2 and set(results.role) == {"searched", "sampled"}
    client, runs = trial_runs(tmp_path / "retrain")
    for run in runs:
        model_file = client.download_artifacts(run.info.run_id, "model/best_model.pt", str(tmp_path / run.info.run_id))
        assert run.data.metrics["test_auroc"] == pytest.approx(rescore(model_file, splits.test)[0], abs=1e-6)


def reports(trial_dir: Path) -> list[dict]:
    lines = (trial_dir / "result.json").read_text().splitlines() if (trial_dir / "result.json").exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def epochs_reported(trial_dir: Path) -> list[int]:
    return [report["epoch"] for report in reports(trial_dir)]


def checkpointed_epochs_in_saved_state(grid: Path) -> dict[str, int] | None:
    """Each trial's last checkpointed epoch as Tune's saved experiment state in ``grid`` records it; None while no
    whole state is there yet. Tune registers a reported checkpoint a step after the report, so this reads the
    trials' checkpoint managers (Tune's own decoder, private) rather than their last results."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    states = sorted(grid.glob("experiment_state-*.json"))
    if not states:
        return None
    try:
        state = json.loads(states[-1].read_bytes())
        for searcher in grid.glob("basic-variant-state-*.json"):
            pickle.loads(searcher.read_bytes())
    except (ValueError, EOFError, pickle.UnpicklingError):  # still being copied into the grid
        return None
    recorded = {}
    for _, runtime in state["trial_data"]:
        metadata = _TrainingRunMetadata.from_json_state(runtime)
        latest = metadata.checkpoint_manager and metadata.checkpoint_manager.latest_checkpoint_result
        if latest is not None:
            recorded[metadata.last_result["trial_id"]] = latest.metrics["epoch"]
    return recorded


def state_saved_after_last_report(grid: Path) -> bool:
    """Whether Tune's saved experiment state holds a checkpoint of every trial's last reported epoch. The state
    reaches the grid by a background copy, so its file time says nothing of what it holds: its contents are read."""
    recorded = checkpointed_epochs_in_saved_state(grid)
    if recorded is None:
        return False
    last_reports = [trial[-1] for trial in map(reports, grid.glob("train_trial*")) if trial]
    return all(recorded.get(report["trial_id"]) == report["epoch"] for report in last_reports)


def test_interrupted_grid_resumes_without_rerunning_anything(ray_session, tmp_path):
    """The interrupted grid is a pipeline's (its store in the directory above, as `amber-ray pipeline` keeps it);
    `amber-ray retrain --resume` on its own finds its runs there."""
    import ray

    raw = {**RAW, "train": {**RAW["train"], "max_epochs": 6}, "retrain": {"replicates": 2, "sampled": 1, "cpus_per_trial": 1}}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "retrain"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "amber_ray.cli", "retrain", str(config_file), "--search", str(search_dir(tmp_path))]
    command += ["--out", str(out)]
    driver = subprocess.Popen(
        command,
        env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    grid = out / "tune" / "grid"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        trials = [epochs_reported(d) for d in grid.glob("train_trial*")]
        # Kill once one trial is done and another half way, and the saved experiment state holds every epoch
        # reported: an epoch reported after the state was saved is, by Tune's design, run again on resume.
        if any(len(e) == 6 for e in trials) and any(0 < len(e) < 6 for e in trials) and state_saved_after_last_report(grid):
            break
        time.sleep(0.005)
    assert driver.poll() is None, "the grid ended before it could be interrupted"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(1.0)

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(pd.read_parquet(out / "results.parquet")) == 4
    for trial_dir in (out / "tune" / "grid").glob("train_trial*"):
        reported = epochs_reported(trial_dir)
        assert reported.count(0) == 1, f"{trial_dir.name} was restarted from scratch: {reported}"
    assert not (out / "mlflow.db").exists()  # no empty store beside it: the runs are in the pipeline's
    client, runs = trial_runs(tmp_path)
    assert len(runs) == 4
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "valid_auroc")]
        assert sorted(steps) == list(range(int(run.data.metrics["epochs"]))), steps


def test_a_grid_resumes_from_storage_after_its_out_is_lost(ray_session, tmp_path, monkeypatch):
    """A replaced head: the retraining's --out is gone, its config and run id come back from ``storage`` (here a
    directory every node mounts), and the resume continues the same MLflow run in the store that outlived it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    raw = {
        **RAW,
        "train": {**RAW["train"], "max_epochs": 2},
        "retrain": {"replicates": 1, "sampled": 1},
        "storage": str(tmp_path / "bucket"),
    }
    config, out = parse_config(raw), tmp_path / "retrain"
    first = run_retrain(config, search_dir(tmp_path), out)
    run_id = (out / "mlflow_run_id").read_text()
    shutil.rmtree(out)

    again = run_retrain(config, tmp_path / "search", out, resume=True)
    pd.testing.assert_frame_equal(again, first)
    assert (out / "mlflow_run_id").read_text() == run_id and (out / "config.json").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("retrain-test").experiment_id])
    assert [run.info.run_id for run in runs if run.data.tags.get("command") == "retrain"] == [run_id]  # continued, not a new one
    assert sum("role" in run.data.tags for run in runs) == 2


def test_resume_without_a_grid_is_a_clear_error(ray_session, tmp_path):
    from amber_ray.errors import AmberInputError

    with pytest.raises(AmberInputError, match="no retraining grid to resume"):
        run_retrain(parse_config(RAW), search_dir(tmp_path), tmp_path / "none", resume=True)


def test_resume_from_a_cut_off_grid_state_is_a_clear_error(tmp_path):
    """A driver killed while Tune copied its experiment state leaves the newest state empty: resume names it."""
    from amber_ray.errors import AmberInputError

    grid = tmp_path / "out" / "tune" / "grid"
    grid.mkdir(parents=True)
    (grid / "tuner.pkl").write_bytes(pickle.dumps({}))
    (grid / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (grid / "experiment_state-2026-01-01_00-10-00.json").write_text("")
    with pytest.raises(AmberInputError, match="saved state is incomplete") as error:
        run_retrain(parse_config(RAW), tmp_path / "search", tmp_path / "out", resume=True)
    assert error.value.source.endswith("experiment_state-2026-01-01_00-10-00.json")


def test_train_command_and_a_one_replicate_trial_give_identical_weights(ray_session, tmp_path):
    """`amber-ray train` and replicate 0 of a retraining trial run one epoch loop with one seeding."""
    import torch

    from amber_ray.outputs import BEST_MODEL, MODEL, tune_grid
    from amber_ray.training import train_architecture

    raw = {**RAW, "train": {**RAW["train"], "threads": 1}, "retrain": {"replicates": 1, "sampled": 0, "cpus_per_trial": 1}}
    config = parse_config(raw)
    results = run_retrain(config, search_dir(tmp_path), tmp_path / "retrain", archs=[("searched", SEARCHED)])
    threads = torch.get_num_threads()
    try:
        metrics = train_architecture(config, SEARCHED, tmp_path / "train")
    finally:
        torch.set_num_threads(threads)
    (trial_model,) = sorted(tune_grid(tmp_path / "retrain").glob(f"train_trial*/checkpoint_*/{BEST_MODEL}"))[-1:]
    trained = torch.load(tmp_path / "train" / MODEL, weights_only=True)["state_dict"]
    retrained = torch.load(trial_model, weights_only=True)["state_dict"]
    assert trained.keys() == retrained.keys()
    for key in trained:
        assert torch.equal(trained[key], retrained[key]), key
    assert results.test_auroc[0] == metrics["test"]["auroc"] and results.epochs[0] == metrics["epochs"]


def test_train_streams_an_hdf5_training_file(tmp_path, monkeypatch):
    """With `data.kind: hdf5` the training set reaches `fit` as the opened file, read batch by batch; validation
    and test stay base codes (1 byte per base), and score as their one-hot data does."""
    from amber_ray import training
    from amber_ray.child import load_child
    from amber_ray.data import CodedDataset, HDF5SequenceFile, write_hdf5
    from amber_ray.outputs import MODEL

    splits = load_splits(parse_config(RAW).data, RAW["seed"])
    for split in ("train", "valid", "test"):
        write_hdf5(getattr(splits, split), tmp_path / "data" / f"{split}.h5", chunk_size=32)
    config = parse_config(
        {**RAW, "data": {"kind": "hdf5", "hdf5_dir": str(tmp_path / "data")}, "train": {**RAW["train"], "threads": 1}}
    )
    given, real_fit = [], training.fit

    def recording_fit(model, train, valid, *args, **options):
        given.extend([train, valid])
        return real_fit(model, train, valid, *args, **options)

    monkeypatch.setattr(training, "fit", recording_fit)
    losses = []
    metrics = training.train_architecture(
        config, SEARCHED, tmp_path / "out", lambda state: losses.append(state.record["train_loss"])
    )
    assert len(given) == 2 and isinstance(given[0], HDF5SequenceFile)
    assert isinstance(given[1], CodedDataset) and given[1].codes.dtype == np.uint8
    assert metrics["split"]["train"] == splits.train.num_sequences and metrics["epochs"] == len(losses) == 3
    assert losses[-1] < losses[0]  # the model learns from the streamed batches
    model, _ = load_child(tmp_path / "out" / MODEL)
    assert metrics["test"] == training.evaluate(model, splits.test)  # the test set as one-hot floats in memory


def test_a_retraining_that_raises_marks_its_run_failed(ray_session, tmp_path, monkeypatch):
    """Whatever stops the grid, the retraining's MLflow run does not stay RUNNING."""
    from ray import tune

    def broken_fit(self):
        raise RuntimeError("the grid broke")

    monkeypatch.setattr(tune.Tuner, "fit", broken_fit)
    out = tmp_path / "retrain"
    with pytest.raises(RuntimeError, match="the grid broke"):
        run_retrain(parse_config(RAW), search_dir(tmp_path), out)
    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    run = client.get_run((out / "mlflow_run_id").read_text())
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert not (out / "results.parquet").exists()


def searched_with(tmp_path: Path, raw: dict) -> Path:
    """A search directory whose checkpoint records ``raw`` as the search's config."""
    from amber_ray.checkpoint import CONFIG_KEY, save_checkpoint
    from amber_ray.outputs import search_checkpoint

    directory = search_dir(tmp_path)
    save_checkpoint({"iteration": 0, CONFIG_KEY: parse_config(raw).model_dump(mode="json")}, search_checkpoint(directory))
    return directory


def test_retrain_refuses_a_search_made_with_other_data_or_space_unless_forced(ray_session, tmp_path):
    """Searched and sampled are comparable only on the search's data and space: another `first_filters` or
    simulated prevalence is refused by name (exit 2, nothing written); `--force` retrains and tags the run with it."""
    raw = {**RAW, "train": {**RAW["train"], "max_epochs": 1}, "retrain": {"replicates": 1, "sampled": 0}}
    simulate = {**raw["data"]["simulate"], "prevalence": 0.3}
    search_raw = {**raw, "space": {**raw["space"], "first_filters": 16}, "data": {**raw["data"], "simulate": simulate}}
    search = searched_with(tmp_path, {**search_raw, "train": {"max_epochs": 7}})  # train.* is no search setting
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "retrain"
    command = ["retrain", str(config_file), "--search", str(search), "--out", str(out)]

    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 2, refused.output
    message = " ".join(refused.output.split())
    assert "data.simulate.prevalence" in message and "space.first_filters '16' -> '8'" in message and "--force" in message, (
        message
    )
    assert "train.max_epochs" not in message
    assert not out.exists()

    forced = CliRunner().invoke(app, [*command, "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(pd.read_parquet(out / "results.parquet")) == 1
    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    tag = client.get_run((out / "mlflow_run_id").read_text()).data.tags["search_config_differs"]
    assert "data.simulate.prevalence" in tag and "space.first_filters" in tag and "train." not in tag

    from amber_ray.retrain import search_config_conflicts

    (tmp_path / "same").mkdir()  # the search's own config: no question asked
    assert search_config_conflicts(parse_config(raw), searched_with(tmp_path / "same", raw)) == []


def test_the_pipeline_retrains_random_searchs_choice_beside_the_searched_and_sampled_ones(ray_session, tmp_path, monkeypatch):
    """``retrain.random_search``: a random search of the same budget into search-random/, its choice in the grid
    (role random_search) and in the comparison; a resumed pipeline runs neither search again."""
    from amber_ray.pipeline import run_pipeline

    out = tmp_path / "run"
    # The pipeline's own store, set here so that it is unset again after the test (the pipeline sets it for the process).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{out}/mlflow.db")

    raw = {
        **RAW,
        "train": {**RAW["train"], "max_epochs": 2},
        "search": {"iterations": 2, "archs_per_iteration": 4, "valid_max_sequences": 100, "final_samples": 0},
        "retrain": {"replicates": 1, "sampled": 2, "random_search": True},
    }
    result = run_pipeline(parse_config(raw), out)
    searches = {name: json.loads((out / name / "final_architectures.json").read_text()) for name in ("search", "search-random")}
    assert searches["search"]["strategy"] == "enas" and searches["search-random"]["strategy"] == "random"
    chosen = searches["search-random"]["best"]["arch"]
    results = pd.read_parquet(out / "retrain" / "results.parquet")
    roles = results.groupby("role").arch.apply(list).to_dict()
    assert roles == {"searched": [searches["search"]["best"]["arch"]], "random_search": [chosen], "sampled": roles["sampled"]}
    assert len(roles["sampled"]) == 2
    random_row = results[results.role == "random_search"].iloc[0]
    sampled = results[results.role == "sampled"].test_auroc.to_numpy()
    expected_percentile = 100 * ((sampled < random_row.test_auroc).sum() + 0.5 * (sampled == random_row.test_auroc).sum()) / 2
    assert result.comparison["random_search"]["arch"] == chosen
    assert result.comparison["random_search"]["mean"] == random_row.test_auroc
    assert result.comparison["random_search"]["percentile"] == expected_percentile
    searched_row = results[results.role == "searched"].iloc[0]
    assert result.comparison["random_search"]["searched_minus_random"] == [
        {"arch": searched_row.arch, "difference": searched_row.test_auroc - random_row.test_auroc}
    ]
    assert "Random search (the same budget" in result.report.read_text()
    assert json.loads((out / "pipeline.json").read_text())["finished"] == ["random_search", "search", "retrain"]

    written = (out / "search-random" / "final_architectures.json").stat().st_mtime_ns
    run_pipeline(parse_config(raw), out)  # resumed: every step finished, nothing runs again
    assert (out / "search-random" / "final_architectures.json").stat().st_mtime_ns == written
