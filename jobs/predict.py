"""Ray job: ``amber-ray predict`` with its arguments.

``ray job submit --working-dir . -- python jobs/predict.py /abs/run/retrain/final \\
    --bed /abs/r.bed --genome /abs/hg38.fa --out /abs/dir``

The job runs in a temporary copy of the working dir, so the model (unless a ``models:/NAME/VERSION``
URI, read from ``MLFLOW_TRACKING_URI``'s store), the input files and ``--out`` are made absolute
here; ``--out`` defaults to ``$AMBER_RAY_OUT/predict`` (``~/amber-ray-runs/predict``).
"""

import argparse
import os
from pathlib import Path

import _entry  # noqa: F401  (puts the project on sys.path)

from amber_ray.cli import run
from amber_ray.registry import REGISTRY_SCHEME

PATH_OPTIONS = ("--fasta", "--bed", "--genome", "--regions")


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model.pt, a final/ directory or models:/NAME/VERSION")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("AMBER_RAY_OUT", Path.home() / "amber-ray-runs")) / "predict",
        help="output directory",
    )
    for option in PATH_OPTIONS:
        parser.add_argument(option, type=Path)
    return parser.parse_known_args()


def command_line(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """The ``amber-ray predict`` arguments for this job, every path absolute."""
    model = args.model if args.model.startswith(REGISTRY_SCHEME) else str(Path(args.model).expanduser().resolve())
    command = ["predict", model, "--out", str(args.out.expanduser().resolve())]
    for option in PATH_OPTIONS:
        value = getattr(args, option.removeprefix("--"))
        if value is not None:
            command += [option, str(value.expanduser().resolve())]
    return command + rest


if __name__ == "__main__":
    run(command_line(*parse_args()))
