"""The elastic limiter on the session's real local Ray: concurrency follows the cluster's
resources and the cap."""

from __future__ import annotations

from ray.tune.search import Searcher

from orchestrator.run.concurrency import ElasticLimiter


class _Counting(Searcher):
    """A minimal searcher: hands out numbered configurations."""

    def __init__(self):
        super().__init__(metric="loss", mode="min")
        self.count = 0

    def suggest(self, trial_id):
        self.count += 1
        return {"n": self.count}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def test_elastic_limiter_follows_the_clusters_resources_and_the_cap(ray_local):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    limiter = ElasticLimiter(_Counting(), {"CPU": 1.0, "GPU": 0.0}, refresh_s=0.0)
    assert limiter.max_concurrent == cpus
    given = [limiter.suggest(f"t{i}") for i in range(cpus + 1)]
    assert all(given[:cpus]) and given[cpus] is None  # full: the searcher is not asked
    limiter.on_trial_complete("t0")
    assert limiter.suggest("again") is not None  # a slot freed
    capped = ElasticLimiter(_Counting(), {"CPU": 1.0}, cap=1, refresh_s=0.0)
    assert capped.suggest("a") is not None and capped.suggest("b") is None
    gpu = ElasticLimiter(_Counting(), {"CPU": 1.0, "GPU": 1.0}, refresh_s=0.0)
    assert gpu.max_concurrent == 1  # no GPU here: one trial waits, as Tune would report
