"""What several benchmarks measure the same way: a random one-hot dataset and a process's resident memory.

The benchmarks run as scripts (``python benchmarks/NAME.py``), so this module is imported by its bare name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from amber_ray.data import SequenceDataset


def random_dataset(n: int, length: int, labels: int, seed: int) -> SequenceDataset:
    """``n`` uniform random sequences with labels positive at rate 0.05: the cost of a workload, not its signal."""
    rng = np.random.default_rng(seed)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1).copy()
    y = (rng.random((n, labels)) < 0.05).astype(np.float32)
    return SequenceDataset(x, y, [f"seq{i}" for i in range(n)], [f"label{j}" for j in range(labels)])


def resident_bytes(pid: int | None = None, peak: bool = False) -> int:
    """Resident memory of a process on this machine (``VmRSS``), or its peak so far (``VmHWM``); 0 once it is gone."""
    field = "VmHWM:" if peak else "VmRSS:"
    try:
        for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024  # the kernel reports KiB
    except OSError:
        pass
    return 0
