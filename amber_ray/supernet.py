"""Shared-weight supernet: every candidate op of every layer; ``forward(x, arch)`` runs one path.

Weight sharing is the point of ENAS: an op's weights are trained by every sampled architecture
that uses that op at that layer, and left untouched by the others. Batch norm uses batch
statistics only, since running statistics shared by many architectures fit none of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from amber_ray.child import ChildNet, DagNet
from amber_ray.data import SequenceDataset
from amber_ray.metrics import mean_auroc
from amber_ray.space import Architecture, ModelSpace
from amber_ray.training import as_tensor, minibatch_indices


class Supernet(DagNet):
    def __init__(self, space: ModelSpace, width: float = 1.0):
        super().__init__(space, [space.ops] * space.num_layers, width=width, track_running_stats=False)

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        return self.forward_arch(x, self.space.validate(arch))

    def child_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """The weights of ``arch``'s path, loadable into ``ChildNet(space, arch)`` (minus BN stats)."""
        chosen = {f"layers.{i}.{op}." for i, op in enumerate(arch.ops)}
        return {
            name: value
            for name, value in self.state_dict().items()
            if not name.startswith("layers.") or any(name.startswith(prefix) for prefix in chosen)
        }


def child_from_supernet(supernet: Supernet, arch: Architecture) -> ChildNet:
    child = ChildNet(supernet.space, arch, supernet.width)
    child.load_state_dict(supernet.child_state_dict(arch), strict=False)
    return child


class SupernetTrainer:
    """A supernet with its optimizer and data: trains on sampled architectures, scores architectures.

    Randomness (batch order, dropout) is derived from ``(seed, iteration)``, so a pass is
    reproducible from the weights and the iteration alone, which makes resume exact.
    """

    def __init__(
        self,
        space: ModelSpace,
        train: SequenceDataset,
        valid: SequenceDataset,
        learning_rate: float,
        seed: int,
        width: float = 1.0,
        valid_max_sequences: int | None = None,
    ):
        self.seed = seed
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = Supernet(space, width)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.train_data = train
        self.valid_data = valid if valid_max_sequences is None else valid.subset(np.arange(min(valid_max_sequences, valid.num_sequences)))

    def num_batches(self, batch_size: int, max_batches: int | None = None) -> int:
        batches = -(-self.train_data.num_sequences // batch_size)
        return min(batches, max_batches) if max_batches else batches

    def train_pass(self, archs: Sequence[Architecture], iteration: int, batch_size: int) -> float:
        """Train one mini-batch per architecture, in order; returns the mean loss."""
        rng = np.random.default_rng([self.seed, iteration + 1])
        torch.manual_seed(int(rng.integers(2**62)))
        self.model.train()
        batches = minibatch_indices(self.train_data.num_sequences, batch_size, rng)
        losses = []
        for arch, index in zip(archs, batches):
            loss = F.binary_cross_entropy_with_logits(
                self.model(as_tensor(self.train_data.x[index]), arch), as_tensor(self.train_data.y[index])
            )
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses)) if losses else float("nan")

    @torch.inference_mode()
    def score(self, archs: Sequence[Architecture], batch_size: int = 512) -> list[float]:
        """Reward of each architecture: mean validation AUROC over labels."""
        self.model.eval()
        valid = self.valid_data
        rewards = []
        for arch in archs:
            logits = [self.model(as_tensor(valid.x[i]), arch) for i in minibatch_indices(valid.num_sequences, batch_size, None)]
            rewards.append(mean_auroc(valid.y, torch.cat(logits).numpy()))
        return rewards

    def path_num_params(self, arch: Architecture) -> int:
        """Parameters of ``arch``'s standalone child, counted on the supernet."""
        parameters = dict(self.model.named_parameters())
        return sum(parameters[name].numel() for name in self.model.child_state_dict(arch) if name in parameters)

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
