"""Ray job: retrain searched vs sampled architectures with Ray Tune (needs a finished search under --out)."""

from _entry import parse_args, set_flags

from amber_ray.cli import app

if __name__ == "__main__":
    args = parse_args(__doc__, [("--resume", {"action": "store_true"})])
    command = ["retrain", str(args.config), "--search", str(args.out / "search"), "--out", str(args.out / "retrain"), *set_flags(args)]
    app([*command, *(["--resume"] if args.resume else [])], prog_name="amber-ray")
