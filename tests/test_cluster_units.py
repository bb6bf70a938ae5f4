"""The pieces behind running on a cluster, without starting one: the spec's ``resources.workers``,
how many trials the nodes hold, the elastic limiter (on the session's real local Ray), the local
cluster's port layout and the ``stepsize cluster`` command's errors."""

from __future__ import annotations

import os

import pytest
from ray.tune.search import Searcher

from orchestrator.concurrency import ElasticLimiter, slots, trial_bundles
from orchestrator.errors import SpecError
from orchestrator.spec import spec_from_mapping


# -- spec ---------------------------------------------------------------------------------------

def test_resources_workers_default_and_round_trip():
    spec = spec_from_mapping({"name": "x"})
    assert spec.resources.workers == 1
    ddp = spec_from_mapping({"name": "x", "resources": {"cpus": 4, "gpu": 2, "workers": 2}})
    assert (ddp.resources.cpus, ddp.resources.gpu, ddp.resources.workers) == (4.0, 2.0, 2)
    assert spec_from_mapping(ddp.to_dict()).resources == ddp.resources


@pytest.mark.parametrize("resources, field, words", [
    ({"workers": 0}, "resources.workers", "whole number of training processes"),
    ({"workers": 2.5}, "resources.workers", "whole number of training processes"),
    ({"workers": "two"}, "resources.workers", "whole number of training processes"),
    ({"gpu": 1, "workers": 2}, "resources.gpu", "cannot share a GPU"),
    ({"gpu": 0.5, "workers": 2}, "resources.gpu", "cannot share a GPU"),
    ({"gpu": 3, "workers": 2}, "resources.gpu", "for each of the 2 workers"),
    ({"worker": 2}, "resources.worker", "Did you mean `resources.workers`?"),
])
def test_bad_workers_are_refused_with_the_field_and_the_fix(resources, field, words):
    with pytest.raises(SpecError) as caught:
        spec_from_mapping({"name": "x", "resources": resources})
    text = str(caught.value)
    assert f"`{field}`" in text and words in text


# -- how many trials fit ------------------------------------------------------------------------

def test_ddp_trials_refuse_ray_train_v2_with_the_setting_to_change(monkeypatch):
    from orchestrator.training.ddp import make_ddp_trainable

    spec = spec_from_mapping({"name": "x", "resources": {"cpus": 2, "workers": 2}})
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "1")
    with pytest.raises(SpecError) as caught:
        make_ddp_trainable(spec)
    assert "resources.workers" in str(caught.value) and "RAY_TRAIN_V2_ENABLED" in str(caught.value)
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "0")
    assert make_ddp_trainable(spec).__name__ == "DDPTrial"


def test_launch_refuses_ddp_under_ray_train_v2_before_writing_anything(monkeypatch, tmp_path):
    from orchestrator.runner import launch

    spec = spec_from_mapping({"name": "x", "resources": {"cpus": 2, "workers": 2},
                              "storage": f"sqlite:///{tmp_path}/optuna.db", "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                              "results_dir": str(tmp_path / "ray")})
    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "1")
    with pytest.raises(SpecError, match="resources.workers"):
        launch(spec, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


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


# -- token authentication for a driver -----------------------------------------------------------

def test_driver_auth_turns_token_mode_on_only_for_a_given_token(monkeypatch, tmp_path):
    from orchestrator.ray_auth import prepare_driver_auth

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert prepare_driver_auth("10.0.0.1:6379") is False and "RAY_AUTH_MODE" not in os.environ
    token = tmp_path / "token"
    token.write_text("t" * 64)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert prepare_driver_auth(None) is False  # a local cluster: Ray decides
    assert prepare_driver_auth("10.0.0.1:6379") is True
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # an explicit mode wins
    assert prepare_driver_auth("10.0.0.1:6379") is False
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="RAY_AUTH_TOKEN_PATH"):
        prepare_driver_auth("10.0.0.1:6379")


# -- the local cluster's layout and command ----------------------------------------------------

def test_local_cluster_nodes_get_disjoint_ports_and_short_paths():
    from orchestrator.local_cluster import _node_ports, cluster_folder

    taken: list[set[int]] = []
    for index in range(6):
        args = _node_ports(6380, index)
        ports = {int(v) for k, v in zip(args[::2], args[1::2]) if k != "--max-worker-port"}
        low = int(args[args.index("--min-worker-port") + 1])
        high = int(args[args.index("--max-worker-port") + 1])
        ports |= set(range(low, high + 1))
        assert 6380 not in ports and 6381 not in ports  # the head's GCS and dashboard ports
        assert all(not (ports & other) for other in taken)
        taken.append(ports)
    # Ray's sockets live under the folder: it must leave room below the OS's 107-byte limit.
    assert len(str(cluster_folder(65535))) + len("/ray-99/session_2026-01-01_00-00-00_000000_99999/sockets/plasma_store.10") < 107


def test_cluster_command_names_the_missing_cluster(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    stepsize = str(Path(sys.executable).with_name("stepsize"))
    done = subprocess.run([stepsize, "cluster", "status", "--port", "39999"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no local cluster on port 39999" in done.stderr and "stepsize cluster up --port 39999" in done.stderr
