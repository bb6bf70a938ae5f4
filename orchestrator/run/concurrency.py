"""Elastic concurrency: as many trials at once as the cluster's resources hold, re-read as nodes
join or leave, with an optional cap (the spec's ``concurrency``).

Ray Tune's ``max_concurrent_trials`` is a number fixed when the study starts; a node that joins
later would sit idle. :class:`ElasticLimiter` is Tune's ``ConcurrencyLimiter`` whose limit is
recomputed (at most every ``refresh_s`` seconds) from the resources of the alive nodes, so the
searcher is asked for a new configuration only when a trial could start on it soon: the sampler
never runs far ahead of the results it learns from.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

from ray.tune.search import ConcurrencyLimiter, Searcher

_EPS = 1e-9


def trial_bundles(cpus: float, gpu: float, workers: int = 1) -> tuple[dict[str, float], int]:
    """One trial's resource bundle and how many of them it needs: one bundle for a plain trial,
    one per worker (``cpus`` and ``gpu`` split evenly) for a DDP trial."""
    workers = max(1, int(workers))
    return {"CPU": float(cpus) / workers, "GPU": float(gpu) / workers}, workers


def slots(nodes: list[Mapping[str, float]], bundle: Mapping[str, float], bundles_per_trial: int = 1) -> int:
    """How many trials fit in ``nodes`` (each node's resources), at least 1.

    A bundle cannot span nodes, so each node is counted on its own: two nodes with 1.5 free
    GPUs each hold two one-GPU trials, not three.
    """
    needs = {key: need for key, need in bundle.items() if need > 0}
    if not needs:
        return 1 << 30
    fit = sum(min(math.floor(node.get(key, 0) / need + _EPS) for key, need in needs.items()) for node in nodes)
    return max(1, fit // max(1, bundles_per_trial))


def nodes_resources() -> list[dict[str, float]]:
    """The resources of each alive node of the connected Ray cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def unfit_resources(spec: Any, nodes: list[Mapping[str, float]]) -> str | None:
    """Why no node in ``nodes`` can hold one trial of ``spec`` (the field, what it asks and what the
    largest node has), or None when one can."""
    bundle, count = trial_bundles(spec.resources.cpus, spec.resources.gpu, spec.resources.workers)
    needs = {key: need for key, need in bundle.items() if need > 0}
    fit = sum(min(math.floor(node.get(key, 0) / need + _EPS) for key, need in needs.items()) for node in nodes)
    if not needs or fit >= count:
        return None
    short = [key for key, need in needs.items() if not any(node.get(key, 0) + _EPS >= need for node in nodes)]
    key = (short or list(needs))[0]
    field = {"CPU": "resources.cpus", "GPU": "resources.gpu"}[key]
    total = bundle[key] * count
    unit = key if total == 1 else key + "s"
    if count == 1:
        most = max((node.get(key, 0) for node in nodes), default=0)
        return f"`{field}` asks {total:g} {unit} per trial, but the largest Ray node has {most:g}"
    return (f"`{field}` asks {total:g} {unit} for {count} workers ({bundle[key]:g} each), but the Ray cluster "
            f"holds only {fit} such workers")


def cluster_slots(bundle: Mapping[str, float], bundles_per_trial: int = 1) -> int:
    """Trials that the alive nodes of the connected Ray cluster hold."""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    return slots(nodes, bundle, bundles_per_trial)


class ElasticLimiter(ConcurrencyLimiter):
    """A ``ConcurrencyLimiter`` whose limit follows the cluster: ``min(cap, cluster slots)``.

    Args:
        searcher: the searcher to limit (the study's Optuna searcher).
        bundle: one trial's resource bundle, e.g. ``{"CPU": 1, "GPU": 0.5}``, and
        bundles_per_trial: how many a trial needs (its DDP workers; 1 for a plain trial).
        cap: the most trials at once whatever the cluster holds (None: no cap).
        refresh_s: how often the cluster's resources are re-read.
    """

    def __init__(self, searcher: Searcher, bundle: Mapping[str, float], bundles_per_trial: int = 1,
                 cap: int | None = None, refresh_s: float = 2.0):
        self.bundle = dict(bundle)
        self.bundles_per_trial = bundles_per_trial
        self.cap = cap
        self.refresh_s = refresh_s
        self._read_at = 0.0
        self.history: list[tuple[float, int]] = []  # (time, limit) each time the limit changed
        super().__init__(searcher, max_concurrent=self._limit())

    def _limit(self) -> int:
        limit = cluster_slots(self.bundle, self.bundles_per_trial)
        if self.cap is not None:
            limit = min(limit, self.cap)
        self._read_at = time.monotonic()
        if not self.history or self.history[-1][1] != limit:
            self.history.append((time.time(), limit))
        return limit

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if time.monotonic() - self._read_at >= self.refresh_s:
            self.max_concurrent = self._limit()
        return super().suggest(trial_id)


def elastic_limiter(searcher: Searcher, spec: Any) -> ElasticLimiter:
    """The study's searcher, limited to what the cluster holds and to ``spec.concurrency``."""
    bundle, count = trial_bundles(spec.resources.cpus, spec.resources.gpu, spec.resources.workers)
    cap = min(spec.concurrency or spec.budget.trials, spec.budget.trials)
    return ElasticLimiter(searcher, bundle, count, cap=cap)
