"""Ray job: search -> retrain -> compare -> report, each step resuming if its outputs are already there."""

import sys

from _entry import parse_args, set_flags

from amber_ray.cli import app
from amber_ray.tracking import use_store_in

if __name__ == "__main__":
    args = parse_args(__doc__)
    search, retrain = args.out / "search", args.out / "retrain"
    args.out.mkdir(parents=True, exist_ok=True)
    use_store_in(args.out)
    steps = [
        ["search", str(args.config), "--out", str(search), *set_flags(args), *(["--resume"] if (search / "checkpoints").exists() else [])],
        ["retrain", str(args.config), "--search", str(search), "--out", str(retrain), *set_flags(args)]
        + (["--resume"] if (retrain / "tune").exists() else []),
        ["compare", str(retrain)],
        ["report", str(args.out)],
    ]
    for step in steps:
        code = app(step, prog_name="amber-ray", standalone_mode=False)
        if code:
            sys.exit(code)
