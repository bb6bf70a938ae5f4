"""A real multi-node Ray cluster on one machine, for development and tests.

``up`` starts a head and N worker nodes with ``ray start --block``, each its own raylet with its
own CPU and (logical) GPU counts, its own ports and its own process group; ``down`` stops them;
``kill_node`` kills one worker node's processes (its raylet and the workers it spawned) as a
machine failure would. Everything of one cluster lives in ``/tmp/stepsize-cluster-<port>``: the
state file, the logs, Ray's temporary folder and the cluster's authentication token.

Ray's token authentication stays on: ``up`` writes a fresh token (mode 0600) and every node and
driver of the cluster reads it through ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH``
(:func:`driver_env`). The dashboard, when asked for, listens on 127.0.0.1 only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.local import DEFAULT_PORT
from cluster.local.processes import (
    alive,
    descendants,
    kill,
    process_table,
    processes_naming,
    signal_group,
    tail,
)
from orchestrator.errors import ClusterError
from orchestrator.run.ray_session import write_private_token

STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
_PORTS_PER_NODE = 10  # node manager, object manager, agents, metrics: port + 10 * (index + 1) + k
_WORKER_PORTS_PER_NODE = 100  # Ray worker processes: port + 1000 + 100 * index ...


@dataclass
class NodeRecord:
    """One ``ray start --block`` process: its pid is also its process group id."""

    index: int  # 0 = head
    pid: int
    cpus: float
    gpus: int
    log: str


@dataclass
class LocalCluster:
    """A running local cluster, as recorded in its state file."""

    port: int
    address: str  # HOST:PORT of the head's GCS, for ``stepsize launch --address``
    folder: str
    token_path: str
    dashboard: str | None = None
    nodes: list[NodeRecord] = field(default_factory=list)
    node_ip: str | None = None  # the address the nodes use, when the user chose it

    @property
    def temp_dir(self) -> str:
        return str(Path(self.folder) / "ray")

    def env(self) -> dict[str, str]:
        """What a driver needs in its environment to join this cluster (see :func:`driver_env`)."""
        return driver_env(self.address, self.token_path)

    def save(self) -> None:
        data = asdict(self)
        Path(self.folder, STATE_FILE).write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, port: int = DEFAULT_PORT) -> "LocalCluster":
        path = cluster_folder(port) / STATE_FILE
        if not path.is_file():
            raise ClusterError(
                f"no local cluster on port {port} ({path} does not exist). "
                f"Start one with `stepsize cluster up --port {port}`."
            )
        data = json.loads(path.read_text())
        data["nodes"] = [NodeRecord(**n) for n in data.get("nodes", [])]
        return cls(**data)


def cluster_folder(port: int) -> Path:
    """Where the cluster on ``port`` keeps its state, logs, token and Ray's temporary folder.

    Short on purpose: Ray's socket paths under it must stay below the OS limit (107 bytes).
    """
    return Path(f"/tmp/stepsize-cluster-{int(port)}")


def driver_env(address: str, token_path: str) -> dict[str, str]:
    """The environment a driver (``stepsize launch``) needs to join a token-authenticated cluster."""
    return {"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_path}


def detected_node_ip() -> str:
    """The address Ray gives this machine's nodes (what ``ray start`` prints as 'Local node IP')."""
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def up(
    workers: int = 2,
    cpus: float = 1,
    gpus: int = 0,
    head_cpus: float = 1,
    head_gpus: int = 0,
    port: int = DEFAULT_PORT,
    object_store_mb: int = 256,
    dashboard: bool = False,
    dashboard_port: int | None = None,
    timeout_s: float = 90.0,
    node_ip: str | None = None,
) -> LocalCluster:
    """Start a head and ``workers`` worker nodes on this machine and wait until all are alive.

    Each worker node has ``cpus`` CPUs and ``gpus`` GPUs (logical ones on a machine without
    GPUs: Ray schedules by them and sets ``CUDA_VISIBLE_DEVICES``); the head has ``head_cpus``
    and ``head_gpus``. The dashboard (``dashboard=True``) listens on 127.0.0.1 at
    ``dashboard_port`` (8265 by default); reach it from elsewhere through an SSH tunnel.
    ``node_ip`` is the address the nodes use and advertise (default: Ray's choice, this machine's
    address). Raises :class:`ClusterError` if a cluster is already recorded on ``port``, ``node_ip``
    is not an address Ray can use for several nodes, or a node does not come up.
    """
    _check_counts(workers, cpus, gpus, head_cpus, head_gpus)
    _check_node_ip(node_ip)
    folder = cluster_folder(port)
    if dashboard_port is None:
        dashboard_port = 8265 if dashboard else port + 1  # Ray runs a minimal dashboard process anyway
    if (folder / STATE_FILE).is_file():
        raise ClusterError(
            f"a local cluster is already recorded on port {port} ({folder}). "
            f"Stop it with `stepsize cluster down --port {port}`, or pick another --port."
        )
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "logs").mkdir(parents=True)
    token_path = folder / TOKEN_FILE
    write_private_token(token_path)
    cluster = LocalCluster(
        port=port,
        address=f"{node_ip or detected_node_ip()}:{port}",
        folder=str(folder),
        token_path=str(token_path),
        dashboard=f"http://127.0.0.1:{dashboard_port}" if dashboard else None,
        node_ip=node_ip,
    )
    try:
        cluster.nodes.append(_start_node(cluster, 0, head_cpus, head_gpus, object_store_mb, dashboard, dashboard_port))
        cluster.save()
        _wait_for_nodes(cluster, 1, timeout_s)
        for index in range(1, workers + 1):  # one at a time: Ray gives a node 30 s to register
            cluster.nodes.append(_start_worker(cluster, index, cpus, gpus, object_store_mb, timeout_s))
            cluster.save()
        _wait_for_nodes(cluster, workers + 1, timeout_s)
    except BaseException:
        down(port)
        raise
    return cluster


