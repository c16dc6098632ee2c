"""Data-parallel supernet workers are gang-scheduled, and a process group that does not form is one recoverable failure."""

from __future__ import annotations

import numpy as np
import ray
from ray.util import placement_group_table

from amber_ray.config import parse_config
from amber_ray.data import load_search_data
from amber_ray.search.loop import SearchDriver

CONFIG = {
    "seed": 3,
    "data": {"simulate": {"num_sequences": 200, "length": 64, "motifs": ["MA0079.5"]}},
    "space": {"first_filters": 4, "stem_channels": 4, "dense_units": 8},
    "search": {"workers": 2, "batch_size": 40, "warmup_batch_size": 40, "precision": "float32", "max_failures": 1},
}


class FirstRendezvousIncomplete(SearchDriver):
    """The first time, only rank 0 joins: it waits the (short) rendezvous timeout for rank 1 in vain."""

    rendezvous_timeout_s = 3.0
    attempts = 0

    def form_group(self, workers):
        type(self).attempts += 1
        super().form_group(workers[:1] if type(self).attempts == 1 else workers)


def test_workers_are_placed_together_and_a_timed_out_rendezvous_is_one_recovered_failure(ray_session, tmp_path, caplog):
    config = parse_config(CONFIG)
    driver = FirstRendezvousIncomplete(config, tmp_path, load_search_data(config.data, config.seed))
    try:
        assert FirstRendezvousIncomplete.attempts == 2 and driver.failures == 1  # recovered, counted once
        assert "group did not form" in caplog.text
        group = placement_group_table(driver.placement_group)
        assert group["state"] == "CREATED" and len(group["bundles"]) == 2  # one bundle per worker, reserved together
        placements = ray.get([worker.placement.remote() for worker in driver.workers])
        assert len(placements) == 2
        arch = driver.space.sample(np.random.default_rng(0), 0.5).to_text()
        loss = driver.train_pass([arch] * driver.num_batches, 0, 40)  # the group works
        assert loss > 0
    finally:
        driver.close()
    assert placement_group_table(driver.placement_group)["state"] == "REMOVED"
