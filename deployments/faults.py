"""`llmrec bench faults`: the app on a local multi-node Ray cluster with PostgreSQL, faults under load.

Every request-path deployment runs two replicas, one per node (`max_replicas_per_node: 1`), behind the
HAProxy on the head node; the store is a throwaway PostgreSQL server. Steady mixed traffic comes from a
second process (`llmrec.bench.traffic`) while, phase by phase:
  - one replica of each stage is killed (`ray.kill`, as an OOM kill or a crashed process would), and
    the phase lasts until Serve has replaced it;
  - the worker node is removed (its raylet and every process on it die), then a new node joins and
    the replicas return to it;
  - PostgreSQL is restarted (a fast shutdown cuts every connection; a pause; a start).
Before the traffic, items and events are written through a Ranker on one node and read through a
Ranker on the other. The result counts the requests of each phase by outcome and checks that every
acknowledged write is in the store, each event exactly once.
"""

from __future__ import annotations

import copy
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from deployments.cluster import start_cluster
from deployments.local import APP_NAME, LOCAL_SERVE_CONFIG, replica_counts, serve_config, start, use_serve_env
from deployments.ranker import RankerDeployment
from llmrec.bench.postgres import PostgresServer
from llmrec.bench.traffic import Sent, Traffic, TrafficSpec, check_acknowledged, failure_counts, first_success_after, window
from llmrec.config import load_config
from llmrec.data.catalog import load_catalog
from llmrec.data.store import Store
from llmrec.serving.schemas import EventIn, ItemIn, RecommendRequest

STAGES = ["Ingress", "IntentParser", "Encoder", "Ranker"]  # the request path; the Profiler is off it


# On two shared cores two replicas of the intent LLM would starve everything else: the parser runs its
# fallback unless the caller's overrides say otherwise (e.g. intent.backend=transformers).
DEFAULT_OVERRIDES = ["intent.backend=none", "profiling.background=false"]


def spread_config(port: int, profile: str, store_url: str, overrides: list[str], replicas: int = 2) -> dict[str, Any]:
    """The Serve config of `profile` with `replicas` fixed replicas of every request-path deployment, at
    most one per node, and the given store."""
    config = serve_config(LOCAL_SERVE_CONFIG, port, profile, [*DEFAULT_OVERRIDES, f"store.url={store_url}", *overrides])
    config = copy.deepcopy(config)
    for deployment in config["applications"][0]["deployments"]:
        if deployment["name"] in STAGES:
            deployment.pop("autoscaling_config", None)
            deployment.update(num_replicas=replicas, max_replicas_per_node=1)
    return config


def replica_actors(deployment: str) -> list[str]:
    """The names of the live replica actors of one deployment of the app."""
    prefix = f"SERVE_REPLICA::{APP_NAME}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def kill_replica(deployment: str) -> dict[str, Any]:
    """Kill one replica of the deployment at once (as a crashed or OOM-killed process dies); returns its name,
    when the kill was sent and when its process was gone (`ray.kill` returns before the process dies)."""
    name = replica_actors(deployment)[0]
    actor = ray.get_actor(name, namespace="serve")
    pid = ray.get(actor.__ray_call__.remote(lambda _: os.getpid()))  # every node of the local cluster is this machine
    at = time.time()
    ray.kill(actor, no_restart=True)
    return {"replica": name, "at": at, "gone": gone_at(pid)}


