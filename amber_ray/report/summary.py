"""The report's summary: best architecture, parameter counts, test metrics and search cost.

Cost is resource-hours: the search's wall time (its MLflow run, start to end) times the
resources it held (``search.workers`` x ``cpus_per_worker`` / ``gpus_per_worker``); retraining
is the sum of the trials' training times times ``retrain.cpus_per_trial`` / ``gpus_per_trial``.
Resources are read from the config logged with each MLflow run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from amber_ray.report.parts import RetrainPart, RunParts, SearchPart
from amber_ray.tracking import RunTracker, find_step_run

MS_PER_HOUR = 3_600_000


@dataclass
class Cost:
    stage: str
    hours: float  # wall hours (search) or summed trial hours (retraining)
    cpus: float
    gpus: float
    basis: str

    @property
    def cpu_hours(self) -> float:
        return self.hours * self.cpus

    @property
    def gpu_hours(self) -> float:
        return self.hours * self.gpus


@dataclass
class Summary:
    name: str | None = None
    best: dict[str, Any] | None = None  # arch, reward, iteration, num_params (and search_reward when re-scored)
    best_source: str = ""
    strategy: str | None = None  # enas or random; None for a search from before strategies were recorded
    selection: dict[str, Any] | None = None  # final_architectures.json "selection": rule, candidates
    policy_vs_uniform: dict[str, Any] | None = None  # final_architectures.json "policy_vs_uniform"
    greedy: str | None = None  # ENAS only
    top_k: list[dict[str, Any]] = field(default_factory=list)
    layers_per_block: int | None = None
    search_counts: dict[str, int] = field(default_factory=dict)
    roles: pd.DataFrame | None = None  # per role: trials, architectures, parameters
    overall: dict[str, Any] = field(default_factory=dict)  # compare_results()["overall"]
    params_vs_auroc: dict[str, Any] = field(default_factory=dict)  # compare_results()["params_vs_auroc"]
    architecture_level: dict[str, Any] = field(default_factory=dict)  # compare_results()["architecture_level"]
    random_search: dict[str, Any] | None = None  # compare_results()["random_search"]: random search's choice
    provisional: bool = False  # retraining results of an unfinished grid
    costs: list[Cost] = field(default_factory=list)


def tracked_runs(run: RunParts) -> dict[str, RunTracker]:
    """The MLflow parent runs of the search and retrain commands that can be found (their store beside or above them)."""
    found: dict[str, RunTracker] = {}
    for name, part in (("search", run.search), ("retrain", run.retrain)):
        if part is not None and part.run_id:
            tracker = find_step_run(part.directory, part.run_id)
            if tracker is not None:
                found[name] = tracker
    return found


def best_architecture(search: SearchPart) -> tuple[dict[str, Any] | None, str]:
    """The chosen architecture and the rule that chose it (``selection.rule``; older searches took the best of the last step)."""
    if search.final is not None:
        rule = (search.final.get("selection") or {}).get("rule")
        return search.final["best"], rule or "best of the last controller step"
    if search.history is not None and not search.history.empty:
        row = search.history.loc[search.history.reward.idxmax()]
        best = {"arch": row.arch, "reward": float(row.reward), "iteration": int(row.iteration), "num_params": int(row.num_params)}
        return best, "best reward so far (the search has not finished)"
    return None, ""


def role_table(retrain: RetrainPart) -> pd.DataFrame | None:
    if retrain.results is None or retrain.results.empty:
        return None
    grouped = retrain.results.groupby("role")
    table = pd.DataFrame(
        {
            "trials": grouped.size(),
            "architectures": grouped.arch.nunique(),
            "parameters (median)": grouped.num_params.median().astype(int),
            "parameters (min-max)": grouped.num_params.agg(lambda p: f"{p.min():,}-{p.max():,}"),
        }
    )
    return table.reindex(
        [role for role in ("searched", "sampled") if role in table.index]
        + [r for r in table.index if r not in ("searched", "sampled")]
    )


def search_cost(details: dict[str, Any] | None) -> Cost | None:
    """Wall time of the search's MLflow run (:meth:`RunTracker.details`) times the workers' resources."""
    if details is None:
        return None
    params = details["params"]
    end = details["end_time"] or int(time.time() * 1000)
    workers = float(params.get("search.workers", 1))
    return Cost(
        "search",
        (end - details["start_time"]) / MS_PER_HOUR,
        workers * float(params.get("search.cpus_per_worker", 1)),
        workers * float(params.get("search.gpus_per_worker", 0)),
        "MLflow run start to end" if details["end_time"] else "MLflow run start to now (still running)",
    )


def retrain_cost(details: dict[str, Any] | None, retrain: RetrainPart) -> Cost | None:
    """Summed training time of the trials times each trial's resources."""
    results = retrain.results
    if results is None or "wall_seconds" not in results:
        return None
    params = details["params"] if details is not None else {}
    basis = f"sum of the {'finished ' if retrain.provisional else ''}trials' training times"
    basis += "" if params else "; 1 CPU per trial assumed (no MLflow run found)"
    cpus, gpus = float(params.get("retrain.cpus_per_trial", 1)), float(params.get("retrain.gpus_per_trial", 0))
    return Cost("retraining", float(results.wall_seconds.sum()) / 3600, cpus, gpus, basis)


def build_summary(run: RunParts, trackers: dict[str, RunTracker]) -> Summary:
    details = {name: tracker.details() for name, tracker in trackers.items()}
    summary = Summary(name=next((d["params"]["name"] for d in details.values() if "name" in d["params"]), None))
    search_params = details["search"]["params"] if "search" in details else {}
    if run.search is not None:
        summary.best, summary.best_source = best_architecture(run.search)
        final = run.search.final
        if final is not None:
            summary.strategy = final.get("strategy")
            summary.selection = final.get("selection")
            summary.policy_vs_uniform = final.get("policy_vs_uniform")
            summary.greedy = (final.get("greedy") or {}).get("arch")
            summary.top_k = final.get("top_k", [])
        if "space.layers_per_block" in search_params:
            summary.layers_per_block = int(search_params["space.layers_per_block"])
        history = run.search.history
        if history is not None and not history.empty:
            summary.search_counts = {
                "iterations": int(history.iteration.nunique()),
                "sampled": len(history),
                "distinct": int(history.arch.nunique()),
            }
        summary.costs.append(search_cost(details.get("search")))
    if run.retrain is not None:
        summary.roles = role_table(run.retrain)
        summary.provisional = run.retrain.provisional
        summary.overall = (run.retrain.comparison or {}).get("overall", {})
        summary.params_vs_auroc = (run.retrain.comparison or {}).get("params_vs_auroc", {})
        summary.architecture_level = (run.retrain.comparison or {}).get("architecture_level", {})
        summary.random_search = (run.retrain.comparison or {}).get("random_search")
        summary.costs.append(retrain_cost(details.get("retrain"), run.retrain))
    summary.costs = [cost for cost in summary.costs if cost is not None]
    return summary