def add_node(port: int = DEFAULT_PORT, cpus: float = 1, gpus: int = 0, object_store_mb: int = 256,
             timeout_s: float = 90.0) -> NodeRecord:
    """Start one more worker node in the running cluster on ``port`` (a node joining mid-study)."""
    cluster = LocalCluster.load(port)
    _check_counts(1, cpus, gpus, 1, 0)
    index = max(n.index for n in cluster.nodes) + 1
    node = _start_worker(cluster, index, cpus, gpus, object_store_mb, timeout_s)
    cluster.nodes.append(node)
    cluster.save()
    _wait_for_nodes(cluster, len([n for n in cluster.nodes if alive(n.pid)]), timeout_s)
    return node


def down(port: int = DEFAULT_PORT, timeout_s: float = 20.0) -> int:
    """Stop every process of the cluster on ``port`` and remove its folder; returns how many
    processes were still running. Only this cluster's processes are touched: its ``ray start``
    process groups and the processes whose command line names its folder."""
    folder = cluster_folder(port)
    nodes: list[NodeRecord] = []
    if (folder / STATE_FILE).is_file():
        nodes = LocalCluster.load(port).nodes
    for node in sorted(nodes, key=lambda n: -n.index):  # workers first, the head last
        signal_group(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(n.pid) for n in nodes):
        time.sleep(0.2)
    for node in nodes:
        signal_group(node.pid, signal.SIGKILL)
    leftovers = processes_naming(str(folder) + "/")
    for pid in leftovers:
        kill(pid)
    shutil.rmtree(folder, ignore_errors=True)
    return len([n for n in nodes if n.pid]) + len(leftovers)


