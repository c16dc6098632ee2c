"""Does the search find better architectures than random sampling? Prints one JSON object.

On the motif-grammar task (``jobs/configs/grammar.yaml``: a label decided by the spacing and
orientation of two motifs, so receptive field and dilation matter), it runs K independent
searches per strategy (``enas``; ``random``: uniform sampling on the same supernet, budget and
final choice; ``evolution``: regularized evolution, likewise), then retrains every chosen
architecture and M uniformly sampled ones through the retraining grid (Ray Tune, early stopping,
test set). Statistics are per architecture (the mean of its replicates), never per replicate seed:

- per strategy, the percentile of each chosen architecture among the sampled ones, a one-sided
  Mann-Whitney test and a bootstrap interval of the difference in mean test AUROC
  (:func:`amber_ray.compare.architecture_level`);
- is the supernet reward a valid proxy? Every retrained architecture is scored on all validation
  data by each search's final supernet; Kendall tau and Spearman of that reward with the
  retrained test AUROC;
- per ENAS search, the mean reward of controller samples against uniform samples on its own
  final supernet (``final_architectures.json``, ``policy_vs_uniform``).

``--quick`` (4 searches per strategy, 20 sampled architectures, 2 replicates) is sized for about
30 minutes on 2 cores; the default is for a bigger machine. Outputs stay in ``--out``.

``--map`` runs the regime map instead: the same comparison in every cell of space size (the small
profile's 4 layers, 8 layers, the DeepSEA space's 12 layers in 4 blocks of 3, all narrowed to
CPU-sized filters) x task difficulty (the grammar task, and a wide one: 300 bp with the motif
pair 120 bp apart, so only a large receptive field sees it and good architectures are rare). Per
cell: the share of sampled architectures in the top group (test AUROC within ``TOP_GROUP`` of
the best retrained one), each strategy's percentile among the sampled ones, ENAS - random in mean
test AUROC of the chosen architectures with a bootstrap interval over searches, the proxy's
Kendall tau, and wall time. ``--cells`` picks cells by name; ``--searches`` and ``--workers``
(supernet workers per search; Tune runs retraining trials side by side on its own) scale the same
command to a cluster. The CPU defaults (2 searches per strategy, 8 sampled, 1 replicate, 30
iterations) ran all six cells in 101 minutes on 2 shared cores (7 to 28 minutes a cell, the
12-layer and wide cells the longest).
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
from amber_ray.config import ExperimentConfig, _deep_merge, load_config, parse_config, parse_overrides
from amber_ray.data import load_splits
from amber_ray.retrain import run_retrain, sampled_architectures
from amber_ray.search.loop import checkpoint_path, run_search
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import SupernetTrainer

STRATEGIES = ("enas", "random", "evolution")
GRAMMAR = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "grammar.yaml"
MODES = {
    "quick": {"searches": 4, "sampled": 20, "replicates": 2},
    "full": {"searches": 10, "sampled": 30, "replicates": 3},
    "map": {"searches": 2, "sampled": 8, "replicates": 1},
}
TOP_GROUP = 0.01  # test AUROC within this of the best retrained architecture of a cell
# Space size: CPU-sized filters everywhere, so the cells differ in depth and skip choices, not width.
MAP_SPACES: dict[str, dict[str, Any]] = {
    "layers4": {"profile": "small", "first_filters": 16, "stem_channels": 16, "dense_units": 32},
    "layers8": {
        "profile": "small",
        "num_layers": 8,
        "layers_per_block": 4,
        "reduction": 2,
        "first_filters": 16,
        "stem_channels": 16,
        "dense_units": 32,
    },
    "layers12": {
        "profile": "deepsea",
        "num_layers": 12,
        "layers_per_block": 3,
        "reduction": 2,
        "first_filters": 8,
        "stem_channels": 16,
        "dense_units": 32,
    },
}
# Task difficulty: the grammar task as configured, and a wide one needing a receptive field of ~130 bp.
MAP_TASKS: dict[str, dict[str, Any]] = {
    "grammar": {},
    "wide": {"length": 300, "spacing": 120, "decoy_min_shift": 10, "decoy_max_shift": 30, "num_sequences": 6000},
}
MAP_SEARCH = {"iterations": 30, "archs_per_iteration": 10, "train_batches_per_iteration": 40}
MAP_TRAIN = {"max_epochs": 10, "patience": 3}

log = logging.getLogger(__name__)


def map_config(base: ExperimentConfig, space: str, task: str, workers: int) -> ExperimentConfig:
    """The base config with a map cell's space and task, the map's search schedule and ``workers`` supernet workers."""
    raw = base.model_dump(mode="json")
    raw["name"] = f"{base.name}-{space}-{task}"
    raw["space"] = MAP_SPACES[space]
    raw["data"]["simulate"].update(MAP_TASKS[task])
    raw["search"].update({**MAP_SEARCH, "workers": workers})
    raw["train"].update(MAP_TRAIN)
    return parse_config(raw)


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


def rank_agreement(reward: pd.Series, test_auroc: pd.Series) -> dict[str, float]:
    """Spearman rho and Kendall tau (with their p values) of the supernet reward against test AUROC."""
    rho, rho_p = stats.spearmanr(reward, test_auroc[reward.index])
    tau, tau_p = stats.kendalltau(reward, test_auroc[reward.index])
    return {"rho": float(rho), "p": float(rho_p), "kendall_tau": float(tau), "kendall_p": float(tau_p)}


def proxy_validity(rewards: pd.DataFrame, test_auroc: pd.Series) -> dict[str, Any]:
    """Rank agreement of supernet reward with retrained test AUROC, over architectures, per supernet and for their mean."""
    per_supernet = {name: rank_agreement(rewards[name], test_auroc) for name in rewards.columns}
    taus = [entry["kendall_tau"] for entry in per_supernet.values()]
    return {
        "n_architectures": len(rewards),
        "mean_reward": rank_agreement(rewards.mean(axis=1), test_auroc),
        "median_kendall_tau_per_supernet": float(np.nanmedian(taus)),
        "per_supernet": per_supernet,
    }


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


def search_difference(chosen: list[dict[str, Any]], a: str, b: str, n_boot: int = 10_000) -> dict[str, Any]:
    """Mean test AUROC of strategy ``a``'s chosen architectures minus ``b``'s, one value per independent
    search, with a 95 % percentile-bootstrap interval (searches drawn with replacement within each strategy)."""
    first = np.array([c["test_auroc"] for c in chosen if c["strategy"] == a])
    second = np.array([c["test_auroc"] for c in chosen if c["strategy"] == b])
    if not len(first) or not len(second):
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "searches": [len(first), len(second)]}
    rng = np.random.default_rng(0)
    boot = first[rng.integers(0, len(first), (n_boot, len(first)))].mean(1) - second[
        rng.integers(0, len(second), (n_boot, len(second)))
    ].mean(1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {
        "mean": float(first.mean() - second.mean()),
        "low": float(low),
        "high": float(high),
        "searches": [len(first), len(second)],
    }


def run_comparison(config: ExperimentConfig, mode: dict[str, int], out: Path) -> dict[str, Any]:
    """K searches per strategy, their choices and M sampled architectures retrained; the statistics of the module's docstring."""
    config = config.model_copy(
        update={"retrain": config.retrain.model_copy(update={"sampled": mode["sampled"], "replicates": mode["replicates"]})}
    )
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune prints tables; stdout carries only the JSON
        runs = run_searches(config, mode["searches"], out)
        searched = time.perf_counter()
        splits = load_splits(config.data, config.seed)
        space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
        archs = [(run["strategy"], run["final"]["best"]["arch"]) for run in runs]
        archs += [("sampled", arch) for arch in sampled_architectures(config, space)]
        archs = list(dict.fromkeys(archs))  # an architecture chosen by two searches is one unit
        results = run_retrain(config, out / "searches", out / "retrain", archs=archs)
    test_auroc = results.groupby("arch").test_auroc.mean()
    rewards = supernet_rewards(config, runs, list(dict.fromkeys(arch for _, arch in archs)))
    chosen = [
        {
            "strategy": run["strategy"],
            "seed": run["seed"],
            "arch": run["final"]["best"]["arch"],
            "rescored_reward": run["final"]["best"]["reward"],
            "test_auroc": float(test_auroc[run["final"]["best"]["arch"]]),
        }
        for run in runs
    ]
    sampled = results[results.role == "sampled"].groupby("arch").test_auroc.mean()
    best = float(test_auroc.max())
    return {
        "space_size": float(space.size()),
        "search": {"iterations": config.search.iterations, "archs_per_iteration": config.search.archs_per_iteration},
        "chosen": chosen,
        "top_group": {
            "within": TOP_GROUP,
            "best_test_auroc": best,
            "sampled_share": float((sampled >= best - TOP_GROUP).mean()) if len(sampled) else float("nan"),
        },
        "architecture_level": {strategy: strategy_comparison(results, strategy) for strategy in STRATEGIES},
        "enas_minus_random": search_difference(chosen, "enas", "random"),
        "evolution_minus_random": search_difference(chosen, "evolution", "random"),
        "reward_vs_test_auroc": proxy_validity(rewards, test_auroc),
        "policy_vs_uniform": policy_vs_uniform(runs),
        "seconds": {"searches": searched - started, "total": time.perf_counter() - started},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 searches per strategy, 20 sampled architectures, 2 replicates")
    parser.add_argument("--map", action="store_true", help="the regime map over space size x task difficulty")
    parser.add_argument("--cells", nargs="+", help="map cells to run, as SPACE-TASK (default: all)")
    parser.add_argument("--config", type=Path, default=GRAMMAR)
    parser.add_argument("--searches", type=int, help="independent searches per strategy")
    parser.add_argument("--sampled", type=int, help="uniformly sampled architectures retrained")
    parser.add_argument("--replicates", type=int, help="replicate seeds per architecture")
    parser.add_argument("--workers", type=int, default=1, help="supernet workers per search (--map)")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (e.g. search.iterations=30)")
    parser.add_argument("--out", type=Path, help="where the runs go (default: a temporary folder, kept)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    name = "map" if args.map else "quick" if args.quick else "full"
    mode = dict(MODES[name])
    mode.update({key: getattr(args, key) for key in mode if getattr(args, key) is not None})
    out = (args.out or Path(tempfile.mkdtemp(prefix="search-efficacy-"))).resolve()
    overrides = parse_overrides(args.set)
    config = load_config(args.config)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out}/mlflow.db")
    report: dict[str, Any] = {"benchmark": "search_efficacy", "mode": name, "config": str(args.config), "out": str(out), **mode}
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        if args.map:
            cells = args.cells or [f"{space}-{task}" for space in MAP_SPACES for task in MAP_TASKS]
            report["workers"] = args.workers
            report["cells"] = {}
            for cell in cells:
                space, _, task = cell.partition("-")
                if space not in MAP_SPACES or task not in MAP_TASKS:
                    parser.error(
                        f"unknown cell {cell!r}; cells are SPACE-TASK with SPACE in {list(MAP_SPACES)}, TASK in {list(MAP_TASKS)}"
                    )
                cell_config = load_config_with(map_config(config, space, task, args.workers), overrides)
                report["cells"][cell] = run_comparison(cell_config, mode, out / cell)
                log.info("cell %s done: %s", cell, json.dumps(report["cells"][cell]["enas_minus_random"]))
        else:
            report.update(run_comparison(load_config_with(config, overrides), mode, out))
    finally:
        ray.shutdown()
    print(json.dumps(report, default=float))


def load_config_with(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """``config`` with ``--set`` overrides applied on top (they win over the map's settings)."""
    return parse_config(_deep_merge(config.model_dump(mode="json"), overrides))


if __name__ == "__main__":
    main()
