"""Shared-weight supernet: every candidate op of every layer; ``forward(x, arch)`` runs one path.

Weight sharing is the point of ENAS: an op's weights are trained by every sampled architecture
that uses that op at that layer, and left untouched by the others. Batch norm uses batch
statistics only, since running statistics shared by many architectures fit none of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from amber_ray.child import DagNet, PrefixCache
from amber_ray.config import TrainConfig
from amber_ray.data import HDF5SequenceFile, SequenceDataset
from amber_ray.data.augment import StrandAugmented
from amber_ray.data.dataset import LoadedData, TrainSource, minibatch_indices
from amber_ray.device import autocast, keep_freed_host_memory, resolve_precision
from amber_ray.distributed import sum_gradients, synchronise_batch_norm
from amber_ray.metrics import mean_auroc
from amber_ray.space import Architecture, ModelSpace
from amber_ray.training import as_tensor, fit, initial_model

# Validation data the trainer scores on: one-hot in memory, or a file (:func:`scoring_subset` reads it into codes).
ScoringSource = SequenceDataset | HDF5SequenceFile


class Supernet(DagNet):
    """All candidate ops; no dropout, whose per-sample masks data-parallel shards could not reproduce."""

    def __init__(self, space: ModelSpace, width: float = 1.0):
        super().__init__(space, [space.ops] * space.num_layers, width=width, track_running_stats=False, dropout=0.0)

    def runs_channels_last(self) -> bool:
        """Always: training and scoring (batch statistics) both run faster in channels-last memory."""
        return True

    def forward(self, x: torch.Tensor, arch: Architecture, prefixes: PrefixCache | None = None) -> torch.Tensor:
        return self.forward_arch(x, self.space.validate(arch), prefixes)

    def path_num_params(self, arch: Architecture) -> int:
        """Parameters of ``arch``'s standalone child: those a training batch of ``arch`` updates."""
        parameters = dict(self.named_parameters())
        return sum(parameters[name].numel() for name in self.child_state_dict(arch) if name in parameters)

    def child_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """The weights of ``arch``'s path, loadable into ``ChildNet(space, arch)`` (minus BN stats)."""
        chosen = {f"layers.{i}.{op}." for i, op in enumerate(arch.ops)}
        return {
            name: value
            for name, value in self.state_dict().items()
            if not name.startswith("layers.") or any(name.startswith(prefix) for prefix in chosen)
        }


def scoring_subset(valid: ScoringSource, max_sequences: int | None, seed: int) -> LoadedData:
    """A seeded random sample of the validation set, in random order.

    The supernet's batch norm uses batch statistics, so every scoring batch must be a fair mix
    of the classes; files are often sorted by class (positives first). A file is read into
    compact codes (1 byte per base), decoded one scoring batch at a time.
    """
    order = np.random.default_rng([seed, 11]).permutation(valid.num_sequences)
    return valid.subset(order[:max_sequences] if max_sequences else order)


