"""What a cluster cannot do is refused at the start of a search, naming the config keys, before any search runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENV = {key: value for key, value in os.environ.items() if key != "RAY_FAKE_CLUSTER"}
ENV.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})

# A head and a second node (one with a GPU as a Ray resource): a cluster of several nodes.
TWO_NODE_SCRIPT = textwrap.dedent(
    """
    import json, sys, ray
    from ray.cluster_utils import Cluster
    from amber_ray.config import parse_config
    from amber_ray.data import load_splits
    from amber_ray.errors import AmberInputError
    from amber_ray.search.loop import SearchDriver

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=2, num_gpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    base = {
        "data": {"simulate": {"num_sequences": 200, "length": 64, "motifs": ["MA0079.5"]}},
        "space": {"first_filters": 4, "stem_channels": 4, "dense_units": 8},
    }
    cases = {
        "no_storage": {},
        "shared_gpu": {"storage": sys.argv[1] + "/shared", "search": {"workers": 2, "gpus_per_worker": 0.5}},
    }
    errors = {}
    for name, extra in cases.items():
        config = parse_config({**base, **extra})
        try:
            SearchDriver(config, sys.argv[1] + "/" + name, load_splits(config.data, 0)).close()
            errors[name] = None
        except AmberInputError as caught:
            errors[name] = str(caught)
    print(json.dumps(errors))
    ray.shutdown()
    cluster.shutdown()
    """
)


@pytest.mark.slow  # a two-node Ray cluster of its own
def test_a_multi_node_search_without_storage_or_with_shared_nccl_gpus_is_refused_before_it_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", TWO_NODE_SCRIPT, str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert errors["no_storage"] is not None and errors["no_storage"].startswith("config key 'storage' is not set")
    assert "'search.gpus_per_worker' is 0.5 with 'search.workers' 2" in errors["shared_gpu"]
    assert "NCCL refuses two ranks on one device" in errors["shared_gpu"]
    assert not any(tmp_path.rglob("*.pt"))  # and no search ran
