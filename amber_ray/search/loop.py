"""The search driver: moves architecture strings and rewards between the actors.

Per iteration (:func:`amber_ray.search.core.run_iteration`, AMBER / ENAS): the policy samples K
architectures, the supernet scores them on validation data (reward = the search objective of
their mean validation AUROC), the policy learns from the rewards, and the supernet trains one
pass with an architecture freshly sampled per mini-batch. Before the first iteration the supernet
warms up for one pass with uniformly sampled architectures. The policy is the LSTM controller
(``search.strategy: enas``), uniform sampling (``random``, the ablation) or regularized evolution
(``evolution``): everything else, budget and final choice included, is the same.

At the end the best distinct architectures of the last iterations are re-scored on all
validation data and the highest is chosen (one lucky reward on a subsample does not decide), and
controller samples are scored against uniform samples on the final supernet. The re-scored
candidates' reward-vs-size Pareto front is written beside the choice.

Every iteration ends with an atomic, checksummed checkpoint (controller, supernet, optimizers,
RNG, history, iteration) under ``<out>/checkpoints``; ``resume=True`` continues from it, or from
the previous one when it is damaged. MLflow logging of an iteration happens after its checkpoint,
is repeated on resume if it did not complete, and skips what the store already holds, so every
iteration is tracked exactly once.

An actor that dies (a preempted node, an out-of-memory kill) costs at most the iteration in
flight: every actor is replaced, the supernet's process group is formed again, all of them are
reloaded from the last checkpoint and the iteration runs again, up to ``search.max_failures``
times per search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import ray
from ray.util.placement_group import PlacementGroup, placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy
from scipy import stats as scipy_stats
from torch.distributed import DistError

from amber_ray import outputs, storage
from amber_ray.atomic import atomic_write_json, atomic_write_table
from amber_ray.checkpoint import (
    CONFIG_KEY,
    checkpoint_ops,
    checkpoint_strategy,
    fetch_checkpoint,
    has_checkpoint,
    load_checkpoint,
    mirror_checkpoint,
    save_checkpoint,
    search_payload,
)
from amber_ray.cluster import refuse_shared_gpus, require, require_storage
from amber_ray.config import RESUME_SAFE_KEYS, SEARCH_IGNORES, ExperimentConfig, check_resume, config_as_flat_dict
from amber_ray.data import SearchData, Splits, load_search_data
from amber_ray.distributed import RENDEZVOUS_TIMEOUT_S
from amber_ray.errors import AmberInputError
from amber_ray.objective import pareto_front
from amber_ray.search.actors import ControllerActor, SupernetWorker
from amber_ray.search.core import WARMUP_ITERATION, Iteration, Schedule, Score, rewards_of, run_iteration, warmup_archs
from amber_ray.space import ModelSpace
from amber_ray.tracking import RunTracker
from amber_ray.training import positive_weights, training_source

logger = logging.getLogger(__name__)

PLACEMENT_LOG_INTERVAL_S = 60.0
ACTOR_LOST = ray.exceptions.RayActorError  # also covers ActorDiedError and ActorUnavailableError


class RendezvousTimeout(RuntimeError):
    """The supernet workers' process group did not form in time (a peer slow to start, a network hiccup)."""


RECOVERABLE = (ACTOR_LOST, RendezvousTimeout)

T = TypeVar("T")


@dataclass
class SearchState:
    """Everything a resumed search needs besides the actors' own state."""

    iteration: int = WARMUP_ITERATION
    history: list[dict[str, Any]] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    op_probs: list[list[list[float]]] = field(default_factory=list)
    run_id: str | None = None

    def record(self, iteration: Iteration, number: int) -> None:
        self.history.extend(iteration.rows)
        self.stats.append(iteration.stats)
        self.op_probs.append(iteration.op_probs)
        self.iteration = number


def checkpoint_path(out_dir: Path) -> Path:
    return outputs.search_checkpoint(out_dir)


def has_search_checkpoint(config: ExperimentConfig, out_dir: Path) -> bool:
    """Whether a search in ``out_dir`` can resume; fetches its checkpoint from ``storage`` when only that has it."""
    if config.storage is None:
        return has_checkpoint(checkpoint_path(out_dir))
    path = checkpoint_path(out_dir)
    return fetch_checkpoint(path, storage.location(config.storage, path.parent))


