"""Shared argument handling of the Ray job entrypoints: ``--config`` and an absolute ``--out``.

A Ray job runs in a temporary copy of the working dir, so outputs (and the MLflow store under
them) default to an absolute directory outside it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(description: str, extra: list[tuple[str, dict]] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, type=Path, help="experiment config (YAML)")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("AMBER_RAY_OUT", Path.home() / "amber-ray-runs")), help="absolute output directory"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    for flag, options in extra or []:
        parser.add_argument(flag, **options)
    args = parser.parse_args()
    args.out = args.out.expanduser().resolve()
    return args


def set_flags(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides, as CLI arguments."""
    return [part for assignment in args.set for part in ("--set", assignment)]
