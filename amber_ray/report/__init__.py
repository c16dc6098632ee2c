"""The static HTML report of a run: figures (:mod:`.figures`) and the page (:mod:`.html`).

A run directory shaped like the demo's holds ``search/`` and ``retrain/`` (and optionally
``variants/`` and ``interpret/``); a search or retrain directory on its own works too.
"""

from __future__ import annotations

from pathlib import Path

from amber_ray import outputs
from amber_ray.checkpoint import has_checkpoint
from amber_ray.data import read_label_annotation
from amber_ray.errors import AmberInputError
from amber_ray.report.html import write_report
from amber_ray.report.parts import load_run


def is_search_dir(directory: Path) -> bool:
    return has_checkpoint(outputs.search_checkpoint(directory)) or (directory / outputs.HISTORY).is_file()


def is_retrain_dir(directory: Path) -> bool:
    return (directory / outputs.RESULTS).is_file() or (directory / outputs.RUN_ID).is_file()


def default_part(directory: Path, name: str, given: Path | None) -> Path | None:
    """``given``, else ``directory/name`` when it exists, else ``directory`` itself when it is that part."""
    if given is not None:
        return given
    if (directory / name).is_dir():
        return directory / name
    looks_like = {outputs.SEARCH_DIR: is_search_dir, outputs.RETRAIN_DIR: is_retrain_dir}.get(name)
    return directory if looks_like is not None and looks_like(directory) else None


def report_run(
    directory: Path,
    search: Path | None = None,
    retrain: Path | None = None,
    variants: Path | None = None,
    interpret: Path | None = None,
    annotation: Path | None = None,
    out: Path | None = None,
    track: bool = True,
) -> Path:
    """Write ``out`` (default ``directory/report.html``) from whatever parts of the run exist; returns its path."""
    parts = {
        "search": default_part(directory, outputs.SEARCH_DIR, search),
        "retrain": default_part(directory, outputs.RETRAIN_DIR, retrain),
        "variants": default_part(directory, outputs.VARIANTS_DIR, variants),
        "interpret": default_part(directory, outputs.INTERPRET_DIR, interpret),
    }
    if not any(parts.values()):
        raise AmberInputError(
            "no run outputs here (search/, retrain/, variants/ or interpret/); name them with --search, --retrain, ...", directory
        )
    run = load_run(**parts, annotation=read_label_annotation(annotation) if annotation else None)
    return write_report(run, out or directory / outputs.REPORT, track)
