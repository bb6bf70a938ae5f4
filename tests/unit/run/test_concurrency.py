"""How many trials the nodes of a cluster hold, without starting one (the elastic limiter on a
real local Ray is in tests/integration/run/test_concurrency.py)."""

from __future__ import annotations

from orchestrator.run.concurrency import slots, trial_bundles

# -- how many trials fit ------------------------------------------------------------------------

def test_trial_bundles_split_a_ddp_trial_over_its_workers():
    assert trial_bundles(1, 0.25) == ({"CPU": 1.0, "GPU": 0.25}, 1)
    assert trial_bundles(8, 2, 2) == ({"CPU": 4.0, "GPU": 1.0}, 2)


def test_slots_count_each_node_on_its_own():
    head, cpu_node, gpu_node = {"CPU": 1}, {"CPU": 2}, {"CPU": 4, "GPU": 2}
    assert slots([head, cpu_node, cpu_node], {"CPU": 1}) == 5
    assert slots([head, cpu_node, gpu_node], {"CPU": 0.5, "GPU": 0.5}) == 4  # only the GPU node
    assert slots([{"CPU": 8, "GPU": 1.5}, {"CPU": 8, "GPU": 1.5}], {"CPU": 1, "GPU": 1}) == 2  # not 3
    assert slots([cpu_node, cpu_node], {"CPU": 1}, bundles_per_trial=2) == 2  # two-worker DDP trials
    assert slots([head], {"CPU": 4}) == 1  # at least one: Tune reports what does not fit
