"""cluster.yaml validates against the autoscaler schema shipped in the ray package, offline."""

import json
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
    assert any("pip install" in command and "-e ~/amber_ray" in command for command in config["setup_commands"])
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    # Shared storage: workers may reach the bucket the MLflow server keeps its artifacts in.
    assert workers["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")
    assert "--artifacts-destination s3://" in " ".join(config["head_setup_commands"])


def test_the_node_types_of_cluster_yaml_decide_what_can_ever_run():
    from amber_ray.cluster import NodeKind, node_types_from_config

    (gpu_worker,) = node_types_from_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    assert gpu_worker == NodeKind("gpu_worker", {"CPU": 8.0, "GPU": 1.0}, 8)
    assert gpu_worker.holds({"CPU": 1, "GPU": 0.5}) == 2 and gpu_worker.holds({"CPU": 1, "GPU": 1}) == 1
    assert gpu_worker.holds({"GPU": 2}) == 0  # more GPUs per worker than any node has: refused at once
    assert gpu_worker.describe() == "gpu_worker (CPU 8, GPU 1, up to 8)"
