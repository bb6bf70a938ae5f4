"""``stepsize cluster up|down|status|add-node|kill-node``: a local multi-node Ray cluster."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

EXIT_USAGE = 2


def add_cluster_parser(sub: Any) -> None:
    """Add the ``cluster`` command and its subcommands to the ``stepsize`` parser."""
    from cluster.local import DEFAULT_PORT

    cluster = sub.add_parser("cluster", help="start, inspect or stop a local multi-node Ray cluster (development, tests)")
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="start a head and N worker nodes on this machine with `ray start`")
    up.add_argument("--workers", type=int, default=2, help="worker nodes (default %(default)s)")
    up.add_argument("--cpus", type=float, default=1, help="CPUs per worker node (default %(default)s)")
    up.add_argument("--gpus", type=int, default=0,
                    help="GPUs per worker node (default %(default)s); logical ones where the machine has none")
    up.add_argument("--head-cpus", type=float, default=1, dest="head_cpus", help="CPUs of the head (default %(default)s)")
    up.add_argument("--head-gpus", type=int, default=0, dest="head_gpus", help="GPUs of the head (default %(default)s)")
    up.add_argument("--object-store-mb", type=int, default=256, dest="object_store_mb",
                    help="object store per node in MiB (default %(default)s)")
    up.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (on 127.0.0.1 only)")
    up.add_argument("--dashboard-port", type=int, dest="dashboard_port", help="dashboard port (default 8265)")
    up.add_argument("--node-ip", dest="node_ip",
                    help="the address the nodes use and advertise (default: this machine's, as Ray picks it); "
                         "Ray's processes listen on every interface of a multi-node cluster: keep its token private "
                         "and reach its ports through an SSH tunnel (docs/security.md)")
    up.add_argument("--json", action="store_true", help="print the cluster as JSON")

    add = actions.add_parser("add-node", help="start one more worker node in the running cluster")
    add.add_argument("--cpus", type=float, default=1, help="CPUs of the node (default %(default)s)")
    add.add_argument("--gpus", type=int, default=0, help="GPUs of the node (default %(default)s)")

    kill = actions.add_parser("kill-node", help="kill one worker node's processes, as a machine failure would")
    kill.add_argument("index", type=int, help="worker node number (1..N, as `status` lists them)")

    actions.add_parser("down", help="stop every process of the cluster and remove its folder")
    status = actions.add_parser("status", help="the cluster's nodes, their resources, and how to connect")
    status.add_argument("--json", action="store_true", help="print JSON")
    for parser in (up, add, kill, actions.choices["down"], status):
        parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                            help="the head's GCS port; it names the cluster (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Carry out ``stepsize cluster ACTION``; returns the exit code."""
    from cluster.local import cluster as lc
    from orchestrator.errors import ClusterError

    try:
        if args.action == "up":
            cluster = lc.up(workers=args.workers, cpus=args.cpus, gpus=args.gpus, head_cpus=args.head_cpus,
                            head_gpus=args.head_gpus, port=args.port, object_store_mb=args.object_store_mb,
                            dashboard=args.dashboard, dashboard_port=args.dashboard_port, node_ip=args.node_ip)
            if args.json:
                print(json.dumps({"address": cluster.address, "folder": cluster.folder, "env": cluster.env(),
                                  "nodes": [vars(n) for n in cluster.nodes]}, indent=2))
            else:
                _print_started(cluster)
        elif args.action == "add-node":
            node = lc.add_node(args.port, cpus=args.cpus, gpus=args.gpus)
            print(f"worker node {node.index} started ({node.cpus:g} CPUs, {node.gpus} GPUs, pid {node.pid})")
        elif args.action == "kill-node":
            killed = lc.kill_node(args.port, args.index)
            print(f"worker node {args.index}: killed {len(killed)} processes")
        elif args.action == "down":
            count = lc.down(args.port)
            print(f"cluster on port {args.port} stopped ({count} processes)")
        else:
            view = lc.status(args.port)
            print(json.dumps(view, indent=2) if args.json else _status_text(view))
    except ClusterError as exc:
        print(f"stepsize: cluster: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _exports(env: dict[str, str]) -> str:
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def _print_started(cluster: Any) -> None:
    workers = [n for n in cluster.nodes if n.index > 0]
    print(f"Ray cluster at {cluster.address}: head + {len(workers)} worker nodes "
          f"({', '.join(f'{n.cpus:g} CPU/{n.gpus} GPU' for n in cluster.nodes)})")
    if cluster.dashboard:
        print(f"dashboard: {cluster.dashboard} (this machine only; use an SSH tunnel from elsewhere)")
    print("to run a study on it, in this shell:")
    print(f"  {_exports(cluster.env())}")
    print("  stepsize launch STUDY.yaml --address auto")
    print(f"stop it with: stepsize cluster down --port {cluster.port}")


def _status_text(view: dict[str, Any]) -> str:
    lines = [f"cluster {view['address']} ({view['folder']})"]
    alive = {n["node_id"]: n for n in view["ray_nodes"]}
    for proc in view["processes"]:
        role = "head" if proc["index"] == 0 else f"worker {proc['index']}"
        lines.append(f"  {role:<9} pid {proc['pid']:<7} {'running' if proc['running'] else 'stopped':<8} "
                     f"{proc['cpus']:g} CPU {proc['gpus']} GPU")
    live = [n for n in alive.values() if n["alive"]]
    lines.append(f"Ray: {len(live)} alive nodes, {sum(n['cpus'] for n in live):g} CPUs, "
                 f"{sum(n['gpus'] for n in live):g} GPUs")
    for node in live:
        lines.append(f"  {node['node_id'][:12]}  {node['ip']}  {node['cpus']:g} CPU {node['gpus']:g} GPU")
    if view.get("dashboard"):
        lines.append(f"dashboard: {view['dashboard']}")
    lines.append(_exports(view["env"]))
    return "\n".join(lines)
