"""Ray job: variant effects, ``score`` or ``eval``, with the arguments of ``amber-ray variants``.

``ray job submit --working-dir . -- python jobs/variants.py score /abs/model.pt \\
    --vcf /abs/v.vcf.gz --fasta /abs/hg38.fa --out /abs/dir``

The job runs in a temporary copy of the working dir, so input paths should be absolute (or
``s3://`` URIs); ``--out`` is a directory made absolute here (a URI stays as it is): ``score``
writes ``scores.parquet`` (and its side file) in it, ``eval`` writes ``eval.json`` and
``eval.parquet``; ``--ldsc-annot auto`` writes LDSC files under ``OUT/ldsc/``.
"""

import argparse
import os
from pathlib import Path

from _entry import absolute

from amber_ray.cli import run


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["score", "eval"])
    parser.add_argument("model", help="model.pt written by `amber-ray train`")
    parser.add_argument(
        "--out",
        default=str(Path(os.environ.get("AMBER_RAY_OUT", Path.home() / "amber-ray-runs")) / "variants"),
        help="output directory (absolute, or a URI)",
    )
    parser.add_argument("--ldsc-annot", help="LDSC prefix, or 'auto' for OUT/ldsc/annot")
    args, rest = parser.parse_known_args()
    args.out = absolute(args.out)
    return args, rest


def command_line(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """The ``amber-ray variants`` arguments for this job."""
    out = ["--out-file", f"{args.out}/scores.parquet"] if args.command == "score" else ["--out", args.out]
    command = ["variants", args.command, absolute(args.model), *out, *rest]
    if args.ldsc_annot:
        prefix = f"{args.out}/ldsc/annot" if args.ldsc_annot == "auto" else absolute(args.ldsc_annot)
        command += ["--ldsc-annot", prefix]
    return command


if __name__ == "__main__":
    run(command_line(*parse_args()))