def kill_node(port: int, index: int) -> list[int]:
    """Kill worker node ``index`` as a machine failure would: SIGKILL to its ``ray start``
    process group (raylet, agents) and to every process that raylet started (Ray workers run in
    their own sessions). Returns the pids killed."""
    cluster = LocalCluster.load(port)
    node = next((n for n in cluster.nodes if n.index == index), None)
    if node is None or index == 0:
        raise ClusterError(f"no worker node {index} in the cluster on port {port}; worker nodes: "
                           f"{[n.index for n in cluster.nodes if n.index > 0]}")
    group = {pid for pid, info in process_table().items() if info[1] == node.pid}
    children = descendants(group)
    targets = sorted(group | children)
    signal_group(node.pid, signal.SIGKILL)
    for pid in targets:
        kill(pid)
    return targets


def status(port: int = DEFAULT_PORT, timeout_s: float = 30.0) -> dict[str, Any]:
    """The recorded cluster with each node's process state, and Ray's view of its nodes."""
    cluster = LocalCluster.load(port)
    view = {
        "address": cluster.address,
        "folder": cluster.folder,
        "dashboard": cluster.dashboard,
        "env": cluster.env(),
        "processes": [{**asdict(n), "running": alive(n.pid)} for n in cluster.nodes],
    }
    view["ray_nodes"] = _ray_nodes(cluster, expect=0, timeout_s=timeout_s)
    return view


# -- starting and waiting ---------------------------------------------------------------------

def _check_node_ip(node_ip: str | None) -> None:
    if node_ip is None:
        return
    try:
        address = ipaddress.ip_address(node_ip)
    except ValueError:
        raise ClusterError(f"--node-ip is {node_ip!r}; expected an IP address of this machine, e.g. 10.0.0.5.") from None
    if address.is_loopback or address.is_unspecified:
        raise ClusterError(
            f"--node-ip is {node_ip}; a cluster of several nodes needs an address they reach each other on (Ray "
            "replaces a loopback address with this machine's). Give one of this machine's addresses, or leave "
            "--node-ip out; a study that starts its own Ray (no --address) keeps it on 127.0.0.1."
        )


def _check_counts(workers: int, cpus: float, gpus: int, head_cpus: float, head_gpus: int) -> None:
    if not isinstance(workers, int) or workers < 0:
        raise ClusterError(f"workers is {workers!r}; expected a whole number of worker nodes, 0 or more.")
    for name, value in (("cpus", cpus), ("head_cpus", head_cpus)):
        if not isinstance(value, (int, float)) or value < 0:
            raise ClusterError(f"{name} is {value!r}; expected a number of CPUs per node, 0 or more.")
    for name, value in (("gpus", gpus), ("head_gpus", head_gpus)):
        if not isinstance(value, int) or value < 0:
            raise ClusterError(f"{name} is {value!r}; expected a whole number of GPUs per node, 0 or more.")


def _node_ports(port: int, index: int) -> list[str]:
    base = port + _PORTS_PER_NODE * (index + 1)
    workers = port + 1000 + _WORKER_PORTS_PER_NODE * index
    return [
        "--node-manager-port", str(base), "--object-manager-port", str(base + 1),
        "--dashboard-agent-listen-port", str(base + 2), "--dashboard-agent-grpc-port", str(base + 3),
        "--runtime-env-agent-port", str(base + 4), "--metrics-export-port", str(base + 5),
        "--min-worker-port", str(workers), "--max-worker-port", str(workers + _WORKER_PORTS_PER_NODE - 1),
    ]