def gather(refs: Sequence[ray.ObjectRef]) -> list[Any]:
    """``ray.get`` of the calls to several workers, raising as soon as one of them has died.

    A plain ``ray.get`` waits for the results in order, so it would wait on a survivor blocked in
    a collective with the dead worker. When a worker raised instead (its peer vanished mid
    all-reduce), the others are still awaited so that a dead actor is reported as such.
    """
    pending, failed = list(refs), None
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            ray.get(ready[0])
        except ACTOR_LOST:
            raise
        except ray.exceptions.RayTaskError as error:
            failed = failed or error
    if failed is not None:
        raise failed
    return ray.get(list(refs))


def worker_placement_group(workers: int, cpus: float, gpus: float) -> PlacementGroup:
    """One bundle per supernet worker, spread over nodes where possible; returns once all are reserved.

    :func:`amber_ray.cluster.require` has checked that the cluster can hold them (now or once
    the autoscaler has started nodes), so this waits as long as that takes, saying so.
    """
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {})}
    group = placement_group([dict(bundle) for _ in range(workers)], strategy="SPREAD")
    while not ray.wait([group.ready()], timeout=PLACEMENT_LOG_INTERVAL_S)[0]:
        logger.info("waiting for %d supernet worker(s) of %s to be placed (nodes starting?)", workers, bundle)
    return group


class RemotePolicy:
    """The controller actor as a :class:`~amber_ray.search.core.TextPolicy`."""

    def __init__(self, actor: ray.actor.ActorHandle):
        self.actor = actor

    def sample(self, n: int) -> tuple[list[str], np.ndarray]:
        return ray.get(self.actor.sample.remote(n))

    def update(self, archs: list[str], rewards: list[float]) -> dict[str, float]:
        return ray.get(self.actor.update.remote(archs, rewards))


