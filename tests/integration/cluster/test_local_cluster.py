"""Studies on a real multi-node Ray cluster on this machine: a head and worker nodes started with
``stepsize cluster up`` (``ray start``), token authentication on, logical GPUs.

Each study runs as ``stepsize launch --address HOST:PORT`` in a subprocess (a driver of its own,
apart from the in-process Ray of the other tests); the assertions read what the study recorded:
the Optuna storage (states, final metrics) and MLflow (each trial's node id and GPU ids).

The workloads below are imported by the cluster's workers as
``tests.integration.cluster.test_local_cluster:...``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

STEPSIZE = str(Path(sys.executable).with_name("stepsize"))
# Node death is noticed within seconds rather than Ray's default half minute.
SECRET = "s3cr3t-" + "9f2c41d7e8b5"
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


# -- workloads (run on the cluster's workers) ---------------------------------------------------

def sleeper(config: dict, trial) -> None:
    """A checkpointed curve, ``epoch_s`` seconds an epoch; reports the epoch it resumed from and,
    when ``marker_dir`` is set, leaves a file per epoch naming the process group of its node."""
    import torch

    state = torch.Generator().manual_seed(trial.seed)  # registered state: each epoch is checkpointed
    start = trial.restore(generator=state)
    marker_dir = trial.options.get("marker_dir")
    for epoch in range(start + 1, trial.max_epochs + 1):
        time.sleep(float(trial.options.get("epoch_s", 0.5)))
        if marker_dir:
            node_group = os.getpgid(os.getppid())  # the worker's parent is its node's raylet
            Path(marker_dir, f"{trial.number}-{epoch}-{node_group}").touch()
        gap = abs(config["learning_rate"] - 0.1)
        trial.report(val_loss=gap + 1.0 / epoch, train_loss=gap + 1.0 / epoch, resumed_from=float(start))


def gpu_probe(config: dict, trial) -> None:
    """Fails unless CUDA_VISIBLE_DEVICES holds exactly one id; reports it and when it ran."""
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if len(visible) != 1:
        raise RuntimeError(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}")
    began = time.time()
    for epoch in range(1, trial.max_epochs + 1):
        time.sleep(float(trial.options.get("epoch_s", 1.0)))
        trial.report(val_loss=config["learning_rate"] + 1.0 / epoch, cuda_device=float(visible[0]),
                     began=began, ended=time.time())


# -- helpers ------------------------------------------------------------------------------------

def _free_port_block() -> int:
    """A base port whose block (port .. port+1500) looks unused: the cluster's ports derive from it."""
    for base in range(23000, 40000, 1600):
        try:
            for port in (base, base + 1, base + 10, base + 20, base + 30, base + 40, base + 1000):
                with socket.socket() as sock:
                    sock.bind(("", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port block for a test cluster")


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    full_env.update(env or {})
    return subprocess.run([STEPSIZE, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


class Cluster:
    def __init__(self, info: dict, port: int):
        self.info, self.port = info, port
        self.address = info["address"]
        self.env = {k: v for k, v in info["env"].items() if k != "RAY_ADDRESS"}

    def status(self) -> dict:
        done = _cli("cluster", "status", "--port", str(self.port), "--json", env=self.env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def study(self, folder: Path, name: str, **fields) -> Path:
        data = {
            "name": name,
            "search_space": {"learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "log": True}},
            "scheduler": "none",
            "storage": f"sqlite:///{folder}/optuna.db",
            "tracking_uri": f"sqlite:///{folder}/mlflow.db",
            "results_dir": str(folder / "ray"),
            **fields,
        }
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def launch(self, study: Path, *extra: str, wait: bool = True, timeout: float = 420):
        args = [STEPSIZE, "launch", str(study), "--address", self.address, *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
        # Only the token file: stepsize turns token authentication on for a token it is given.
        env["RAY_AUTH_TOKEN_PATH"] = self.env["RAY_AUTH_TOKEN_PATH"]
        env["STEPSIZE_TEST_SECRET_KEY"] = SECRET  # must never reach the record
        if not wait:
            return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done


def _assert_no_secrets(folder: Path, secrets: list[str]) -> None:
    """Neither the MLflow database nor any artifact holds any of ``secrets``."""
    files = [folder / "mlflow.db", *[p for p in (folder / "mlartifacts").rglob("*") if p.is_file()]]
    assert (folder / "mlflow.db").is_file()
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.strip().encode() not in data, f"{path} holds a secret"


def _trials(folder: Path, name: str) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db").get_trials(deepcopy=False)


def _trials_so_far(folder: Path, name: str) -> list:
    """While the driver is starting: no trials until its storage holds the study. The SQLite file,
    its tables and the study's row appear one after another, so the file is first read as-is,
    read-only, and Optuna opens it only once the row is there."""
    database = folder / "optuna.db"
    if not database.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as connection:
            if connection.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone() is None:
                return []
    except sqlite3.OperationalError:  # "no such table" while the driver creates the schema
        return []
    return _trials(folder, name)


def _trial_tags(folder: Path, name: str) -> dict[int, dict[str, str]]:
    """Trial number -> the tags of its MLflow child run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`stepsize.role` = 'trial'", max_results=1000)
    return {int(run.data.tags["stepsize.trial_number"]): run.data.tags for run in runs}


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU) and two worker nodes (2 CPUs each), torn down after the module."""
    port = _free_port_block()
    done = _cli("cluster", "up", "--port", str(port), "--workers", "2", "--cpus", "2", "--head-cpus", "1",
                "--json", env=FAST_HEALTH_CHECKS)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield Cluster(json.loads(done.stdout), port)
    finally:
        stopped = _cli("cluster", "down", "--port", str(port))
        assert stopped.returncode == 0, stopped.stderr
        assert not Path(f"/tmp/stepsize-cluster-{port}").exists()


# -- tests --------------------------------------------------------------------------------------

def test_cluster_is_multi_node_with_token_auth(cluster):
    view = cluster.status()
    alive = [n for n in view["ray_nodes"] if n["alive"]]
    assert len({n["node_id"] for n in alive}) == 3
    assert sorted(n["cpus"] for n in alive) == [1.0, 2.0, 2.0]
    token = Path(cluster.env["RAY_AUTH_TOKEN_PATH"])
    assert token.stat().st_mode & 0o777 == 0o600
    # A driver with the cluster's token joins; one with another token is refused.
    probe = "import ray; ray.init(address=%r); print(len(ray.nodes()))" % cluster.address
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    joined = subprocess.run([sys.executable, "-c", probe], env={**env, **cluster.env},
                            capture_output=True, text=True, timeout=120)
    assert joined.returncode == 0 and joined.stdout.strip().endswith("3"), joined.stderr[-2000:]
    wrong = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
    refused = subprocess.run([sys.executable, "-c", probe], env=wrong, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0


def test_study_trials_spread_over_nodes_and_use_a_node_that_joins(cluster, tmp_path):
    from cluster.local import cluster as local_cluster

    study = cluster.study(tmp_path, "spread", workload="tests.integration.cluster.test_local_cluster:sleeper",
                          workload_options={"epoch_s": 1.5}, budget={"trials": 20, "max_epochs": 6})
    before = {n["node_id"] for n in cluster.status()["ray_nodes"] if n["alive"]}
    driver = cluster.launch(study, wait=False)
    try:
        # A node joins once the study is under way (its first trials created).
        deadline = time.monotonic() + 240
        while not _trials_so_far(tmp_path, "spread"):
            assert driver.poll() is None, driver.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.5)
        local_cluster.add_node(cluster.port, cpus=2)
        joined = time.time()
        out, _ = driver.communicate(timeout=420)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out[-3000:]
    print(out[-1500:])
    finished = max(t.datetime_complete.timestamp() for t in _trials(tmp_path, "spread"))
    print(f"node joined {finished - joined:.0f}s before the last trial ended")
    _assert_no_secrets(tmp_path, [Path(cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text(), SECRET])
    new = {n["node_id"] for n in cluster.status()["ray_nodes"] if n["alive"]} - before
    assert len(new) == 1
    trials = _trials(tmp_path, "spread")
    assert len(trials) == 20 and all(t.state.name == "COMPLETE" for t in trials)
    tags = _trial_tags(tmp_path, "spread")
    nodes = {number: t["stepsize.node_id"] for number, t in tags.items()}
    assert len(nodes) == 20
    per_node = {node: sum(1 for n in nodes.values() if n == node) for node in set(nodes.values())}
    print("trials per node:", {node[:8]: count for node, count in per_node.items()})
    assert len(per_node) >= 2, per_node
    assert set(per_node) <= before | new
    assert new & set(per_node), f"the node that joined ran no trial: {per_node}"


def test_fractional_logical_gpus_pack_four_trials_on_two_gpus(cluster, tmp_path):
    added = _cli("cluster", "add-node", "--port", str(cluster.port), "--cpus", "4", "--gpus", "2")
    assert added.returncode == 0, added.stderr
    study = cluster.study(tmp_path, "gpus", workload="tests.integration.cluster.test_local_cluster:gpu_probe",
                          workload_options={"epoch_s": 3.0}, budget={"trials": 8, "max_epochs": 3},
                          resources={"cpus": 0.5, "gpu": 0.5})
    cluster.launch(study)
    trials = _trials(tmp_path, "gpus")
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials), [t.user_attrs for t in trials]
    spans = [(t.user_attrs["final_metrics"]["began"], t.user_attrs["final_metrics"]["ended"],
              int(t.user_attrs["final_metrics"]["cuda_device"])) for t in trials]
    # The most trials running at one moment, and which GPU each of them had.
    peak, peak_devices = 0, []
    for began, _, _ in spans:
        running = [device for b, e, device in spans if b <= began < e]
        if len(running) > peak:
            peak, peak_devices = len(running), running
    print("peak concurrency", peak, "devices at the peak", sorted(peak_devices),
          "trials per device", {d: sum(1 for *_, x in spans if x == d) for d in (0, 1)})
    assert peak == 4
    assert sorted(peak_devices) == [0, 0, 1, 1]
    tags = _trial_tags(tmp_path, "gpus")
    for trial in trials:
        assert tags[trial.number]["stepsize.gpu_ids"] == str(int(trial.user_attrs["final_metrics"]["cuda_device"]))
    assert len({t["stepsize.node_id"] for t in tags.values()}) == 1  # the only node with GPUs


def test_two_worker_ddp_trial_on_cpu_reports_like_a_single_process_one(cluster, tmp_path):
    # The same seed: both studies' first (random) configuration is the same.
    common = dict(workload="digits_mlp", budget={"trials": 1, "max_epochs": 2}, seed=3,
                  search_space={"learning_rate": {"type": "float", "low": 0.02, "high": 0.1, "log": True},
                                "batch_size": 32, "momentum": 0.9})
    single = cluster.study(tmp_path, "single", resources={"cpus": 1}, **common)
    ddp = cluster.study(tmp_path, "ddp", resources={"cpus": 2, "workers": 2}, **common)
    cluster.launch(single)
    cluster.launch(ddp)
    (one,) = _trials(tmp_path, "single")
    (two,) = _trials(tmp_path, "ddp")
    assert one.state.name == two.state.name == "COMPLETE"
    assert sorted(two.intermediate_values) == sorted(one.intermediate_values) == [1, 2]
    a, b = one.user_attrs["final_metrics"], two.user_attrs["final_metrics"]
    assert b["world_size"] == 2
    assert set(a) == set(b) - {"world_size"}
    assert two.intermediate_values[2] < two.intermediate_values[1]  # it trains
    assert b["val_accuracy"] > 0.5
    tags = _trial_tags(tmp_path, "ddp")
    assert tags[0]["stepsize.state"] == "COMPLETE" and tags[0]["stepsize.node_id"]


def test_killed_worker_node_loses_no_trial(cluster, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    study = cluster.study(tmp_path, "failover", workload="tests.integration.cluster.test_local_cluster:sleeper",
                          workload_options={"epoch_s": 1.5, "marker_dir": str(markers)},
                          budget={"trials": 10, "max_epochs": 8}, failures={"max_retries": 3})
    workers = {node["pid"]: node["index"] for node in cluster.status()["processes"]
               if node["index"] > 0 and node["running"]}
    driver = cluster.launch(study, wait=False)
    try:
        victim = None
        deadline = time.monotonic() + 300
        while victim is None:
            assert driver.poll() is None, driver.stdout.read()
            assert time.monotonic() < deadline, "no trial reached epoch 3 on a worker node"
            # A running trial on a worker node whose epoch-2 result (and checkpoint) the driver
            # has taken in: its intermediate value is in the storage.
            on_workers = {}
            for marker in markers.iterdir():
                number, epoch, group = (int(x) for x in marker.name.split("-"))
                if epoch >= 3 and group in workers:
                    on_workers[number] = group
            if on_workers:
                for trial in _trials_so_far(tmp_path, "failover"):
                    if trial.number in on_workers and trial.state.name == "RUNNING" and len(trial.intermediate_values) >= 2:
                        victim = workers[on_workers[trial.number]]
                        break
            time.sleep(0.5)
        from cluster.local import cluster as local_cluster

        assert local_cluster.kill_node(cluster.port, victim)
        group = next(pid for pid, index in workers.items() if index == victim)
        on_victim = {int(m.name.split("-")[0]) for m in markers.iterdir() if m.name.endswith(f"-{group}")}
        out, _ = driver.communicate(timeout=480)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out[-3000:]
    trials = _trials(tmp_path, "failover")
    states = [t.state.name for t in trials]
    assert len(trials) == 10 and set(states) <= {"COMPLETE", "PRUNED"}, states
    resumed = [t.number for t in trials if t.user_attrs["final_metrics"].get("resumed_from", 0) > 0]
    print("trials on the killed node:", sorted(on_victim), "resumed from a checkpoint:", resumed)
    assert resumed and set(resumed) <= on_victim, "no trial of the killed node continued from a checkpoint"
    tags = _trial_tags(tmp_path, "failover")
    moved = [n for n, t in tags.items() if len(t.get("stepsize.node_ids", "").split(",")) >= 2]
    assert moved, "no trial was retried on another node"
    assert all(tags[t.number]["stepsize.state"] in ("COMPLETE", "PRUNED") for t in trials)