def _start_node(cluster: LocalCluster, index: int, cpus: float, gpus: int, object_store_mb: int,
                dashboard: bool = False, dashboard_port: int = 0) -> NodeRecord:
    ray = str(Path(sys.executable).with_name("ray"))
    if not Path(ray).exists():
        ray = shutil.which("ray") or "ray"
    args = [ray, "start", "--block", "--disable-usage-stats", "--num-cpus", _num(cpus), "--num-gpus", str(gpus),
            "--object-store-memory", str(object_store_mb * 2**20), *_node_ports(cluster.port, index)]
    # Each node its own temporary folder: nodes starting at once in one folder race for socket names.
    args += ["--temp-dir", cluster.temp_dir + ("" if index == 0 else f"-{index}")]
    if cluster.node_ip:
        args += ["--node-ip-address", cluster.node_ip]
    if index == 0:
        args += ["--head", "--port", str(cluster.port),
                 "--include-dashboard", "true" if dashboard else "false",
                 "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port)]
    else:
        args += ["--address", cluster.address]
    log = Path(cluster.folder) / "logs" / ("head.log" if index == 0 else f"worker-{index}.log")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": cluster.token_path}
    env.pop("RAY_ADDRESS", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return NodeRecord(index=index, pid=process.pid, cpus=float(cpus), gpus=int(gpus), log=str(log))


def _start_worker(cluster: LocalCluster, index: int, cpus: float, gpus: int, object_store_mb: int,
                  timeout_s: float, attempts: int = 2) -> NodeRecord:
    """Start worker node ``index`` and wait until its ``ray start`` says it is up; on a busy
    machine Ray's own 30 s registration limit can pass, so a failed start is tried again."""
    for attempt in range(attempts):
        node = _start_node(cluster, index, cpus, gpus, object_store_mb)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "Ray runtime started" in tail(node.log, 40):
                return node
            if not alive(node.pid):
                break
            time.sleep(0.5)
        # Failed or too slow: clear what it left (its group and what its raylet started).
        for pid in descendants({node.pid}) | {pid for pid, info in process_table().items() if info[1] == node.pid}:
            kill(pid)
        signal_group(node.pid, signal.SIGKILL)
        if attempt + 1 == attempts:
            raise ClusterError(f"worker node {index} did not start; its log: {node.log}\n{tail(node.log)}")
        os.replace(node.log, node.log + f".attempt{attempt + 1}")
    raise AssertionError("unreachable")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _wait_for_nodes(cluster: LocalCluster, expect: int, timeout_s: float) -> None:
    for node in cluster.nodes:
        if not alive(node.pid):
            raise ClusterError(f"node {node.index} exited while starting; its log: {node.log}\n{tail(node.log)}")
    nodes = _ray_nodes(cluster, expect, timeout_s)
    up = [n for n in nodes if n["alive"]]
    if len(up) < expect:
        logs = "\n".join(f"{n.log}:\n{tail(n.log, 5)}" for n in cluster.nodes)
        raise ClusterError(f"only {len(up)} of {expect} nodes came up within {timeout_s:.0f}s; logs:\n{logs}")


_PROBE = r"""
import json, sys, time, ray
address, expect, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
nodes = []
while True:  # a fresh connection each time: a driver's node table can miss nodes that joined later
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        nodes = [{"node_id": n["NodeID"], "alive": bool(n["Alive"]), "cpus": n["Resources"].get("CPU", 0),
                  "gpus": n["Resources"].get("GPU", 0), "ip": n["NodeManagerAddress"]} for n in ray.nodes()]
        ray.shutdown()
    except Exception:
        if time.monotonic() > deadline:
            raise
    if sum(n["alive"] for n in nodes) >= expect or time.monotonic() > deadline:
        break
    time.sleep(1)
print("NODES " + json.dumps(nodes))
"""


def _ray_nodes(cluster: LocalCluster, expect: int, timeout_s: float) -> list[dict[str, Any]]:
    """Ray's node table, read by a short-lived driver (this process stays out of the cluster)."""
    env = {**os.environ, **cluster.env()}
    done = subprocess.run([sys.executable, "-c", _PROBE, cluster.address, str(expect), str(timeout_s)],
                          env=env, capture_output=True, text=True, timeout=timeout_s + 60)
    for line in done.stdout.splitlines():
        if line.startswith("NODES "):
            return json.loads(line[len("NODES "):])
    raise ClusterError(f"could not read the node table of the cluster at {cluster.address}: "
                       f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