class SearchDriver:
    """Runs one search on Ray: a controller actor holding the policy and W supernet workers.

    Each iteration is :func:`~amber_ray.search.core.run_iteration` with the controller actor as
    the policy and this driver as the supernet (``score`` spreads architectures over the workers,
    ``train_pass`` runs one data-parallel pass on all of them), followed by an atomic checkpoint.
    The workers are gang-scheduled (one placement group) before their process group forms. The
    driver holds no weights: only architecture strings, rewards and the history. MLflow is not
    its business (:class:`SearchTracking`).
    """

    rendezvous_timeout_s = RENDEZVOUS_TIMEOUT_S

    def __init__(self, config: ExperimentConfig, out_dir: Path, splits: Splits | SearchData):
        self.config = config
        self.search = config.search
        self.seed = config.search_seed
        self.out_dir = out_dir
        self.space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
        require(
            {
                "CPU": ("search.cpus_per_worker", self.search.cpus_per_worker),
                "GPU": ("search.gpus_per_worker", self.search.gpus_per_worker),
            },
            self.search.workers,
            "search.workers",
        )
        refuse_shared_gpus(self.search.gpus_per_worker, self.search.workers, config.train.device)
        require_storage(config.storage)
        self.gpus = self.search.gpus_per_worker
        # In-memory data goes through the object store once; HDF5 files go as small handles that
        # each worker streams from itself (the whole training set never enters the store).
        # Training batches on a random strand (train.reverse_complement), positives weighted (train.pos_weight).
        self.data_refs = (ray.put(training_source(config, splits.train)), ray.put(splits.valid))
        self.pos_weight = positive_weights(config.train.pos_weight, splits.train)
        self.failures = 0
        self.state = SearchState()
        try:
            self.start_actors()
        except RECOVERABLE as error:  # a worker lost or a group not formed at the start counts as at any time
            self.recover(error)
        self.num_batches = ray.get(
            self.workers[0].num_batches.remote(self.search.batch_size, self.search.train_batches_per_iteration)
        )
        self.schedule = Schedule(self.search.archs_per_iteration, self.num_batches, self.search.batch_size, self.search.objective)

    def start_actors(self) -> None:
        """The controller and W supernet workers, gang-scheduled; with several workers, their process group.

        The controller stays on the driver's node (the head on a cluster): losing a worker node
        must not take the policy with it, nor may a replacement land on a node that is dying.
        The workers' placement group is ready (every node they need is up, the autoscaler may
        have had to start some) before any of them starts, and all of them are set up (data
        staged on their nodes) before the process group forms: a rendezvous then waits for
        peers that are already running, never for a node still booting.
        """
        beside_driver = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self.controller = ControllerActor.options(num_cpus=0, scheduling_strategy=beside_driver).remote(
            self.space, self.search, self.seed
        )
        threads = max(1, int(self.search.cpus_per_worker))
        self.placement_group = worker_placement_group(self.search.workers, self.search.cpus_per_worker, self.gpus)
        self.workers = [
            SupernetWorker.options(
                num_cpus=self.search.cpus_per_worker,
                num_gpus=self.gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=rank),
            ).remote(self.space, *self.data_refs, self.search, self.seed, threads, self.config.train.device, self.pos_weight)
            for rank in range(self.search.workers)
        ]
        try:
            gather([worker.ready.remote() for worker in self.workers])
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, AmberInputError):  # the one line it is, not Ray's traceback
                self.close()  # bad input: no retry, nothing left holding the cluster's resources
                raise AmberInputError(error.cause.problem, error.cause.source, error.cause.record) from None
            raise
        if len(self.workers) > 1:
            self.form_group(self.workers)

    def form_group(self, workers: Sequence[ray.actor.ActorHandle]) -> None:
        """The process group of all workers, joined by ``workers`` (all of them but in a test).

        A group that does not form within :attr:`rendezvous_timeout_s` is a :class:`RendezvousTimeout`,
        which the search recovers from as from a lost actor.
        """
        address, port = ray.get(self.workers[0].rendezvous.remote())
        world_size, timeout = len(self.workers), self.rendezvous_timeout_s
        try:
            gather([worker.join.remote(rank, world_size, address, port, timeout) for rank, worker in enumerate(workers)])
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, DistError):
                raise RendezvousTimeout(str(error.cause).splitlines()[0]) from None
            raise

    def close(self) -> None:
        for actor in (self.controller, *self.workers):
            ray.kill(actor)
        ray.util.remove_placement_group(self.placement_group)

    def recover(self, error: BaseException) -> None:
        """Replace every actor and reload the last checkpoint (a fresh search if none was written yet).

        A replacement can die too while it is reloaded (placed on a node whose death Ray has not
        noticed yet): that is one more failure, and the recovery starts over.
        """
        while True:
            self.failures += 1
            if self.failures > self.search.max_failures:
                raise error
            logger.warning(
                "an actor of the search died or its workers' group did not form (%s); restarting all actors from the "
                "last checkpoint (failure %d of at most %d)",
                type(error).__name__,
                self.failures,
                self.search.max_failures,
            )
            try:
                self.restart_actors()
                return
            except RECOVERABLE as again:
                error = again

    def restart_actors(self) -> None:
        self.close()
        self.start_actors()
        path = checkpoint_path(self.out_dir)
        if has_checkpoint(path):
            self.restore(load_checkpoint(path))
        else:
            self.state = SearchState(run_id=self.state.run_id)

    def with_recovery(self, step: Callable[[], T]) -> T:
        """Run ``step`` (which ends with a checkpoint); if an actor dies, recover and run it again."""
        while True:
            try:
                return step()
            except RECOVERABLE as error:
                self.recover(error)

    def train_pass(self, archs: list[str], iteration: int, batch_size: int) -> float:
        """Every worker takes its share of each global batch; returns the mean loss."""
        return float(np.mean(gather([w.train_pass.remote(archs, iteration, batch_size) for w in self.workers])))

    def score(self, archs: list[str], all_validation: bool = False) -> list[Score]:
        """``(AUROC, half-1 AUROC, half-2 AUROC, parameters, latency)``, scored round-robin across the workers (identical replicas)."""
        return self.round_robin("score", archs, all_validation)

    def finetune(self, archs: list[str]) -> list[float]:
        """Validation AUROC of each architecture after ``search.final_finetune_epochs`` epochs on its own from the
        supernet's weights, shared round-robin across the workers."""
        return self.round_robin("finetune", archs, self.config.train, self.search.final_finetune_epochs)

    def round_robin(self, method: str, archs: list[str], *args: Any) -> list:
        """The workers' ``method`` on ``archs``, worker r taking every W-th from r; the results in ``archs``' order."""
        count = len(self.workers)
        shards = gather([getattr(worker, method).remote(archs[rank::count], *args) for rank, worker in enumerate(self.workers)])
        results: list = [None] * len(archs)
        for rank, shard in enumerate(shards):
            results[rank::count] = shard
        return results

    # --- checkpoints ---------------------------------------------------------------------------

    def save(self) -> None:
        controller_state, worker_state = ray.get([self.controller.state.remote(), self.workers[0].state.remote()])
        save_checkpoint(
            search_payload(
                iteration=self.state.iteration,
                history=self.state.history,
                stats=self.state.stats,
                op_probs=self.state.op_probs,
                run_id=self.state.run_id,
                controller=controller_state,
                supernet=worker_state,
                ops=self.space.ops,
                strategy=self.search.strategy,
                config=self.config.model_dump(mode="json"),
            ),
            checkpoint_path(self.out_dir),
        )
        if self.config.storage is not None:
            path = checkpoint_path(self.out_dir)
            mirror_checkpoint(path, storage.location(self.config.storage, path.parent))

    def restore(self, payload: dict[str, Any]) -> None:
        if checkpoint_ops(payload) != self.space.ops:
            raise AmberInputError("checkpoint was written for another model space", checkpoint_path(self.out_dir))
        if checkpoint_strategy(payload) != self.search.strategy:
            written_by = checkpoint_strategy(payload)
            problem = f"checkpoint was written by a search.strategy {written_by!r} search, not {self.search.strategy!r}"
            raise AmberInputError(problem, checkpoint_path(self.out_dir))
        ray.get([self.controller.load.remote(payload["controller"]), *(w.load.remote(payload["supernet"]) for w in self.workers)])
        self.state = SearchState(
            payload["iteration"], payload["history"], payload["stats"], payload["op_probs"], payload["run_id"]
        )

    def advance(self) -> dict[str, float]:
        """The next iteration, then its checkpoint."""
        stats = self.run_iteration(self.state.iteration + 1)
        self.save()
        return stats

    # --- the loop ------------------------------------------------------------------------------

    def begin(self, run_id: str) -> None:
        """Start a fresh search tracked in MLflow run ``run_id``: warm the supernet up and checkpoint."""
        self.state.run_id = run_id
        self.with_recovery(self.warm_up)

    def warm_up(self) -> None:
        """One pass of the supernet with uniformly sampled architectures (paper: batch 1000)."""
        batch = self.search.warmup_batch_size
        batches = ray.get(self.workers[0].num_batches.remote(batch, None))
        self.train_pass(warmup_archs(self.space, self.seed, batches), WARMUP_ITERATION, batch)
        self.save()

    def run_iteration(self, iteration: int) -> dict[str, float]:
        """One iteration (:func:`~amber_ray.search.core.run_iteration`), recorded in the search's state."""
        result = run_iteration(RemotePolicy(self.controller), self, iteration, self.schedule)
        self.state.record(result, iteration)
        return result.stats

    def write_outputs(self) -> dict[str, Any]:
        history = outputs.history_table(self.state.history)
        atomic_write_table(history, self.out_dir / outputs.HISTORY)
        atomic_write_table(outputs.op_probs_table(self.state.op_probs, self.space.ops), self.out_dir / outputs.OP_PROBS)
        atomic_write_table(pd.DataFrame(self.state.stats), self.out_dir / outputs.CONTROLLER_STATS)
        final = {"strategy": self.search.strategy, **self.select_final(history)}
        greedy = ray.get(self.controller.greedy.remote())
        if greedy is not None:
            final["greedy"] = {"arch": greedy}
        final["top_k"] = top_architectures(history, self.search.top_k)
        if self.search.final_samples:
            final["policy_vs_uniform"] = self.policy_vs_uniform(self.search.final_samples)
        atomic_write_json(final, self.out_dir / outputs.FINAL_ARCHITECTURES)
        return final

    def select_final(self, history: pd.DataFrame) -> dict[str, Any]:
        """Re-score the best candidates of the last iterations on all validation data; choose the highest.

        The search reward of the best of many architectures is biased upwards (winner's curse):
        its subsample and noise favoured it. A second, larger measurement of a few candidates is not.
        With ``search.final_finetune_epochs`` that measurement is each candidate's validation AUROC
        after a short training on its own from the supernet's weights (its supernet AUROC is kept).
        """
        search = self.search
        recent = history[history.iteration > history.iteration.max() - search.final_iterations]
        candidates = (
            recent.sort_values(["reward", "iteration"], ascending=[False, True])
            .drop_duplicates("arch")
            .head(search.final_candidates)
        )
        scored = self.score(list(candidates.arch), all_validation=True)
        supernet_aurocs = [score[0] for score in scored]
        how = "re-scored on all validation data"
        if epochs := search.final_finetune_epochs:
            scored = [(auroc, *score[1:]) for auroc, score in zip(self.finetune(list(candidates.arch)), scored)]
            how = f"each trained {epochs} epoch(s) on its own from the supernet's weights, then scored on all validation data"
        rule = (
            f"top {search.final_candidates} distinct architectures of the last {search.final_iterations} iterations "
            f"by search reward, {how}; highest re-scored reward chosen"
        )
        rescored = rewards_of(scored, search.objective)
        rows = [
            {
                "arch": row.arch,
                "search_reward": float(row.reward),
                "iteration": int(row.iteration),
                "num_params": int(row.num_params),
                "rescored_reward": reward,
                "rescored_auroc": score[0],
                **({"supernet_auroc": supernet_auroc} if epochs else {}),
            }
            for row, reward, score, supernet_auroc in zip(candidates.itertuples(), rescored, scored, supernet_aurocs)
        ]
        best = max(rows, key=lambda row: row["rescored_reward"])  # the first of equals: the higher search reward
        return {
            "best": {
                "arch": best["arch"],
                "reward": best["rescored_reward"],
                "search_reward": best["search_reward"],
                "iteration": best["iteration"],
                "num_params": best["num_params"],
            },
            "selection": {"rule": rule, "objective": search.objective.model_dump(mode="json"), "candidates": rows},
            "pareto_front": [
                {key: row[key] for key in ("arch", "num_params", "rescored_auroc", "rescored_reward")}
                for row in pareto_front(rows, "rescored_auroc")
            ],
        }

    def policy_vs_uniform(self, n: int) -> dict[str, Any]:
        """Rewards of ``n`` policy samples and ``n`` uniform samples on the final supernet (search's scoring set).

        Is the policy better than chance on the very supernet that trained it? The one-sided
        Mann-Whitney p value asks whether policy samples score higher.
        """
        policy, _ = ray.get(self.controller.sample.remote(n))
        rng = np.random.default_rng([self.seed, 13])
        uniform = [self.space.sample(rng, self.search.controller.skip_target).to_text() for _ in range(n)]
        scored = self.score(policy + uniform)
        rewards = rewards_of(scored, self.search.objective)
        policy_rewards, uniform_rewards = rewards[:n], rewards[n:]
        test = scipy_stats.mannwhitneyu(policy_rewards, uniform_rewards, alternative="greater")
        return {
            "policy": policy_rewards,
            "uniform": uniform_rewards,
            "policy_mean": float(np.mean(policy_rewards)),
            "uniform_mean": float(np.mean(uniform_rewards)),
            "mannwhitney_p": float(test.pvalue),
        }


