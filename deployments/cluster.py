"""A local multi-node Ray cluster on this machine: Ray's own multi-node test facility (`ray.cluster_utils`).

Each node is its own raylet with its own worker processes, so a node can be removed under load as a
machine would fail. Node i offers the custom resource `node{i}`, which pins work to it.
"""

from __future__ import annotations

from typing import Any

import ray


def start_cluster(nodes: int, cpus_per_node: float = 1, object_store_mb: int = 150) -> Any:
    """A cluster of `nodes` nodes, `cpus_per_node` logical CPUs each; the driver is connected to it."""
    from ray.cluster_utils import Cluster

    node_args = {"num_cpus": cpus_per_node, "object_store_memory": object_store_mb * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "resources": {"node0": 1}, "include_dashboard": False})
    for i in range(1, nodes):
        cluster.add_node(**node_args, resources={f"node{i}": 1})
    ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
    cluster.wait_for_nodes()
    return cluster
