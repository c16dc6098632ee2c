"""Data files given as URIs (``s3://``, ``gs://``, any filesystem pyarrow reads), staged once per node.

A supernet worker or retraining trial reads its data on whatever node Ray put it. A local path is
read where it is (it must exist on every node); a URI is copied into a node-local cache the
first time a process on that node needs it. The cache entry is keyed by the URI, the object's
size and its modification time (on S3 the ``LastModified`` that every overwrite renews), so a
replaced object is fetched again and an unchanged one never is. Actors on one node share one
download: the first takes a file lock and copies to a temporary name renamed into place, the
others wait on the lock and find the file. A directory (a model's ``final/``) is staged whole, keyed
by the URI and every file's name, size and modification time. The cache is
``$AMBER_RAY_DATA_CACHE``, else ``~/.cache/amber_ray/data`` (per node: each node's home is its own
disk). An input error about a staged copy names the URI it came from (:func:`as_given`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from amber_ray.errors import AmberInputError

log = logging.getLogger(__name__)

CACHE_ENV = "AMBER_RAY_DATA_CACHE"
# The URI of each copy this process staged (a file or a directory), so that errors name what the user gave.
STAGED_FROM: dict[Path, str] = {}


def is_uri(path: str | Path) -> bool:
    """Whether ``path`` names a filesystem by scheme (``s3://bucket/key``) rather than a local path."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def join(base: str | Path, name: str) -> str | Path:
    """``base/name`` for a URI or a local path."""
    return f"{base.rstrip('/')}/{name}" if isinstance(base, str) and is_uri(base) else Path(base) / name


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "amber_ray" / "data")


def unreachable(uri: str, problem: str) -> AmberInputError:
    """The one-line error of a worker that cannot read its data: the URI, the node and why."""
    first_line = problem.strip().splitlines()[0] if problem.strip() else "unknown error"
    return AmberInputError(f"cannot be read from node {socket.gethostname()} ({first_line})", uri)


def remote_info(uri: str) -> tuple[pafs.FileSystem, pafs.FileInfo]:
    """The filesystem of ``uri`` and the object's info; an object that cannot be reached is :func:`unreachable`."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
    except (OSError, ValueError) as error:
        raise unreachable(uri, str(error)) from None
    if info.type == pafs.FileType.NotFound:
        raise unreachable(uri, "no such object")
    return fs, info


def is_remote_dir(uri: str) -> bool:
    """Whether ``uri`` is a directory (on S3: a prefix with objects under it)."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs.get_file_info(path).type == pafs.FileType.Directory
    except (OSError, ValueError) as error:
        raise unreachable(uri, str(error)) from None


def cache_key(uri: str, info: pafs.FileInfo) -> str:
    mtime = info.mtime_ns if info.mtime_ns is not None else ""
    digest = hashlib.sha256(f"{uri}\0{info.size}\0{mtime}".encode()).hexdigest()[:20]
    return f"{digest}-{PurePosixPath(info.path).name}"


def stage(uri: str) -> tuple[Path, bool]:
    """The node-local copy of ``uri`` (a file or a directory), and whether this call downloaded it.

    Concurrent callers on one node (processes or threads) download once: the lock holder copies
    to a temporary name and renames it into place; the others wait, then find the copy.
    """
    fs, info = remote_info(uri)
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if info.type == pafs.FileType.Directory:
        files = fs.get_file_info(pafs.FileSelector(info.path, recursive=True))
        target = directory / tree_key(uri, info, files)
    else:
        target = directory / cache_key(uri, info)
    STAGED_FROM[target] = uri
    if target.exists():
        return target, False
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process copied it while this one waited
            return target, False
        partial = target.with_name(f"{target.name}.part-{os.getpid()}-{id(lock)}")
        try:
            if info.type == pafs.FileType.Directory:
                partial.mkdir()
            pafs.copy_files(info.path, str(partial), source_filesystem=fs)
            os.replace(partial, target)
        except OSError as error:
            raise unreachable(uri, str(error)) from None
        finally:
            if partial.is_dir():  # a directory's copy that failed halfway
                shutil.rmtree(partial)
            else:
                partial.unlink(missing_ok=True)
    log.info("staged %s to %s", uri, target)
    return target, True


def tree_key(uri: str, info: pafs.FileInfo, files: list[pafs.FileInfo]) -> str:
    """The cache name of the directory ``uri``: a changed, added or removed file gives another name."""
    listing = "\0".join(f"{f.path}\0{f.size}\0{f.mtime_ns}" for f in sorted(files, key=lambda f: f.path))
    digest = hashlib.sha256(f"{uri}\0{listing}".encode()).hexdigest()[:20]
    return f"{digest}-{PurePosixPath(info.path).name}"


def as_given(error: AmberInputError) -> AmberInputError:
    """``error`` naming the URI instead of the staged copy (or a file inside a staged directory) it is about."""
    if error.source is None:
        return error
    source = Path(error.source)
    for copy, uri in STAGED_FROM.items():
        if source == copy or source.is_relative_to(copy):
            given = uri if source == copy else f"{uri.rstrip('/')}/{source.relative_to(copy).as_posix()}"
            return AmberInputError(error.problem, given, error.record)
    return error


def local_file(path: str | Path) -> Path:
    """A readable local path for ``path``: itself when local, else its node-local staged copy."""
    if is_uri(path):
        return stage(str(path))[0]
    return Path(path)


@contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """:func:`local_file` of ``path`` for a reader; an input error about the staged copy names ``path`` instead."""
    local = local_file(path)
    try:
        yield local
    except AmberInputError as error:
        raise as_given(error) from None
