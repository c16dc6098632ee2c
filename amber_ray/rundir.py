"""Where a command writes, checked before the work: output directories and files, and the run lock.

Every command that writes output calls :func:`output_dir` or :func:`output_file` before it reads
data or trains anything, so an output that cannot be written (an existing file where a directory
is needed, a read-only directory, a directory where a file should go) is an input error at once,
not a traceback after the work. An input error later in the command removes what the command
created; any other failure (an interrupt, a crash) keeps it, so that ``--resume`` can continue.

An output directory is locked for the command's lifetime with an advisory ``flock`` on
``DIR/.lock``, which holds the holder's pid, host and command line: a second command on the same
directory fails at once naming the holder. The kernel drops the lock when its process ends,
however it ends, so a killed command never leaves a stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from amber_ray.errors import AmberInputError

LOCK = ".lock"


def _writable_directory(directory: Path) -> None:
    """Raise unless a file can be created in ``directory`` (tried, not guessed from mode bits)."""
    probe = directory / f".amber-ray-probe-{os.getpid()}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as error:
        raise AmberInputError(f"cannot write here ({error.strerror or error})", directory) from None


def _create_directory(directory: Path) -> Path | None:
    """Create ``directory`` (and missing parents); return the topmost directory created, if any."""
    if directory.is_dir():
        return None
    missing = [directory, *(parent for parent in directory.parents if not parent.exists())]
    blocking = next((parent for parent in (directory, *directory.parents) if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise AmberInputError("is an existing file, so no directory can be made here", blocking)
    try:
        directory.mkdir(parents=True)
    except OSError as error:
        raise AmberInputError(f"cannot create the output directory ({error.strerror or error})", directory) from None
    return missing[-1]


def _check_directory(directory: Path, files: Collection[str]) -> None:
    """Each of ``files`` must be free to become a file (an existing file is replaced atomically)."""
    for name in files:
        if (directory / name).is_dir():
            raise AmberInputError("is a directory; the output writes a file here", directory / name)


@contextmanager
def _remove_on_input_error(directory: Path, created: Path | None) -> Iterator[None]:
    """On an input error, remove what the command added to ``directory`` (all of it, if it made it)."""
    before = set(os.listdir(directory)) if created is None else set()
    try:
        yield
    except AmberInputError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:
            for name in set(os.listdir(directory)) - before:
                _remove(directory / name)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _holder(lock_file: Path) -> str:
    try:
        text = lock_file.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock`` exclusively; fail at once, naming the holder, if another command holds it."""
    lock_file = directory / LOCK
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise AmberInputError(f"cannot create the run lock ({error.strerror or error})", lock_file) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            problem = f"in use by {_holder(lock_file)}; wait for it to end or choose another --out"
            raise AmberInputError(problem, directory) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def output_dir(out: str | Path, files: Collection[str] = ()) -> Iterator[Path]:
    """The output directory ``out``, created, checked writable and locked before the work.

    ``files`` are names the command will write inside it (each must not be a directory). An input
    error inside the block removes what the command created.
    """
    directory = Path(out)
    _check_directory(directory, files)
    created = _create_directory(directory)
    with _remove_on_input_error(directory, created):
        _writable_directory(directory)
    # Locked first: what another command writes while this one is refused is never removed.
    with run_lock(directory), _remove_on_input_error(directory, created):
        yield directory


@contextmanager
def output_file(path: str | Path) -> Iterator[Path]:
    """Check that ``path`` can be written as a file before the work: not a directory, its folder writable.

    A missing folder is created (as the atomic writers would) and removed again on an input error.
    """
    path = Path(path)
    if path.is_dir():
        raise AmberInputError("is a directory; the output is a file", path)
    created = _create_directory(path.parent)
    with _remove_on_input_error(path.parent, created):
        _writable_directory(path.parent)
        yield path
