"""Atomic output: write to a temporary name beside the target, flush it to disk, then rename.

A crash or a bad record mid-write leaves the previous file (or none) in place, never half a file.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def fsync_directory(directory: Path) -> None:
    """Make renames inside ``directory`` durable (a machine that loses power keeps them)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_temporary(path: Path) -> Path:
    """An empty, new file beside ``path``, created with the user's umask (``mkstemp`` would make it 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, flushed to disk on success and removed on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield tmp
        _fsync_file(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    with _temporary(path) as tmp:
        yield tmp
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_paths(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Temporary paths for several outputs; only when all were written are they renamed into place.

    A failure while writing any of them leaves none of the new files (and the previous ones intact).
    """
    targets = [Path(path) for path in paths]
    with ExitStack() as stack:
        temporaries = [stack.enter_context(_temporary(target)) for target in targets]
        yield temporaries
    try:
        for tmp, target in zip(temporaries, targets):
            os.replace(tmp, target)
    finally:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON has no NaN; ``null`` is valid)."""
    if isinstance(obj, dict):
        return {key: finite_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(value) for value in obj]
    if isinstance(obj, float) and not math.isfinite(obj):  # numpy's float64 is a float too
        return None
    return obj


def atomic_write_json(obj: Any, path: str | Path) -> None:
    """Strict JSON: an undefined metric (NaN) is written as ``null``, never as a bare ``NaN``."""
    atomic_write_text(json.dumps(finite_json(obj), indent=2, default=str, allow_nan=False) + "\n", path)


def write_table(table: pd.DataFrame, path: Path, name: str | Path) -> None:
    """Write ``table`` to ``path`` as parquet, or as TSV when ``name`` (the final name) ends in ``.tsv``."""
    if str(name).endswith(".tsv"):
        table.to_csv(path, sep="\t", index=False)
    else:
        table.to_parquet(path, index=False)


def atomic_write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Parquet, or TSV when the name ends in ``.tsv``."""
    with atomic_path(path) as tmp:
        write_table(table, tmp, path)