def top_architectures(history: pd.DataFrame, top_k: int) -> list[dict[str, Any]]:
    """The ``top_k`` distinct architectures of the whole search by search reward."""
    distinct = history.sort_values(["reward", "iteration"], ascending=[False, True]).drop_duplicates("arch")
    return [
        {"arch": row.arch, "reward": float(row.reward), "iteration": int(row.iteration), "num_params": int(row.num_params)}
        for row in distinct.head(top_k).itertuples()
    ]


def run_search(
    config: ExperimentConfig,
    out_dir: str | Path,
    resume: bool = False,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a search into ``out_dir``; returns the final architectures.

    Ray must already be initialised (``amber_ray.cluster.connect``).
    """
    out_dir = Path(out_dir).resolve()
    if resume:
        has_search_checkpoint(config, out_dir)  # fetches a mirrored checkpoint when the local one is gone
    payload = load_checkpoint(checkpoint_path(out_dir)) if resume else None
    if not resume and has_checkpoint(checkpoint_path(out_dir)):
        raise AmberInputError("a search already ran here; pass --resume to continue it or choose another --out", out_dir)
    if payload is not None:
        check_resume_config(payload, config, checkpoint_path(out_dir))
    driver = SearchDriver(config, out_dir, load_search_data(config.data, config.seed))
    try:
        if payload is not None:
            driver.restore(payload)
        tracker = RunTracker.start(
            out_dir,
            config.name,
            "search",
            {"command": "search"},
            run_id=driver.state.run_id,
            artifacts=storage.artifacts(config.storage, out_dir),
        )
        with tracker:
            tracking = SearchTracking(tracker, driver.space)
            if tracker.run_id != driver.state.run_id:  # a new run (also a resume whose run the store does not know)
                tracker.log_params(config_as_flat_dict(config))
                placements = ray.get([worker.placement.remote() for worker in driver.workers])
                tracker.set_tags(
                    {
                        "space_size": f"{driver.space.size():.3e}",
                        "worker_nodes": ",".join(p["node_id"] for p in placements),
                        "worker_devices": ",".join(p["device"] for p in placements),
                    }
                )
                if payload is None:
                    driver.begin(tracker.run_id)
                else:
                    driver.state.run_id = tracker.run_id
                    driver.save()  # the checkpoint keeps the new run's id
            tracking.catch_up(driver.state)
            while driver.state.iteration + 1 < config.search.iterations:
                stats = driver.with_recovery(driver.advance)
                tracking.log_iteration(driver.state, driver.state.iteration)
                if on_iteration:
                    on_iteration(stats)
            final = driver.write_outputs()
            finish_tracking(tracker, out_dir, final)
            storage.mirror(config.storage, out_dir, outputs.SEARCH_OUTPUTS)  # what the retraining reads, on a replaced head too
        return final
    except BaseException:
        logger.error("search stopped; resume with: amber-ray search CONFIG --out %s --resume", out_dir)
        raise
    finally:
        driver.close()


class SearchTracking:
    """Logs a search's iterations to its MLflow run, each exactly once.

    An iteration runs again after a restore from an older checkpoint; the search is deterministic,
    so what was logged the first time stands.
    """

    def __init__(self, tracker: RunTracker, space: ModelSpace):
        self.tracker = tracker
        self.space = space
        self.logged_tables = {Path(p).name for p in tracker.list_artifacts("architectures")}
        self.logged_steps = set(tracker.metric_steps("mean_reward"))

    def catch_up(self, state: SearchState) -> None:
        """Log what a killed driver checkpointed but did not get into MLflow, and nothing twice."""
        for iteration in range(state.iteration + 1):
            self.log_iteration(state, iteration)

    def log_iteration(self, state: SearchState, iteration: int) -> None:
        """An iteration's metrics and table, unless the store already holds them."""
        if iteration not in self.logged_steps:
            self.tracker.log_metrics(iteration_metrics(state, iteration, self.space.ops), step=iteration)
            self.logged_steps.add(iteration)
        table = f"iter_{iteration:05d}.parquet"
        if table not in self.logged_tables:
            rows = outputs.history_table([row for row in state.history if row["iteration"] == iteration])
            self.tracker.log_table(rows, f"architectures/{table}")
            self.logged_tables.add(table)


def iteration_metrics(state: SearchState, iteration: int, ops: tuple[str, ...]) -> dict[str, float]:
    """The policy's statistics of an iteration and the op probabilities it sampled from."""
    metrics = {key: value for key, value in state.stats[iteration].items() if key != "iteration"}
    probs = state.op_probs[iteration]
    metrics.update({f"op_prob.L{layer:02d}.{op}": probs[layer][k] for layer in range(len(probs)) for k, op in enumerate(ops)})
    return metrics


def check_resume_config(payload: dict[str, Any], config: ExperimentConfig, path: Path) -> None:
    """Refuse to resume with a config that differs from the checkpoint's in any key but the safe ones, naming them all.

    Checkpoints written before the config was stored in them are resumed unchecked, with a warning.
    """
    if CONFIG_KEY not in payload:
        logger.warning("checkpoint %s does not record its config: the resumed search's config is not checked", path)
        return
    check_resume(payload[CONFIG_KEY], config, RESUME_SAFE_KEYS, SEARCH_IGNORES, path)


def finish_tracking(tracker: RunTracker, out_dir: Path, final: dict[str, Any]) -> None:
    for name in outputs.SEARCH_OUTPUTS:
        tracker.log_artifact(out_dir / name)
    tracker.log_artifact(checkpoint_path(out_dir), outputs.CHECKPOINT_DIR)
    tags = {"best_arch": final["best"]["arch"], "strategy": final["strategy"], "selection_rule": final["selection"]["rule"]}
    if "greedy" in final:
        tags["greedy_arch"] = final["greedy"]["arch"]
    tracker.set_tags(tags)
    metrics = {"best_reward": final["best"]["reward"], "best_search_reward": final["best"]["search_reward"]}
    if "policy_vs_uniform" in final:
        comparison = final["policy_vs_uniform"]
        metrics.update(
            {
                "final.policy_mean_reward": comparison["policy_mean"],
                "final.uniform_mean_reward": comparison["uniform_mean"],
                "final.policy_vs_uniform_p": comparison["mannwhitney_p"],
            }
        )
    tracker.log_metrics(metrics)
