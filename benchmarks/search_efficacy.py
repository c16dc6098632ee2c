"""Does the search find better architectures than random sampling? Prints one JSON object.

On the motif-grammar task (``jobs/configs/grammar.yaml``: a label decided by the spacing and
orientation of two motifs, so receptive field and dilation matter), it runs K independent
searches per strategy (``enas`` and ``random``: uniform sampling on the same supernet, budget and
final choice), then retrains every chosen architecture and M uniformly sampled ones through the
retraining grid (Ray Tune, early stopping, test set). Statistics are per architecture (the mean
of its replicates), never per replicate seed:

- per strategy, the percentile of each chosen architecture among the sampled ones, a one-sided
  Mann-Whitney test and a bootstrap interval of the difference in mean test AUROC
  (:func:`amber_ray.compare.architecture_level`);
- is the supernet reward a valid proxy? Every retrained architecture is scored on all validation
  data by each search's final supernet; Spearman of that reward with the retrained test AUROC;
- per ENAS search, the mean reward of controller samples against uniform samples on its own
  final supernet (``final_architectures.json``, ``policy_vs_uniform``).

``--quick`` (4 searches per strategy, 20 sampled architectures, 2 replicates) is sized for about
30 minutes on 2 cores; the default is for a bigger machine. Outputs stay in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
from scipy import stats

from amber_ray.checkpoint import load_checkpoint
from amber_ray.compare import architecture_level
from amber_ray.config import ExperimentConfig, load_config, parse_overrides
from amber_ray.data import load_splits
from amber_ray.retrain import run_retrain, sampled_architectures
from amber_ray.search.loop import checkpoint_path, run_search
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import SupernetTrainer

STRATEGIES = ("enas", "random")
GRAMMAR = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "grammar.yaml"
MODES = {
    "quick": {"searches": 4, "sampled": 20, "replicates": 2},
    "full": {"searches": 10, "sampled": 30, "replicates": 3},
}

log = logging.getLogger(__name__)


def search_config(config: ExperimentConfig, strategy: str, seed: int) -> ExperimentConfig:
    search = config.search.model_copy(update={"strategy": strategy, "seed": seed})
    return config.model_copy(update={"search": search})


def run_searches(config: ExperimentConfig, searches: int, out: Path) -> list[dict[str, Any]]:
    """K searches per strategy, search seeds 0..K-1 (one data split for all)."""
    runs = []
    for strategy in STRATEGIES:
        for seed in range(searches):
            directory = out / "searches" / f"{strategy}-{seed}"
            started = time.perf_counter()
            final = run_search(search_config(config, strategy, seed), directory)
            runs.append(
                {
                    "strategy": strategy,
                    "seed": seed,
                    "directory": directory,
                    "final": final,
                    "seconds": time.perf_counter() - started,
                }
            )
            log.info("%s search %d: %s (re-scored reward %.4f)", strategy, seed, final["best"]["arch"], final["best"]["reward"])
    return runs


def supernet_rewards(config: ExperimentConfig, runs: list[dict[str, Any]], archs: list[str]) -> pd.DataFrame:
    """(architectures, searches): each architecture's reward on all validation data, by each search's final supernet."""
    splits = load_splits(config.data, config.seed)
    space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
    parsed = [Architecture.from_text(arch) for arch in archs]
    columns = {}
    for run in runs:
        trainer = SupernetTrainer(
            space,
            splits.train,
            splits.valid,
            config.search.supernet_learning_rate,
            run["seed"],
            precision=config.search.precision,
        )
        trainer.load(load_checkpoint(checkpoint_path(run["directory"]))["supernet"])
        columns[f"{run['strategy']}-{run['seed']}"] = [score[0] for score in trainer.score(parsed, all_validation=True)]
    return pd.DataFrame(columns, index=archs)


def proxy_validity(rewards: pd.DataFrame, test_auroc: pd.Series) -> dict[str, Any]:
    """Spearman of supernet reward vs retrained test AUROC, over architectures, per supernet and for their mean."""
    per_supernet = {}
    for name in rewards.columns:
        rho, p = stats.spearmanr(rewards[name], test_auroc[rewards.index])
        per_supernet[name] = {"rho": float(rho), "p": float(p)}
    rho, p = stats.spearmanr(rewards.mean(axis=1), test_auroc[rewards.index])
    return {"n_architectures": len(rewards), "mean_reward": {"rho": float(rho), "p": float(p)}, "per_supernet": per_supernet}


def policy_vs_uniform(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_search = [
        {key: run["final"]["policy_vs_uniform"][key] for key in ("policy_mean", "uniform_mean", "mannwhitney_p")}
        for run in runs
        if run["strategy"] == "enas"
    ]
    differences = [entry["policy_mean"] - entry["uniform_mean"] for entry in per_search]
    return {
        "searches": len(per_search),
        "policy_higher": int(sum(d > 0 for d in differences)),
        "mean_difference": float(np.mean(differences)),
        "per_search": per_search,
    }


def strategy_comparison(results: pd.DataFrame, strategy: str) -> dict[str, Any]:
    """Architecture-level statistics of one strategy's chosen architectures against the sampled ones."""
    mine = results[results.role.isin([strategy, "sampled"])].replace({"role": {strategy: "searched"}})
    return architecture_level(mine, "test_auroc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 searches per strategy, 20 sampled architectures, 2 replicates")
    parser.add_argument("--config", type=Path, default=GRAMMAR)
    parser.add_argument("--searches", type=int, help="independent searches per strategy")
    parser.add_argument("--sampled", type=int, help="uniformly sampled architectures retrained")
    parser.add_argument("--replicates", type=int, help="replicate seeds per architecture")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (e.g. search.iterations=30)")
    parser.add_argument("--out", type=Path, help="where the runs go (default: a temporary folder, kept)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    mode = dict(MODES["quick" if args.quick else "full"])
    mode.update({key: getattr(args, key) for key in mode if getattr(args, key) is not None})
    out = (args.out or Path(tempfile.mkdtemp(prefix="search-efficacy-"))).resolve()
    config = load_config(args.config, parse_overrides(args.set))
    config = config.model_copy(
        update={"retrain": config.retrain.model_copy(update={"sampled": mode["sampled"], "replicates": mode["replicates"]})}
    )
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out}/mlflow.db")
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Tune prints tables; stdout carries only the JSON
            runs = run_searches(config, mode["searches"], out)
            searched = time.perf_counter()
            splits = load_splits(config.data, config.seed)
            space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
            archs = [(run["strategy"], run["final"]["best"]["arch"]) for run in runs]
            archs += [("sampled", arch) for arch in sampled_architectures(config, space)]
            archs = list(dict.fromkeys(archs))  # an architecture chosen by two searches is one unit
            results = run_retrain(config, out / "searches", out / "retrain", archs=archs)
    finally:
        ray.shutdown()
    test_auroc = results.groupby("arch").test_auroc.mean()
    rewards = supernet_rewards(config, runs, list(dict.fromkeys(arch for _, arch in archs)))
    report = {
        "benchmark": "search_efficacy",
        "mode": "quick" if args.quick else "full",
        "config": str(args.config),
        "out": str(out),
        **mode,
        "search": {"iterations": config.search.iterations, "archs_per_iteration": config.search.archs_per_iteration},
        "chosen": [
            {
                "strategy": run["strategy"],
                "seed": run["seed"],
                "arch": run["final"]["best"]["arch"],
                "rescored_reward": run["final"]["best"]["reward"],
                "test_auroc": float(test_auroc[run["final"]["best"]["arch"]]),
            }
            for run in runs
        ],
        "architecture_level": {strategy: strategy_comparison(results, strategy) for strategy in STRATEGIES},
        "reward_vs_test_auroc": proxy_validity(rewards, test_auroc),
        "policy_vs_uniform": policy_vs_uniform(runs),
        "seconds": {"searches": searched - started, "total": time.perf_counter() - started},
    }
    print(json.dumps(report, default=float))


if __name__ == "__main__":
    main()
