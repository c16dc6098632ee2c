"""One Ray session for the whole test run (2 CPUs, no dashboard); tests kill the actors they create."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def promoter_fastas() -> tuple[Path, Path]:
    positives = SHARED_DATA / "promoters" / "arabidopsis_nontata_promoters.fa"
    negatives = SHARED_DATA / "promoters" / "arabidopsis_nonpromoters.fa"
    if not positives.is_file():
        pytest.skip("shared promoter data not present")
    return positives, negatives
