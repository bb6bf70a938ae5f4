"""The local cluster's layout, without starting one: each node's ports apart from the others' and
the head's, and a folder short enough for Ray's socket paths."""

from __future__ import annotations

from cluster.local.cluster import _node_ports, cluster_folder


def test_local_cluster_nodes_get_disjoint_ports_and_short_paths():
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


def test_the_node_address_is_the_users_choice_and_a_loopback_one_is_refused(tmp_path, monkeypatch):
    import pytest

    from cluster.local import cluster as lc
    from orchestrator.errors import ClusterError

    for refused in ("127.0.0.1", "0.0.0.0", "not-an-ip"):
        with pytest.raises(ClusterError, match="--node-ip"):
            lc.up(workers=1, node_ip=refused, port=6999)
    assert not (lc.cluster_folder(6999) / lc.STATE_FILE).exists()  # refused before anything started
    started = []
    monkeypatch.setattr(lc.subprocess, "Popen", lambda args, **kw: started.append(args) or type("P", (), {"pid": 1})())
    node = lc.LocalCluster(port=6999, address="10.1.2.3:6999", folder=str(tmp_path), token_path="t", node_ip="10.1.2.3")
    (tmp_path / "logs").mkdir()
    lc._start_node(node, 0, 1, 0, 64)
    assert started[0][started[0].index("--node-ip-address") + 1] == "10.1.2.3"
