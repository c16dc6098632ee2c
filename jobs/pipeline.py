"""Ray job: search -> retrain -> compare -> report, each step resuming if its outputs are already there."""

import logging

from _entry import parse_args

from amber_ray.config import load_config, parse_overrides
from amber_ray.pipeline import run_pipeline

if __name__ == "__main__":
    args = parse_args(__doc__)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run_pipeline(load_config(args.config, parse_overrides(args.set)), args.out, resume=True)
    print(f"searched architecture: {result.final['best']['arch']}; report: {result.report}")
