"""One Ray session for the whole test run (2 CPUs, no dashboard); tests kill the actors they create."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
PROMOTER_DATA = REPO / "data" / "promoters"  # in the repository (MIT; data/promoters/MANIFEST.md)
# Real data under other licences (the dsQTL pairs, GPL-3.0) stays out of the repository: tests that
# need it read it from ../shared/data when present and skip otherwise.
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2)
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
