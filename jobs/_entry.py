"""What the Ray job entrypoints share: the project on ``sys.path`` and the ``amber-ray`` command each one is.

A job takes exactly the arguments of its command (``python jobs/search.py CONFIG --out DIR`` is
``amber-ray search CONFIG --out DIR``), so there is one way to call it. Under ``ray job submit
--working-dir .`` the job runs in a temporary copy of the working dir: relative config paths (and
the data paths inside a config, relative to its file) resolve in that copy; ``--out`` must be an
absolute path that outlives the job (shared storage on a cluster), or a URI: ``predict``,
``variants``, ``interpret``, ``train`` and ``export`` read inputs from and write ``--out`` to
``s3://`` URIs themselves (:mod:`amber_ray.uri_arguments`), whichever node the job runs on.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone that is not pip-installed


def absolute(value: str | Path) -> str:
    """A local path made absolute (the job runs in a copy of the working dir); a URI as it is."""
    from amber_ray.uri_arguments import is_file_uri

    return str(value) if is_file_uri(str(value)) else str(Path(value).expanduser().resolve())


def run_command(*command: str) -> None:
    """``amber-ray COMMAND`` with this process's arguments; exits with its code (2 for bad input, 143 when
    stopped by SIGTERM, as ``ray job stop`` does)."""
    from amber_ray.cli import run

    run([*command, *sys.argv[1:]])
