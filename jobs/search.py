"""Ray job: ENAS search. ``ray job submit --working-dir . -- python jobs/search.py --config jobs/configs/demo.yaml --out /abs/dir``"""

from _entry import parse_args, set_flags

from amber_ray.cli import app

if __name__ == "__main__":
    args = parse_args(__doc__, [("--resume", {"action": "store_true"})])
    command = ["search", str(args.config), "--out", str(args.out / "search"), *set_flags(args)]
    app([*command, *(["--resume"] if args.resume else [])], prog_name="amber-ray")
