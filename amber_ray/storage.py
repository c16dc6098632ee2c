"""Where the files that every node writes go: under ``--out`` by default, or under the config's ``storage``.

Ray Tune trials write their checkpoints from whichever node runs them, and a replaced head must
find the search checkpoint and the MLflow artifacts, so on a cluster they go to one shared
location: ``storage: s3://bucket/prefix`` (any URI pyarrow reads: ``s3://``, ``gs://``, or an
absolute path every node mounts). Credentials and endpoint come from each node's environment:
the instance's IAM role on AWS, ``AWS_ENDPOINT_URL`` for an S3-compatible server. The run's
local ``--out`` keeps its tables and reports; under ``storage`` a run's files sit at the same
relative place, ``<storage>/<absolute --out without its root>/...``. Everything a resume needs
is mirrored there (the search checkpoint and outputs, the retraining's config and run id, the
pipeline's state) and fetched back when ``--out`` lost it, so a new head with the same ``--out``
and ``storage`` (and tracking server) continues the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

logger = logging.getLogger(__name__)


def location(storage: str | None, out_dir: str | Path, *parts: str) -> str:
    """``out_dir/parts`` (absolute) without ``storage``, else the same place under ``storage``."""
    local = Path(out_dir).resolve().joinpath(*parts)
    if storage is None:
        return str(local)
    return "/".join([storage.rstrip("/"), *PurePosixPath(local.as_posix()).parts[1:]])


def artifacts(storage: str | None, out_dir: str | Path) -> str | None:
    """The MLflow artifact location of experiments a command in ``out_dir`` creates: under ``storage``, else MLflow's default."""
    return None if storage is None else location(storage, out_dir, "mlartifacts")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``uri`` and the path on it (a local path is its own filesystem)."""
    return pafs.FileSystem.from_uri(uri)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def newest(uri: str, prefix: str) -> str | None:
    """The last by name of the files directly under ``uri`` (a URI or path) whose names start with ``prefix``; None if none do."""
    fs, path = filesystem(uri)
    names = sorted(
        PurePosixPath(info.path).name
        for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        if info.type == pafs.FileType.File and PurePosixPath(info.path).name.startswith(prefix)
    )
    return f"{uri.rstrip('/')}/{names[-1]}" if names else None


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def upload(local: Path, uri: str) -> None:
    """Copy the file ``local`` to ``uri`` (a no-op when they are the same file)."""
    fs, path = filesystem(uri)
    if isinstance(fs, pafs.LocalFileSystem) and Path(path).resolve() == local.resolve():
        return
    fs.create_dir(str(PurePosixPath(path).parent), recursive=True)
    pafs.copy_files(str(local), path, destination_filesystem=fs)


def download(uri: str, local: Path) -> None:
    """Copy ``uri`` to the file ``local``."""
    fs, path = filesystem(uri)
    local.parent.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(local), source_filesystem=fs)


def mirror(storage: str | None, directory: Path, names: Iterable[str]) -> None:
    """Copy the files ``names`` (paths inside ``directory``) that exist to their place under ``storage``, in order;
    nothing without ``storage``. What a resume needs goes there, so a replaced head (its disk lost) finds it."""
    if storage is None:
        return
    for name in names:
        if (directory / name).is_file():
            upload(directory / name, location(storage, directory, name))


def fetch_missing(storage: str | None, directory: Path, names: Iterable[str]) -> None:
    """Copy from ``storage`` those of the files ``names`` that ``directory`` lacks (a replaced head); nothing without it."""
    if storage is None:
        return
    for name in names:
        if not (directory / name).exists() and exists(remote := location(storage, directory, name)):
            download(remote, directory / name)
            logger.info("fetched %s from %s", name, remote)
