"""One Ray session for the whole test run (2 CPUs, no dashboard); tests kill the actors they create."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from amber_ray.child import ChildNet
from amber_ray.space import Architecture, ModelSpace

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
PROMOTER_DATA = REPO / "data" / "promoters"  # in the repository (MIT; data/promoters/MANIFEST.md)
# Real data under other licences (the dsQTL pairs, GPL-3.0) stays out of the repository: tests that
# need it read it from ../shared/data when present and skip otherwise.
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def ray_session():
    import ray

    # address="local": a session of its own, never a cluster that a cluster test (or anything else) left running here.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def promoter_fastas() -> tuple[Path, Path]:
    """The Arabidopsis promoter set shipped in ``data/promoters/``; missing files fail, never skip."""
    positives = PROMOTER_DATA / "arabidopsis_nontata_promoters.fa"
    negatives = PROMOTER_DATA / "arabidopsis_nonpromoters.fa"
    assert positives.is_file() and negatives.is_file(), f"promoter data missing from {PROMOTER_DATA}"
    return positives, negatives


@pytest.fixture
def load_job(monkeypatch) -> Callable[[str], ModuleType]:
    """Loads ``jobs/NAME.py`` as a module (the jobs are scripts, not a package), with ``jobs/`` on the path."""
    jobs = REPO / "jobs"
    monkeypatch.syspath_prepend(str(jobs))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"{name}_job", jobs / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def invoke(*args: object) -> Result:
    """``amber-ray ARGS`` run in this process (every argument as a string)."""
    from amber_ray.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_failure(result: Result, out: Path, *fragments: str, before: set[str] | None = None) -> None:
    """Exit code 2, one ``error:`` line naming every fragment, no traceback, and nothing left in ``out`` (with
    ``before``: nothing but the names it held before)."""
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output
    if before is None:
        assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    else:
        assert {path.name for path in out.iterdir()} == before


def tiny_net(
    labels: int = 3, length: int = 40, dropout: float = 0.5, seed: int = 0, arch: str = "conv8,skip:;conv4,skip:"
) -> ChildNet:
    """An untrained two-layer model (initialised from ``seed``), small enough for any test; two blocks of one layer,
    so a skip ``conv4,skip:0`` is pooled and zero-padded to the second block's channels."""
    torch.manual_seed(seed)
    space = ModelSpace(
        input_length=length,
        num_labels=labels,
        num_layers=2,
        layers_per_block=1,
        ops=("conv8", "conv4"),
        first_filters=4,
        stem_channels=4,
        dense_units=8,
        reduction=2,
        dropout=dropout,
    )
    return ChildNet(space, Architecture.from_text(arch))


def one_hot(n: int, length: int = 40, seed: int = 0) -> np.ndarray:
    codes = np.random.default_rng(seed).integers(0, 4, (n, length))
    return np.eye(4, dtype=np.float32)[codes].transpose(0, 2, 1).copy()


@pytest.fixture(scope="module")
def s3():
    """An S3-compatible server (moto) on 127.0.0.1 with the bucket ``amber``; yields the environment that reaches it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "MLFLOW_S3_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket="amber")
    yield env
    for key, value in saved.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    server.stop()
