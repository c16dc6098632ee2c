"""Which cheap score ranks architectures as their retrained test AUROC does? Prints one JSON object.

Reads one finished cell of the regime map (``search_efficacy.py --map --out DIR``): the
architectures it retrained (``retrain/results.parquet``, test AUROC as the mean of replicates)
and its searches' final supernets. Every retrained architecture gets three scores:

- ``supernet``: its reward (validation AUROC on all validation data, shared weights), the mean over
  the cell's final supernets: what the search ranks by;
- ``finetune``: the child with its weights inherited from one final supernet (``--supernet``),
  trained ``--epochs`` epoch(s) on its own, then its validation AUROC: the short standalone
  fine-tune of the top candidates that the weight-sharing literature recommends before a choice;
- ``scratch``: the child trained the same epochs from its initial weights, no weight sharing: what
  the fine-tune must beat to credit the supernet's weights.

For each: Kendall tau and Spearman rho against test AUROC over architectures (one unit each), a
95 % bootstrap interval of tau over architectures, and its seconds per architecture.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from search_efficacy import GRAMMAR, map_config, rank_agreement, supernet_rewards

from amber_ray.checkpoint import load_checkpoint
from amber_ray.config import ExperimentConfig, load_config
from amber_ray.data import load_splits
from amber_ray.search.loop import checkpoint_path
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import Supernet
from amber_ray.training import fit, initial_model, positive_weights, replicate_seed, training_source

log = logging.getLogger(__name__)


def cell_runs(cell_dir: Path) -> list[dict[str, Any]]:
    """The cell's searches as :func:`search_efficacy.supernet_rewards` takes them."""
    runs = []
    for directory in sorted((cell_dir / "searches").iterdir()):
        strategy, _, seed = directory.name.rpartition("-")
        if checkpoint_path(directory).is_file():
            runs.append({"strategy": strategy, "seed": int(seed), "directory": directory})
    return runs


def short_training_scores(
    config: ExperimentConfig, archs: list[str], supernet: Supernet | None, epochs: int
) -> tuple[pd.Series, float]:
    """Validation AUROC of each architecture after ``epochs`` epochs of standalone training, from the supernet's
    weights (``supernet``) or from its initial weights (None); and the seconds per architecture."""
    splits = load_splits(config.data, config.seed)
    train = training_source(config, splits.train)
    pos_weight = positive_weights(config.train.pos_weight, train)
    short = config.train.model_copy(update={"max_epochs": epochs, "patience": epochs})
    space = (
        supernet.space
        if supernet is not None
        else ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
    )
    scores, started = {}, time.perf_counter()
    for text in archs:
        arch = Architecture.from_text(text)
        seed = replicate_seed(config.seed, 0)
        model = initial_model(space, arch, config.train.width, seed)
        if supernet is not None:
            model.load_state_dict(supernet.child_state_dict(arch), strict=False)  # BN statistics stay the child's
        scores[text] = fit(model, train, splits.valid, short, seed, pos_weight=pos_weight).best_valid_auroc
    return pd.Series(scores), (time.perf_counter() - started) / len(archs)


def load_supernet(config: ExperimentConfig, run: dict[str, Any]) -> Supernet:
    splits = load_splits(config.data, config.seed)
    space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
    net = Supernet(space)
    net.load_state_dict(load_checkpoint(checkpoint_path(run["directory"]))["supernet"]["model"])
    return net


def agreement_with_interval(score: pd.Series, test_auroc: pd.Series, n_boot: int = 2000) -> dict[str, float]:
    """:func:`search_efficacy.rank_agreement` plus a percentile-bootstrap 95 % interval of tau (architectures resampled)."""
    found = rank_agreement(score, test_auroc)
    x, y = score.to_numpy(), test_auroc[score.index].to_numpy()
    rng = np.random.default_rng(0)
    taus = [stats.kendalltau(x[i], y[i])[0] for i in rng.integers(0, len(x), (n_boot, len(x)))]
    low, high = np.nanpercentile(taus, [2.5, 97.5])
    return {**found, "tau_low": float(low), "tau_high": float(high)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cell_dir", type=Path, help="a finished map cell: DIR/SPACE-TASK of search_efficacy.py --map")
    parser.add_argument("--config", type=Path, default=GRAMMAR, help="the map's base config")
    parser.add_argument("--supernet", default="random-0", help="the search whose final supernet the fine-tune inherits")
    parser.add_argument("--epochs", type=int, default=1, help="standalone epochs of the fine-tune and of scratch")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    space_name, _, task = args.cell_dir.name.partition("-")
    config = map_config(load_config(args.config), space_name, task, workers=1)
    results = pd.read_parquet(args.cell_dir / "retrain" / "results.parquet")
    test_auroc = results.groupby("arch").test_auroc.mean()
    archs = list(test_auroc.index)
    runs = cell_runs(args.cell_dir)
    (inherited,) = [run for run in runs if f"{run['strategy']}-{run['seed']}" == args.supernet]

    started = time.perf_counter()
    supernet = supernet_rewards(config, runs, archs).mean(axis=1)
    supernet_seconds = (time.perf_counter() - started) / len(archs) / len(runs)
    finetune, finetune_seconds = short_training_scores(config, archs, load_supernet(config, inherited), args.epochs)
    scratch, scratch_seconds = short_training_scores(config, archs, None, args.epochs)
    report = {
        "benchmark": "proxy_ranking",
        "cell": args.cell_dir.name,
        "architectures": len(archs),
        "supernets": len(runs),
        "epochs": args.epochs,
        "inherited_from": args.supernet,
        "proxies": {
            "supernet": {**agreement_with_interval(supernet, test_auroc), "seconds_per_arch": supernet_seconds},
            "finetune": {**agreement_with_interval(finetune, test_auroc), "seconds_per_arch": finetune_seconds},
            "scratch": {**agreement_with_interval(scratch, test_auroc), "seconds_per_arch": scratch_seconds},
        },
        "scores": pd.DataFrame(
            {"test_auroc": test_auroc, "supernet": supernet, "finetune": finetune, "scratch": scratch}
        ).to_dict(orient="index"),
    }
    print(json.dumps(report, default=float))


if __name__ == "__main__":
    main()
