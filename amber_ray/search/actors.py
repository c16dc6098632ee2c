"""Ray actors of the search: one controller, W supernet workers. Weights stay inside them."""

from __future__ import annotations

import socket

import numpy as np
import ray
import torch

from amber_ray.config import SearchConfig, TrainConfig
from amber_ray.data import HDF5SequenceFile, SequenceDataset
from amber_ray.data.augment import StrandAugmented
from amber_ray.device import worker_device
from amber_ray.distributed import init_group
from amber_ray.errors import AmberInputError
from amber_ray.policy import make_policy
from amber_ray.search.core import PolicyEndpoint, Score, score_with
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import SupernetTrainer


@ray.remote
class ControllerActor(PolicyEndpoint):
    """Owns the policy of ``search.strategy`` (the LSTM controller with its optimizer, baseline and
    RNG, uniform sampling, or the evolving population); talks in architecture strings."""

    def __init__(self, space: ModelSpace, search: SearchConfig, seed: int):
        torch.set_num_threads(1)
        super().__init__(make_policy(space, search, seed))


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
        train: SequenceDataset | HDF5SequenceFile | StrandAugmented,
        valid: SequenceDataset | HDF5SequenceFile,
        config: SearchConfig,
        seed: int,
        threads: int,
        device: str = "auto",
        pos_weight: np.ndarray | None = None,
    ):
        torch.set_num_threads(threads)
        # Bad input met here (a GPU torch cannot use, data this node cannot read) is kept for
        # :meth:`ready`: raised from the constructor, it would only reach the driver as a dead actor.
        self.setup_error: AmberInputError | None = None
        try:
            self.device = worker_device(device, config.gpus_per_worker)
            self.use_gpu = self.device.type == "cuda"
            self.measure_latency = config.objective.kind == "latency"
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
                pos_weight=pos_weight,
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

    def score(self, archs: list[str], all_validation: bool = False) -> list[Score]:
        """``(AUROC, AUROC on half 1, AUROC on half 2, parameter count, latency)`` per architecture."""
        return score_with(self.trainer, archs, all_validation, self.measure_latency)

    def finetune(self, archs: list[str], config: TrainConfig, epochs: int) -> list[float]:
        """Validation AUROC of each architecture after ``epochs`` epochs on its own from the supernet's weights."""
        return [self.trainer.finetune(Architecture.from_text(arch), config, epochs) for arch in archs]

    def state(self) -> dict:
        return self.trainer.state()

    def load(self, state: dict) -> None:
        self.trainer.load(state)