def _half_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean AUROC of a half of the scoring set; NaN when no label has both classes there."""
    try:
        return mean_auroc(y_true, y_score)
    except ValueError:
        return float("nan")


class SupernetTrainer:
    """A supernet with its optimizer and data: trains on sampled architectures, scores architectures.

    The batch order and the torch generator are seeded from ``(seed, iteration)`` (the supernet has
    no dropout), so a pass is reproducible from the weights and the iteration alone, which makes
    resume exact.
    """

    def __init__(
        self,
        space: ModelSpace,
        train: TrainSource | StrandAugmented,
        valid: ScoringSource,
        learning_rate: float,
        seed: int,
        width: float = 1.0,
        valid_max_sequences: int | None = None,
        device: str = "cpu",
        precision: str = "auto",
        pos_weight: np.ndarray | None = None,
    ):
        keep_freed_host_memory()
        self.seed = seed
        self.device = torch.device(device)
        # ``precision_reason`` says why (``auto``: whether the device runs bfloat16 natively).
        self.precision, self.precision_reason = resolve_precision(precision, self.device)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = Supernet(space, width).to(self.device)
        # Fused Adam: one pass over each parameter per step instead of a dozen elementwise kernels.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate, fused=True)
        self.rank, self.world_size = 0, 1
        self.train_data = train
        # Per-label weight of the positives in the loss (training.positive_weights), or None.
        self.pos_weight = None if pos_weight is None else torch.as_tensor(pos_weight, device=self.device)
        # Rewards during the search use the first ``valid_max_sequences`` of a seeded permutation;
        # the final choice re-scores its candidates on all of it.
        self.valid_all = scoring_subset(valid, None, seed)
        self.valid_data = self.valid_all.head(valid_max_sequences)

    def num_batches(self, batch_size: int, max_batches: int | None = None) -> int:
        batches = -(-self.train_data.num_sequences // batch_size)
        return min(batches, max_batches) if max_batches else batches

    def _autocast(self) -> torch.autocast:
        return autocast(self.device, self.precision)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return as_tensor(array).to(self.device, non_blocking=True)

    def join_group(self, rank: int, world_size: int) -> None:
        """Become worker ``rank`` of ``world_size`` (the process group must already exist)."""
        self.rank, self.world_size = rank, world_size
        if world_size > 1:
            synchronise_batch_norm(self.model)

    def train_pass(self, archs: Sequence[Architecture], iteration: int, batch_size: int) -> float:
        """Train one global mini-batch per architecture, in order; returns the mean loss.

        With several workers each takes rows ``rank::world_size`` of every global batch and the
        gradients are summed, so the update equals one worker's on the whole batch.
        """
        rng = np.random.default_rng([self.seed, iteration + 1])
        torch.manual_seed(int(rng.integers(2**62)))
        self.model.train()
        batches = self.train_data.shard_batches(batch_size, rng, self.rank, self.world_size)
        losses = []
        for arch, (x, y, global_rows) in zip(archs, batches):
            with self._autocast():
                logits = self.model(self._tensor(x), arch)
            loss_sum = F.binary_cross_entropy_with_logits(
                logits.float(), self._tensor(y), reduction="sum", pos_weight=self.pos_weight
            )
            loss = loss_sum / (global_rows * self.train_data.num_labels)
            self.optimizer.zero_grad()
            loss.backward()
            if self.world_size > 1:
                sum_gradients(self.model)
            self.optimizer.step()
            losses.append(float(loss.detach()) * self.world_size)
        return float(np.mean(losses)) if losses else float("nan")

    # no_grad, not inference_mode: under inference_mode autocast bypasses its cache of cast weights,
    # and the dense head's weights were cast to bfloat16 again for every architecture.
    @torch.no_grad()
    def score(
        self, archs: Sequence[Architecture], batch_size: int = 512, all_validation: bool = False
    ) -> list[tuple[float, float, float]]:
        """``(reward, reward on half 1, reward on half 2)`` of each architecture; reward = mean validation AUROC.

        All architectures run on each batch in turn, sharing the stem and any common first layers
        (:class:`~amber_ray.child.PrefixCache`); with batch statistics this gives the same rewards
        as scoring them one by one. The halves (even and odd positions of the randomly ordered scoring set) measure how
        reliably the rewards rank architectures. ``all_validation`` scores on every validation
        sequence instead of the search's subsample.
        """
        self.model.eval()
        valid = self.valid_all if all_validation else self.valid_data
        distinct = list(dict.fromkeys(archs))  # a repeated architecture is scored once
        logits: dict[Architecture, list[torch.Tensor]] = {arch: [] for arch in distinct}
        with self._autocast():  # one autocast region for all architectures: weights are cast once, not per architecture
            for index in minibatch_indices(valid.num_sequences, batch_size, None):
                x, prefixes = self._tensor(valid.one_hot(index)), PrefixCache(distinct)
                for arch in distinct:
                    logits[arch].append(self.model(x, arch, prefixes))
        scores = {}
        for arch in distinct:
            probs = torch.cat(logits[arch]).float().cpu().numpy()
            halves = [_half_auroc(valid.y[half::2], probs[half::2]) for half in (0, 1)]
            scores[arch] = (mean_auroc(valid.y, probs), *halves)
        return [scores[arch] for arch in archs]

    @torch.no_grad()
    def latency(self, arch: Architecture, batch_size: int = 128, repeats: int = 3) -> float:
        """Best-of-``repeats`` seconds of one inference batch through ``arch``'s path alone (no shared prefix)."""
        self.model.eval()
        x = self._tensor(self.valid_data.one_hot(np.arange(min(batch_size, self.valid_data.num_sequences))))
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            with self._autocast():
                self.model(x, arch)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            best = min(best, time.perf_counter() - started)
        return best

    def finetune(self, arch: Architecture, config: TrainConfig, epochs: int) -> float:
        """Validation AUROC (all of it) of ``arch``'s standalone child after ``epochs`` epochs of training from the
        supernet's weights (the best epoch's), the supernet itself untouched.

        Shared weights can rank architectures poorly; a short training of each final candidate on its
        own, starting from what the supernet learned, ranked them closer to their retrained test AUROC
        in the small spaces measured, not in the large ones (README, "Ranking the candidates").
        """
        child = initial_model(self.model.space, arch, self.model.width, self.seed)
        child.load_state_dict(self.model.child_state_dict(arch), strict=False)  # batch-norm statistics: the child's own
        short = config.model_copy(update={"max_epochs": epochs, "patience": epochs})
        pos_weight = None if self.pos_weight is None else self.pos_weight.cpu().numpy()
        return fit(
            child, self.train_data, self.valid_all, short, self.seed, device=self.device, pos_weight=pos_weight
        ).best_valid_auroc

    def state(self) -> dict:
        """Model and optimizer state on the CPU (a driver without a GPU must be able to hold it)."""
        return _to_cpu({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()})

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


def _to_cpu(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_to_cpu(inner) for inner in value]
    return value
