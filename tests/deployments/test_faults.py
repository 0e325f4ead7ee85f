"""Faults at cluster scale, for real: `llmrec bench faults` (a local two-node Ray cluster, PostgreSQL,
steady mixed traffic from a second process) run in its own process, reduced to short phases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def faults(llmrec_home, demo_catalog, postgres_server) -> dict:
    """One reduced run (its own Ray cluster and PostgreSQL server; the session's server only proves the programs are there)."""
    command = [sys.executable, "-m", "llmrec_cli", "bench", "faults", "--phase-seconds", "8", "--rate", "6", "--port", str(_free_port()), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env={**os.environ, "LLMREC_HOME": str(llmrec_home)})
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()  # Ray's own processes may print a line before the document
    return json.loads("\n".join(lines[lines.index("{"):]))


def test_a_write_through_one_node_is_read_through_a_replica_on_the_other(faults):
    cross = faults["cross_node"]
    assert cross["different_nodes"] and cross["reader_sees_item"] and cross["reader_sees_event"]


def test_killing_a_replica_of_a_stage_behind_the_ingress_loses_no_request(faults):
    """Calls to a dead IntentParser, Encoder or Ranker replica are sent again to the other one."""
    for stage in ("IntentParser", "Encoder", "Ranker"):
        phase = next(p for p in faults["phases"] if p["phase"] == f"kill one {stage} replica")
        assert phase["sent"] > 20 and phase["failed"] == 0, (stage, faults["failures"])
        assert phase["recovered_s"] is not None and phase["recovered_s"] < 300


def test_killing_replicas_loses_at_most_a_thousandth_or_what_the_killed_ingress_was_answering(faults):
    """The HTTP ingress does not resend what a dead Ingress replica was answering: over a short run those
    (at most the requests open between the kill and the end of the replica's process) may be more than
    0.1%; nothing else may fail."""
    kills = faults["replica_kills"]
    assert kills["sent"] > 100 and kills["ingress_gone_after_s"] < 10  # the window counted as in flight is the kill's own
    assert kills["failed"] <= max(kills["sent"] // 1000, kills["in_flight_at_ingress_kill"]), faults["failures"]


def test_losing_a_worker_node_loses_at_most_one_percent_and_a_new_node_gets_its_replicas_back(faults):
    """At most 1%, or, over a phase this short, the requests in flight when the node went (the ingress does
    not resend what a node's Ingress replica was answering)."""
    removed, joined = (next(p for p in faults["phases"] if p["phase"] == name) for name in ("remove the worker node", "a new worker node joins"))
    assert removed["sent"] > 20 and removed["failed"] <= max(removed["sent"] // 100, faults["in_flight_at_node_loss"]), faults["failures"]
    assert joined["failed_pct"] <= 1.0 and joined["recovered_s"] < 600


def test_after_a_postgresql_restart_requests_succeed_within_five_seconds(faults):
    assert faults["postgres"]["first_write_after_s"] is not None and faults["postgres"]["first_write_after_s"] <= 5
    assert faults["postgres"]["first_read_after_s"] is not None and faults["postgres"]["first_read_after_s"] <= 5


def test_every_acknowledged_write_is_stored_and_each_event_once(faults):
    durable = faults["durability"]
    assert durable["acknowledged_events"] > 20 and durable["acknowledged_items"] > 5
    assert durable["lost_events"] == [] and durable["duplicated_events"] == [] and durable["lost_items"] == []