def gone_at(pid: int, timeout_s: float = 30) -> float:
    """When the process ended or became a zombie (polled every 10 ms in /proc; where there is no /proc, at
    once), or the timeout's end if it outlives it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running(pid):
        time.sleep(0.01)
    return time.time()


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for_replicas(expected: dict[str, int], timeout_s: float) -> float:
    """Seconds until every named deployment has its expected running replicas (or the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        running = replica_counts()
        if all(running.get(name, 0) >= n for name, n in expected.items()):
            break
        time.sleep(1.0)
    return round(time.monotonic() - started, 1)


def write_here_read_there(config_args: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Writes through a Ranker pinned to node 0, reads through one pinned to node 1 (the Serve deployment's
    own class, as plain actors on the same PostgreSQL store)."""
    pipeline = load_config(config_args["config"], config_args["overrides"])
    ranker = ray.remote(num_cpus=0)(RankerDeployment.func_or_class)
    writer = ranker.options(resources={"node0": 0.01}).remote(pipeline)
    reader = ranker.options(resources={"node1": 0.01}).remote(pipeline)
    try:
        item_id, user = f"{run_id}-cross-item", f"{run_id}-cross-user"
        ray.get(writer.add_items.remote([ItemIn(item_id=item_id, scene="music", title="Two Nodes Polka", text="A polka written on one machine.")]))
        ray.get(writer.record_events.remote([EventIn(user_id=user, item_id="Jaws (1975)", kind="like", event_id=f"{user}:1")]))
        context = ray.get(reader.prepare.remote(RecommendRequest(user_id=user, history=[item_id])))
        nodes = ray.get([a.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()) for a in (writer, reader)])
        return {
            "writer_node": nodes[0][:12], "reader_node": nodes[1][:12], "different_nodes": nodes[0] != nodes[1],
            "reader_sees_item": item_id in context.history_ids, "reader_sees_event": "Jaws (1975)" in context.positive_ids and context.user_known,
        }
    finally:
        for actor in (writer, reader):
            ray.kill(actor)


def run_faults(
    phase_s: float = 20.0, rate: float = 8.0, port: int = 8124, profile: str = "local", overrides: list[str] | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The whole run: PostgreSQL, a 2-node cluster, the app, the cross-node check, then traffic and faults."""
    admin_key = os.environ.setdefault("LLMREC_API_KEY", secrets.token_hex(16))  # before the nodes start: their replicas inherit it
    use_serve_env()
    postgres = PostgresServer.create()
    cluster = start_cluster(2, cpus_per_node=2, object_store_mb=300)
    run_id = f"faults-{uuid.uuid4().hex[:8]}"
    phases: list[dict[str, Any]] = []
    try:
        config = spread_config(port, profile, postgres.url, overrides or [])
        log("deploying two replicas of every stage over two nodes ...")
        started = time.monotonic()
        start(config, timeout_s=1500)
        expected = {name: 2 for name in STAGES}
        wait_for_replicas(expected, 600)
        result: dict[str, Any] = {"start_s": round(time.monotonic() - started, 1), "replicas": replica_counts()}
        log(f"ready after {result['start_s']} s: {result['replicas']}; writing on node 0, reading on node 1 ...")
        result["cross_node"] = write_here_read_there(config["applications"][0]["args"], run_id)
        users = sorted(load_catalog(load_config(profile, overrides).catalog).interactions["user_id"].unique())[:500]
        spec = TrafficSpec(f"http://127.0.0.1:{port}", rate, run_id, users, admin_key=admin_key)
        traffic = Traffic(spec, Path(tempfile.mkdtemp(prefix="llmrec-faults-")) / "sent.jsonl")

        def phase(name: str, action: Callable[[], Any], settle: Callable[[], Any] = lambda: None) -> None:
            begun = time.time()
            log(f"{name} ...")
            detail = action()
            time.sleep(phase_s)
            recovered = settle()
            phases.append({"phase": name, "start": begun, "end": time.time(), "detail": detail, "recovered_s": recovered})

        phase("steady", lambda: None)
        for stage in STAGES:
            phase(f"kill one {stage} replica", lambda stage=stage: kill_replica(stage), lambda: wait_for_replicas(expected, 300))
        worker = next(iter(cluster.worker_nodes))

        def remove_worker() -> dict[str, float]:
            at = time.time()
            cluster.remove_node(worker)  # returns once the node's processes are killed
            return {"at": at, "gone": time.time()}

        phase("remove the worker node", remove_worker)

        def join() -> None:
            cluster.add_node(num_cpus=2, object_store_memory=300 * 2**20, resources={"node1": 1})

        phase("a new worker node joins", join, lambda: wait_for_replicas(expected, 600))

        def restart_postgres() -> dict[str, float]:
            postgres.stop()
            time.sleep(3.0)
            postgres.start()
            return {"back_at": time.time()}

        phase("restart PostgreSQL", restart_postgres)
        sent = traffic.stop()
        back = phases[-1]["detail"]["back_at"]
        rows = [{"phase": p["phase"], **window(sent, p["start"], p["end"]), "recovered_s": p["recovered_s"]} for p in phases]
        killing = [p for p in phases if p["phase"].startswith("kill")]
        kills = [s for s in sent if killing[0]["start"] <= s.ended < killing[-1]["end"]]
        # HAProxy does not resend what a dead Ingress replica was answering: those requests are the ones a kill may lose.
        ingress = next(p["detail"] for p in killing if p["phase"] == "kill one Ingress replica")
        node = next(p["detail"] for p in phases if p["phase"] == "remove the worker node")
        result.update(
            rate=rate,
            phase_s=phase_s,
            phases=rows,
            replica_kills={
                "sent": len(kills),
                "failed": sum(s.status != 200 for s in kills),
                "in_flight_at_ingress_kill": in_flight(sent, ingress["at"], ingress["gone"]),
                "ingress_gone_after_s": round(ingress["gone"] - ingress["at"], 3),
            },
            in_flight_at_node_loss=in_flight(sent, node["at"], node["gone"]),
            postgres={
                "first_write_after_s": first_success_after(sent, back, "event"),
                "first_read_after_s": first_success_after(sent, back, "recommend"),
            },
            failures=failure_counts(sent),
        )
        store = Store.open(postgres.url)
        try:
            result["durability"] = check_acknowledged(store, sent)
        finally:
            store.close()
        return result
    finally:  # the whole cluster goes: no Serve shutdown first (its controller's last calls only add noise)
        ray.shutdown()
        cluster.shutdown()
        postgres.remove()


def in_flight(sent: list[Sent], killed: float, gone: float) -> int:
    """Requests open at some moment between the kill and the process's end: those the fault may cut off
    (the ingress does not resend what a dead Ingress replica, or a node, was answering)."""
    return sum(s.started <= gone and s.ended >= killed for s in sent)


def format_result(result: dict[str, Any]) -> str:
    cross = result["cross_node"]
    lines = [
        f"two nodes, two replicas of each stage ({result['replicas']}), ready in {result['start_s']} s; traffic {result['rate']} req/s "
        f"(6 recommendations, 3 events, 1 item upsert in 10), phases of at least {result['phase_s']:.0f} s",
        f"write on node {cross['writer_node']}, read on node {cross['reader_node']}: item seen {cross['reader_sees_item']}, event seen {cross['reader_sees_event']}",
        "",
        "| phase | sent | ok | failed (%) | by status | p50 / p99 ms | back to 2 replicas after s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["phases"]:
        lines.append(
            f"| {row['phase']} | {row['sent']} | {row['ok']} | {row['failed']} ({row['failed_pct']}%) | {row['failed_by_status'] or '-'} | "
            f"{row.get('p50_ms', '-')} / {row.get('p99_ms', '-')} | {row['recovered_s'] if row['recovered_s'] is not None else '-'} |"
        )
    kills, pg, durable = result["replica_kills"], result["postgres"], result["durability"]
    share = 100 * kills["failed"] / kills["sent"] if kills["sent"] else 0.0
    lines += [
        "",
        f"replica kills: {kills['failed']} of {kills['sent']} requests failed ({share:.3f}%); {kills['in_flight_at_ingress_kill']} were in flight "
        "(at either Ingress replica) when one was killed",
        f"node loss: {result['in_flight_at_node_loss']} requests were in flight when the worker node went",
        f"PostgreSQL back: first acknowledged event {pg['first_write_after_s']} s after, first recommendation {pg['first_read_after_s']} s after",
        f"acknowledged writes: {durable['acknowledged_events']} events, {durable['acknowledged_items']} items; lost events {len(durable['lost_events'])}, "
        f"duplicated events {len(durable['duplicated_events'])}, lost items {len(durable['lost_items'])}",
    ]
    if result["failures"]:
        lines += ["", "failures (op, status: message, count):", *(f"- {f}: {n}" for f, n in result["failures"].items())]
    return "\n".join(lines)
