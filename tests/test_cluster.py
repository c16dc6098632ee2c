"""cluster.yaml validates against the autoscaler schema shipped in the ray package, offline."""

import json
import tomllib
from pathlib import Path

import jsonschema
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_yaml_matches_the_ray_autoscaler_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["max_workers"] > 1 and workers["resources"]["GPU"] >= 1
    assert config["available_node_types"][config["head_node_type"]]["resources"].get("GPU", 0) == 0
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    # Shared storage: workers may reach the bucket the MLflow server keeps its artifacts in.
    assert workers["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")
    assert "--artifacts-destination s3://" in " ".join(config["head_setup_commands"])


def test_cluster_yaml_installs_on_python_311_and_keeps_nothing_on_the_head():
    """What a cloud cluster needs of it: an image whose Python the package supports, the torch CUDA
    wheel and a GPU check, a head that may pass the worker profile, the MLflow store off the head,
    every node's tracking URI, and only what git keeps synced."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == ">=3.11" and config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    setup = " ".join(config["setup_commands"])
    assert "download.pytorch.org/whl/cu" in setup and "pip install --quiet -e /home/ray/amber_ray" in setup
    assert config["file_mounts"] == {"/home/ray/amber_ray": "."}
    assert "torch.cuda.is_available()" in " ".join(config["worker_setup_commands"])
    head = config["available_node_types"][config["head_node_type"]]
    assert head["node_config"]["IamInstanceProfile"]["Arn"].endswith("instance-profile/amber-ray-head")
    server = " ".join(config["head_setup_commands"])
    assert "--backend-store-uri postgresql://" in server and "sqlite" not in server
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in " ".join(config["worker_start_ray_commands"])
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in " ".join(config["head_start_ray_commands"])
    assert "get-head-ip" not in yaml.safe_dump(config)  # needs a cluster config file, which nodes do not have
    assert config["rsync_filter"] == [".gitignore"] and "**/.git" in config["rsync_exclude"]


def test_cluster_yaml_passes_the_launchers_own_validation():
    """``ray up`` fills in the provider's defaults and validates the result the same way."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(yaml.safe_load((ROOT / "cluster.yaml").read_text())))


def test_the_node_types_of_cluster_yaml_decide_what_can_ever_run():
    from amber_ray.cluster import NodeKind, node_types_from_config

    (gpu_worker,) = node_types_from_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    assert gpu_worker == NodeKind("gpu_worker", {"CPU": 8.0, "GPU": 1.0}, 8)
    assert gpu_worker.holds({"CPU": 1, "GPU": 0.5}) == 2 and gpu_worker.holds({"CPU": 1, "GPU": 1}) == 1
    assert gpu_worker.holds({"GPU": 2}) == 0  # more GPUs per worker than any node has: refused at once
    assert gpu_worker.describe() == "gpu_worker (CPU 8, GPU 1, up to 8)"
