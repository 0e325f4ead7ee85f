"""Which store a cluster may use: SQLite only where every process that opens it runs on one machine.

SQLite's locks (POSIX file locks, the WAL's shared-memory index) hold between the processes of one
kernel, not between machines that share a network volume (NFS, Filestore, EFS, CephFS: the
ReadWriteMany class of k8s/base/volume.yaml). There two writers can both hold the lock and a follower
can read a half-written WAL: lost or corrupt items and events. A Ray cluster of several nodes is
several machines unless its pods are known to share one: a ReadWriteOnce volume, which Kubernetes
mounts on one node only, makes sure of it, and the cpu-small overlay says so with
LLMREC_STORE_ONE_MACHINE=1. Everywhere else a multi-node cluster needs PostgreSQL
(`postgresql://...`, docs/kubernetes.md).

Pure functions; the Ranker deployment calls `check_store_for_cluster` with Ray's alive node count
before it opens the store.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmrec.config import ConfigError

ONE_MACHINE_ENV = "LLMREC_STORE_ONE_MACHINE"  # "1": every Ray node of this cluster runs on one machine


def is_sqlite(url: str | None) -> bool:
    """True for what `Store.open` opens as SQLite: no URL (the default file), `sqlite:///PATH` or a plain path."""
    text = str(url or "").strip()
    return not text or text.startswith("sqlite:") or "://" not in text


def declares_one_machine(environ: Mapping[str, str]) -> bool:
    """Whether the environment states that the whole cluster runs on one machine (LLMREC_STORE_ONE_MACHINE)."""
    return environ.get(ONE_MACHINE_ENV, "").strip().lower() in {"1", "true", "yes"}


def check_store_for_cluster(url: str | None, nodes: int, *, one_machine: bool = False) -> None:
    """Raise ConfigError when `nodes` Ray nodes (more than one, not declared on one machine) would share a SQLite store."""
    if nodes <= 1 or one_machine or not is_sqlite(url):
        return
    where = str(url).strip() if url and str(url).strip() else "the default SQLite file under LLMREC_HOME/state"
    raise ConfigError(
        f"store url {where!r} is SQLite, but the Ray cluster has {nodes} alive nodes: SQLite's locks do not hold across "
        "machines sharing a volume, so replicas would lose or corrupt writes. Use PostgreSQL: set LLMREC__STORE__URL "
        "(on Kubernetes the llmrec-secrets key store-url) to postgresql://USER:PASSWORD@HOST:PORT/DB; or, if every Ray node "
        f"runs on one machine (a ReadWriteOnce volume), set {ONE_MACHINE_ENV}=1"
    )
