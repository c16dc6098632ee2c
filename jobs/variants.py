"""Ray job: variant effects, ``score`` or ``eval``, with the arguments of ``amber-ray variants``.

``ray job submit --working-dir . -- python jobs/variants.py score /abs/model.pt \\
    --vcf /abs/v.vcf.gz --fasta /abs/hg38.fa --out /abs/dir``

The job runs in a temporary copy of the working dir, so input paths should be absolute; ``--out``
is a directory made absolute here: ``score`` writes ``scores.parquet`` (and its side file) in it,
``eval`` writes ``eval.json`` and ``eval.parquet``; ``--ldsc-annot auto`` writes LDSC files under
``OUT/ldsc/``.
"""

import argparse
import os
from pathlib import Path

import _entry  # noqa: F401  (puts the project on sys.path)

from amber_ray.cli import run


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["score", "eval"])
    parser.add_argument("model", type=Path, help="model.pt written by `amber-ray train`")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("AMBER_RAY_OUT", Path.home() / "amber-ray-runs")) / "variants",
        help="absolute output directory",
    )
    parser.add_argument("--ldsc-annot", help="LDSC prefix, or 'auto' for OUT/ldsc/annot")
    args, rest = parser.parse_known_args()
    args.out = args.out.expanduser().resolve()
    return args, rest


def command_line(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """The ``amber-ray variants`` arguments for this job."""
    out = ["--out-file", str(args.out / "scores.parquet")] if args.command == "score" else ["--out", str(args.out)]
    command = ["variants", args.command, str(args.model.expanduser().resolve()), *out, *rest]
    if args.ldsc_annot:
        prefix = args.out / "ldsc" / "annot" if args.ldsc_annot == "auto" else Path(args.ldsc_annot).expanduser().resolve()
        command += ["--ldsc-annot", str(prefix)]
    return command


if __name__ == "__main__":
    run(command_line(*parse_args()))
