"""Ray job: search -> retrain -> compare, each step resuming if its outputs are already there."""

import sys

from _entry import parse_args

from amber_ray.cli import app

if __name__ == "__main__":
    args = parse_args(__doc__)
    search, retrain = args.out / "search", args.out / "retrain"
    steps = [
        ["search", str(args.config), "--out", str(search), *(["--resume"] if (search / "checkpoints").exists() else [])],
        ["retrain", str(args.config), "--search", str(search), "--out", str(retrain), *(["--resume"] if (retrain / "tune").exists() else [])],
        ["compare", str(retrain)],
    ]
    for step in steps:
        code = app(step, prog_name="amber-ray", standalone_mode=False)
        if code:
            sys.exit(code)
