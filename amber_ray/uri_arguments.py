"""URIs (``s3://``, ``gs://``) in the file arguments of the commands that work on one node.

``predict``, ``variants``, ``interpret``, ``train`` and ``export`` run where they are started: on a
cluster, in a Ray job's driver on whichever node has the GPU it asked for, whose disk holds neither
the inputs nor, after the job, the outputs. So each of their file arguments may be a URI. An input
is staged into the node's data cache (:mod:`amber_ray.data.remote`); an output (``--out``,
``--out-file``, ``--ldsc-annot``) is written to a local scratch directory and copied to its URI once
the command has succeeded, so a command that fails leaves nothing there.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from amber_ray.data.remote import is_uri, stage
from amber_ray.errors import AmberInputError, first_line

COMMANDS = ("predict", "variants", "interpret", "train", "export")
OUTPUT_OPTIONS = ("--out", "--out-file", "--ldsc-annot")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # not `--set storage=s3://...`, not `models:/NAME/1`


@dataclass
class LocalArguments:
    """A command line with every URI replaced by a local path, and where each local output goes."""

    args: list[str]
    outputs: list[tuple[Path, str]] = field(default_factory=list)  # (scratch directory, URI of its parent)

    def publish(self) -> None:
        """Copy what the command wrote into each scratch directory to the URI it stands for."""
        for directory, parent in self.outputs:
            for local in sorted(path for path in directory.rglob("*") if path.is_file()):
                uri = f"{parent}/{local.relative_to(directory).as_posix()}"
                try:
                    fs, path = pafs.FileSystem.from_uri(uri)
                    pafs.copy_files(str(local), path, destination_filesystem=fs)
                except (OSError, ValueError) as error:
                    raise AmberInputError(f"cannot be written ({first_line(error)})", uri) from None


def takes_uris(args: Sequence[str]) -> bool:
    """Whether ``args`` (a command line) is one of :data:`COMMANDS` with a URI among its arguments."""
    command = next((arg for arg in args if not arg.startswith("-")), None)
    return command in COMMANDS and any(is_file_uri(arg) for arg in separated(args))


def separated(args: Sequence[str]) -> list[str]:
    """``args`` with each ``--option=value`` as two arguments, as the parser reads it."""
    return [part for arg in args for part in (arg.split("=", 1) if arg.startswith("--") and "=" in arg else [arg])]


def is_file_uri(arg: str) -> bool:
    return bool(SCHEME.match(arg)) and is_uri(arg)


@contextmanager
def local_arguments(args: Sequence[str]) -> Iterator[LocalArguments]:
    """``args`` with each input URI staged and each output URI a path in a scratch directory (removed on exit)."""
    with tempfile.TemporaryDirectory(prefix="amber-ray-outputs-") as scratch:
        local = LocalArguments([])
        args = separated(args)
        for previous, arg in zip([None, *args], args):
            if not is_file_uri(arg):
                local.args.append(arg)
            elif previous in OUTPUT_OPTIONS:
                directory = Path(scratch) / str(len(local.outputs))
                directory.mkdir()
                parent, name = arg.rstrip("/").rsplit("/", 1)
                local.outputs.append((directory, parent))
                local.args.append(str(directory / name))
            else:
                local.args.append(str(stage(arg)[0]))
        yield local
