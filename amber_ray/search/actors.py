"""Ray actors of the search: one controller, W supernet workers. Weights stay inside them."""

from __future__ import annotations

import socket

import numpy as np
import ray
import torch

from amber_ray.config import ControllerConfig, SearchConfig
from amber_ray.controller import Controller, UniformPolicy
from amber_ray.data import HDF5SequenceFile, SequenceDataset
from amber_ray.device import worker_device
from amber_ray.distributed import init_group
from amber_ray.errors import AmberInputError
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import SupernetTrainer


@ray.remote
class ControllerActor:
    """Owns the policy (the LSTM controller with its optimizer, baseline and RNG, or uniform
    sampling for ``strategy: random``); talks in architecture strings."""

    def __init__(self, space: ModelSpace, config: ControllerConfig, seed: int, strategy: str = "enas"):
        torch.set_num_threads(1)
        self.controller = Controller(space, config, seed) if strategy == "enas" else UniformPolicy(space, config, seed)

    def sample(self, n: int) -> tuple[list[str], np.ndarray]:
        archs, op_probs = self.controller.sample(n)
        return [arch.to_text() for arch in archs], op_probs.numpy()

    def greedy(self) -> str | None:
        arch = self.controller.greedy()
        return arch.to_text() if arch is not None else None

    def update(self, archs: list[str], rewards: list[float]) -> dict[str, float]:
        return self.controller.update([Architecture.from_text(a) for a in archs], rewards)

    def state(self) -> dict:
        return self.controller.full_state()

    def load(self, state: dict) -> None:
        self.controller.load_full_state(state)


@ray.remote
class SupernetWorker:
    """Owns a supernet replica, its optimizer and the data; one of W data-parallel workers.

    It runs on the GPU Ray gave it when ``device`` (``train.device``) allows, else on the CPU.
    Data arrives in memory or as HDF5 file handles: then the worker streams its training batches
    from the file and holds validation as codes, never the training set.
    """

    def __init__(
        self,
        space: ModelSpace,
        train: SequenceDataset | HDF5SequenceFile,
        valid: SequenceDataset | HDF5SequenceFile,
        config: SearchConfig,
        seed: int,
        threads: int,
        device: str = "auto",
    ):
        torch.set_num_threads(threads)
        # Bad input met here (a GPU torch cannot use, data this node cannot read) is kept for
        # :meth:`ready`: raised from the constructor, it would only reach the driver as a dead actor.
        self.setup_error: AmberInputError | None = None
        try:
            self.device = worker_device(device, config.gpus_per_worker)
            self.use_gpu = self.device.type == "cuda"
            for data in (train, valid):
                if isinstance(data, HDF5SequenceFile):
                    data.stage()
            self.trainer = SupernetTrainer(
                space,
                train,
                valid,
                config.supernet_learning_rate,
                seed,
                valid_max_sequences=config.valid_max_sequences,
                device=str(self.device),
                precision=config.precision,
            )
        except AmberInputError as error:
            self.setup_error = error

    def ready(self) -> None:
        """Returns once the worker is set up; raises the bad input its construction met."""
        if self.setup_error is not None:
            raise self.setup_error

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port, for the process group's rank 0."""
        with socket.socket() as sock:
            sock.bind(("", 0))
            return ray.util.get_node_ip_address(), sock.getsockname()[1]

    def join(self, rank: int, world_size: int, address: str, port: int, timeout_s: float) -> None:
        init_group(rank, world_size, address, port, self.use_gpu, timeout_s)
        self.trainer.join_group(rank, world_size)

    def placement(self) -> dict[str, object]:
        """Where Ray put this worker: node id, the GPU ids it was given and the torch device it uses."""
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
            "device": str(self.device),
        }

    def precision(self) -> tuple[str, str]:
        """The precision this worker runs and why (what ``search.precision: auto`` chose here)."""
        return self.trainer.precision, self.trainer.precision_reason

    def num_batches(self, batch_size: int, max_batches: int | None) -> int:
        return self.trainer.num_batches(batch_size, max_batches)

    def train_pass(self, archs: list[str], iteration: int, batch_size: int) -> float:
        return self.trainer.train_pass([Architecture.from_text(a) for a in archs], iteration, batch_size)

    def score(self, archs: list[str], all_validation: bool = False) -> list[tuple[float, float, float, int]]:
        """``(reward, reward on half 1, reward on half 2, parameter count)`` per architecture."""
        parsed = [Architecture.from_text(a) for a in archs]
        scores = self.trainer.score(parsed, all_validation=all_validation)
        return [(*score, self.trainer.model.path_num_params(a)) for score, a in zip(scores, parsed)]

    def state(self) -> dict:
        return self.trainer.state()

    def load(self, state: dict) -> None:
        self.trainer.load(state)
