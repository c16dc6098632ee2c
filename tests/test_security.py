"""Nothing exposed: loopback services, no code run from user files, no names that escape the run directory."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from amber_ray.checkpoint import load_checkpoint, manifest_path, sha256_of
from amber_ray.cli import app
from amber_ray.config import load_config, parse_config
from amber_ray.errors import AmberInputError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("amber_ray", "jobs", "benchmarks") for p in (ROOT / folder).rglob("*.py"))
# Readers that run code from the file they read (or can be told to).
UNSAFE_CALLS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("dill", "load"),
    ("joblib", "load"),
    ("pd", "read_pickle"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
    ("marshal", "loads"),
    ("shelve", "open"),
}


def calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_reader_that_can_run_code_from_a_file(path):
    for call in calls(ast.parse(path.read_text())):
        owner = call.func.value.id if isinstance(call.func.value, ast.Name) else None
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        assert (owner, call.func.attr) not in UNSAFE_CALLS, where
        if (owner, call.func.attr) == ("torch", "load"):
            flag = keyword(call, "weights_only")
            assert isinstance(flag, ast.Constant) and flag.value is True, f"{where}: torch.load without weights_only=True"
        if call.func.attr == "load" and owner in {"np", "numpy"}:
            flag = keyword(call, "allow_pickle")
            assert flag is None or (isinstance(flag, ast.Constant) and flag.value is False), where


class RunsCode:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_bomb_search_checkpoint_is_refused(tmp_path):
    """Even with a manifest that vouches for it, a checkpoint holding code is not loaded."""
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoints" / "search.pt"
    path.parent.mkdir()
    torch.save({"iteration": 3, "controller": RunsCode(marker)}, path)
    manifest_path(path).write_text(f"{sha256_of(path)}  search.pt\n")
    with pytest.raises(AmberInputError, match="no usable search checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_pickle_bomb_model_file_is_refused(tmp_path):
    from amber_ray.child import load_child

    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {}, "space": RunsCode(marker)}, path)
    with pytest.raises(AmberInputError):
        load_child(path)
    assert not marker.exists()


def test_yaml_configs_cannot_build_python_objects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AmberInputError, match="not valid YAML"):
        load_config(ROOT / "tests" / "data" / "bad" / "configs" / "python_object.yaml")
    assert not (tmp_path / "unsafe-yaml-ran.txt").exists()


# --- services bind 127.0.0.1 unless the user asks -------------------------------------------------


def test_mlflow_ui_binds_loopback_unless_another_host_is_passed(tmp_path, monkeypatch):
    from amber_ray import ui

    commands: list[list[str]] = []

    class FakeServer:
        def __init__(self, command, env):
            commands.append(command)

        def wait(self):
            return 0

    monkeypatch.setattr(ui.subprocess, "Popen", FakeServer)
    (tmp_path / "mlflow.db").touch()
    for extra in ([], ["--host", "0.0.0.0"]):
        result = CliRunner().invoke(app, ["ui", str(tmp_path), *extra])
        assert result.exit_code == 0, result.output
    hosts = [command[command.index("--host") + 1] for command in commands]
    assert hosts == ["127.0.0.1", "0.0.0.0"]


LOCAL_RAY_SCRIPT = textwrap.dedent(
    """
    import json, os, time
    from pathlib import Path

    import amber_ray.cli  # the command's module: importing it must leave RAY_AUTH_MODE alone too
    import ray
    from amber_ray import cluster

    before = os.environ.get("RAY_AUTH_MODE")
    cluster.connect()
    after = os.environ.get("RAY_AUTH_MODE")

    def descendants(pid):
        children = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                pass
        found, todo = [], [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    commands = []
    for pid in descendants(os.getpid()):
        try:
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\\0", b" ").decode().strip())
        except OSError:
            pass

    @ray.remote
    def shout():
        print("PRINTED-BY-A-RAY-TASK", flush=True)
        return 1

    ray.get(shout.remote())
    time.sleep(2)  # the log monitor forwards worker output within about a second when log_to_driver is on
    token = (Path.home() / ".ray" / "auth_token").is_file()
    print(json.dumps({"before": before, "after": after, "token": token, "commands": commands}))
    ray.shutdown()
    """
)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory) -> dict:
    """``cluster.connect()`` for real in a fresh process with no RAY_ADDRESS and no RAY_AUTH_MODE (home in a
    temporary folder, where Ray writes its token): the setting as Ray saw it, the processes it started, its output."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    result = subprocess.run(
        [sys.executable, "-c", LOCAL_RAY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["output"] = result.stdout + result.stderr
    return report


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="lists processes through /proc (Linux)")
def test_a_local_ray_is_started_without_dashboard(local_ray):
    """The local Ray's dashboard process serves no web UI and loads no API modules (job submission, state),
    and worker output stays in Ray's log files."""
    dashboards = [c.split() for c in local_ray["commands"] if "dashboard/dashboard.py" in c]
    assert len(dashboards) == 1, local_ray["commands"]
    assert "--disable-frontend" in dashboards[0] and "--modules-to-load=UsageStatsHead" in dashboards[0], dashboards[0]
    assert "--host=127.0.0.1" in dashboards[0]
    assert "PRINTED-BY-A-RAY-TASK" not in local_ray["output"]


def test_the_command_leaves_ray_token_authentication_alone(local_ray):
    """Ray's internal ports listen on every interface: with RAY_AUTH_MODE unset, importing the command and
    starting a local Ray through it ends with Ray's default, token authentication, and a token written."""
    assert local_ray["before"] is None
    assert local_ray["after"] == "token" and local_ray["token"]


def test_documented_ray_and_mlflow_commands_bind_loopback():
    readme = (ROOT / "README.md").read_text()
    for line in re.findall(r"^ray start --head.*$", readme, flags=re.MULTILINE):
        assert "--dashboard-host 127.0.0.1" in line or "--dashboard-host=127.0.0.1" in line, line
    for line in re.findall(r"^.*(?:mlflow (?:ui|server)|amber-ray ui).*$", readme, flags=re.MULTILINE):
        assert "0.0.0.0" not in line, line


# --- names cannot escape the run directory ---------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped", "a/b", "..", ""])
def test_experiment_names_that_are_paths_are_rejected(name):
    with pytest.raises(AmberInputError, match="config key 'name'"):
        parse_config({"name": name})


def test_artifact_names_cannot_leave_the_run(tmp_path):
    from amber_ray.tracking import RunTracker

    run = tmp_path / "a" / "run"
    tracker = RunTracker.start(run, "traversal", "search")
    table = pd.DataFrame({"x": [1]})
    for name in ("../../../escaped.parquet", "architectures/../../../../escaped.parquet", str(tmp_path / "abs.parquet")):
        with pytest.raises(Exception, match="Invalid artifact path"):
            tracker.log_table(table, name)
    tracker.finish()
    assert sorted(p.name for p in tmp_path.rglob("*.parquet")) == []


def test_label_names_that_look_like_paths_write_nothing_outside_the_output(tmp_path):
    """Label names come from the user's TSV header; a model trained on them keeps every file in --out."""
    bad = ROOT / "tests" / "data" / "bad" / "labels"
    config = tmp_path / "work" / "config.yaml"
    config.parent.mkdir()
    config.write_text(
        json.dumps(
            {
                "data": {
                    "kind": "fasta_labels",
                    "fasta": str(bad / "sequences.fa"),
                    "labels_tsv": str(bad / "traversal_label.tsv"),
                    "split": {"valid": 0.25, "test": 0.25},
                },
                "space": {"first_filters": 4, "stem_channels": 4, "dense_units": 8},
                "train": {"batch_size": 4, "max_epochs": 1},
            }
        )
    )
    before = set(tmp_path.rglob("*"))
    out = tmp_path / "work" / "out"
    arch = "conv8,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1"
    result = CliRunner().invoke(app, ["train", str(config), "--arch", arch, "--out", str(out)])
    assert result.exit_code == 0, result.output
    created = set(tmp_path.rglob("*")) - before
    assert created and all(path == out or out in path.parents for path in created), sorted(created)
    assert "../../escaped" in json.loads((out / "metrics.json").read_text())["test"]["per_label_auroc"]


def test_an_edited_final_architectures_file_is_checked_before_it_names_anything(tmp_path):
    from amber_ray.retrain import build_grid
    from amber_ray.space import ModelSpace

    config = parse_config({})
    space = ModelSpace.from_config(config.space, 200, 2)
    path = tmp_path / "final_architectures.json"
    escape = "../../x,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1"
    for best, problem in [(escape, "op '../../x' is not in the space"), (None, "not the final_architectures.json")]:
        path.write_text(json.dumps({"best": {"arch": best} if best else [], "greedy": {"arch": best}}))
        with pytest.raises(AmberInputError, match=re.escape(problem)):
            build_grid(config, tmp_path, space)
