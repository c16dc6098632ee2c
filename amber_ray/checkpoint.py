"""The search checkpoint: its format (the keys a resume and the report read) and its files.

The search writes a payload made by :func:`search_payload`; a resume and the report read it with
:func:`load_checkpoint` (the report through :func:`read_search_checkpoint`, which also checks its
keys). Nothing here imports Ray, so the report reads checkpoints without the search package.

Files: the last two checkpoints are kept, each with its SHA-256 in a manifest.

A save writes the new checkpoint to a temporary name, links the current one to the ``.prev``
name, renames the new one into place (so the newest name never goes missing) and then rewrites
the manifest (``search.sha256``, in ``sha256sum`` format). A load takes the newest file whose digest is
in the manifest and that ``torch.load(weights_only=True)`` accepts; a truncated, corrupted or
unlisted file is skipped with a warning and the previous checkpoint is used. Without a manifest
(deleted, or a directory copied without it) the newest file that loads is used, with a warning. A crash between
two of those steps leaves at least one listed file, so there is always a checkpoint to resume
from once the first save completed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from amber_ray import storage
from amber_ray.atomic import atomic_path, atomic_write_text, fsync_directory
from amber_ray.errors import AmberInputError

logger = logging.getLogger(__name__)

# --- the format -----------------------------------------------------------------------------
# The keys every search checkpoint has, besides ``run_id``, ``supernet`` and ``strategy``.
OPS_KEY = "ops"  # the model space's op names, in order
LEGACY_OPS_KEY = "arch_space"  # the same, in checkpoints written before it was renamed
CONFIG_KEY = "config"  # the search's resolved config (JSON-ready), checked by --resume; absent in older checkpoints
CHECKPOINT_KEYS = frozenset({"iteration", "history", "stats", "op_probs", "controller"})
RUN_ID_KEY = "run_id"  # the search's MLflow run
STRATEGY_KEY = "strategy"
DEFAULT_STRATEGY = "enas"  # of checkpoints written before the strategy was recorded


def search_payload(
    *,
    iteration: int,
    history: list[dict[str, Any]],
    stats: list[dict[str, Any]],
    op_probs: list[Any],
    run_id: str | None,
    controller: dict[str, Any],
    supernet: dict[str, Any],
    ops: tuple[str, ...],
    strategy: str,
    config: dict[str, Any],
) -> dict[str, Any]:
    """A search checkpoint: the iteration reached, the history, controller statistics and op probabilities
    so far, the MLflow run, the controller's and the supernet's state, the space's ops, the strategy
    and the resolved config."""
    return {
        "iteration": iteration,
        "history": history,
        "stats": stats,
        "op_probs": op_probs,
        RUN_ID_KEY: run_id,
        "controller": controller,
        "supernet": supernet,
        OPS_KEY: ops,
        STRATEGY_KEY: strategy,
        CONFIG_KEY: config,
    }


def checkpoint_ops(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """The op names of a search checkpoint, also of one written before the key was renamed."""
    return tuple(payload[OPS_KEY] if OPS_KEY in payload else payload[LEGACY_OPS_KEY])


def checkpoint_strategy(payload: Mapping[str, Any]) -> str:
    """The search strategy that wrote the checkpoint."""
    return payload.get(STRATEGY_KEY, DEFAULT_STRATEGY)


def check_search_checkpoint(payload: Mapping[str, Any]) -> None:
    """Raise ``KeyError`` unless ``payload`` has the keys of a search checkpoint."""
    missing = set(CHECKPOINT_KEYS) - set(payload)
    if OPS_KEY not in payload and LEGACY_OPS_KEY not in payload:
        missing.add(OPS_KEY)
    if missing:
        raise KeyError(f"not a search checkpoint (no {sorted(missing)})")


def read_search_checkpoint(path: Path) -> dict[str, Any]:
    """The search checkpoint as a resume reads it (the previous one when the newest is damaged), checked."""
    payload = load_checkpoint(path)
    check_search_checkpoint(payload)
    return payload


# --- the files ------------------------------------------------------------------------------
LOAD_ERRORS = (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile)


def previous_path(path: Path) -> Path:
    """``search.pt`` -> ``search.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def manifest_path(path: Path) -> Path:
    """``search.pt`` -> ``search.sha256``."""
    return path.with_name(f"{path.stem}.sha256")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> set[str] | None:
    """The digests listed in the manifest of checkpoint ``path``; ``None`` when there is no manifest."""
    manifest = manifest_path(path)
    if not manifest.is_file():
        return None
    return {line.split()[0] for line in manifest.read_text(errors="replace").splitlines() if line.strip()}


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` as the newest checkpoint; the one it replaces becomes the previous one."""
    previous = previous_path(path)
    known = read_manifest(path) or set()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        digest = sha256_of(tmp)
        if path.exists():
            _replace_with_copy_of(previous, path)
    fsync_directory(path.parent)
    listed = [(digest, path.name)]
    if previous.exists() and (previous_digest := sha256_of(previous)) in known:
        listed.append((previous_digest, previous.name))  # a file corrupted on disk stays unlisted
    atomic_write_text("".join(f"{value}  {name}\n" for value, name in listed), manifest_path(path))


def _replace_with_copy_of(target: Path, source: Path) -> None:
    """Atomically make ``target`` a copy of ``source``, which stays in place (readers never miss it)."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, tmp)


def _load_verified(path: Path, digests: set[str] | None) -> dict[str, Any]:
    """``path`` if its digest is listed (or no manifest exists to list it); ``weights_only`` refuses
    anything but tensors and plain data, and a truncated file does not load."""
    if digests is not None and sha256_of(path) not in digests:
        raise ValueError("checksum does not match the manifest (truncated or corrupted)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict):
        raise ValueError("not a search checkpoint")  # noqa: TRY004 (the loader falls back on ValueError)
    return payload


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The newest valid checkpoint at ``path`` or its previous one; raises when neither is valid."""
    digests = read_manifest(path)
    if digests is None and has_checkpoint(path):
        logger.warning("no manifest %s: the checkpoint's checksum cannot be verified", manifest_path(path).name)
    problems = []
    for candidate in (path, previous_path(path)):
        if not candidate.is_file():
            continue
        try:
            payload = _load_verified(candidate, digests)
        except LOAD_ERRORS as error:
            logger.warning("skipping checkpoint %s: %s", candidate, error)
            problems.append(f"{candidate.name}: {error}")
            continue
        if candidate != path:
            logger.warning("using the previous checkpoint %s (iteration %s)", candidate, payload.get("iteration"))
        return payload
    if not problems:
        raise AmberInputError("no search checkpoint to resume from; run without --resume", path)
    raise AmberInputError(f"no usable search checkpoint ({'; '.join(problems)})", path)


def has_checkpoint(path: Path) -> bool:
    return path.is_file() or previous_path(path).is_file()


def checkpoint_files(path: Path) -> list[Path]:
    """The newest checkpoint, the previous one and the manifest that lists them."""
    return [path, previous_path(path), manifest_path(path)]


def mirror_checkpoint(path: Path, remote_dir: str) -> None:
    """Copy the checkpoint files at ``path`` to ``remote_dir`` (shared storage); the manifest last,
    so a reader there never finds it listing a file that is not there yet."""
    for local in [*checkpoint_files(path)[:2], manifest_path(path)]:
        if local.is_file():
            storage.upload(local, f"{remote_dir}/{local.name}")


def fetch_checkpoint(path: Path, remote_dir: str) -> bool:
    """Copy the mirrored checkpoint files from ``remote_dir`` when there is none at ``path`` (a replaced head);
    returns whether there is a checkpoint at ``path`` now."""
    if not has_checkpoint(path):
        for local in checkpoint_files(path):
            if storage.exists(remote := f"{remote_dir}/{local.name}"):
                storage.download(remote, local)
                logger.info("fetched %s from %s", local.name, remote_dir)
    return has_checkpoint(path)
