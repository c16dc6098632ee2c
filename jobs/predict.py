"""Ray job: ``amber-ray predict`` with its arguments.

``ray job submit --working-dir . -- python jobs/predict.py /abs/run/retrain/final \\
    --bed /abs/r.bed --genome /abs/hg38.fa --out /abs/dir``

The job runs in a temporary copy of the working dir, so the model (unless a ``models:/NAME/VERSION``
URI, read from ``MLFLOW_TRACKING_URI``'s store), the input files and ``--out`` are made absolute
here (``s3://`` URIs stay as they are); ``--out`` defaults to ``$AMBER_RAY_OUT/predict``
(``~/amber-ray-runs/predict``).
"""

import argparse
import os
from pathlib import Path

from _entry import absolute

from amber_ray.cli import run
from amber_ray.registry import REGISTRY_SCHEME

PATH_OPTIONS = ("--fasta", "--bed", "--genome", "--regions")


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model.pt, a final/ directory or models:/NAME/VERSION")
    parser.add_argument(
        "--out",
        default=str(Path(os.environ.get("AMBER_RAY_OUT", Path.home() / "amber-ray-runs")) / "predict"),
        help="output directory",
    )
    for option in PATH_OPTIONS:
        parser.add_argument(option)
    return parser.parse_known_args()


def command_line(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """The ``amber-ray predict`` arguments for this job, every local path absolute."""
    model = args.model if args.model.startswith(REGISTRY_SCHEME) else absolute(args.model)
    command = ["predict", model, "--out", absolute(args.out)]
    for option in PATH_OPTIONS:
        value = getattr(args, option.removeprefix("--"))
        if value is not None:
            command += [option, absolute(value)]
    return command + rest


if __name__ == "__main__":
    run(command_line(*parse_args()))
