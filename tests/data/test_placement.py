"""The start-up refusal of SQLite on a multi-node cluster (llmrec/data/placement.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from llmrec.config import ConfigError
from llmrec.data.placement import ONE_MACHINE_ENV, check_store_for_cluster, declares_one_machine, is_sqlite
from llmrec.errors import LLMRecError

SQLITE = ["sqlite:////data/llmrec/state/demo.sqlite", "/data/llmrec/state/demo.sqlite", "state/demo.sqlite", None, "", "  "]
SERVER = ["postgresql://llmrec:secret@postgres.llmrec.svc:5432/llmrec", "postgres://u:p@db:5432/llmrec"]


@pytest.mark.parametrize("url", SQLITE)
def test_sqlite_urls_paths_and_the_default_are_sqlite(url):
    assert is_sqlite(url)


@pytest.mark.parametrize("url", SERVER)
def test_postgres_urls_are_not_sqlite(url):
    assert not is_sqlite(url)


@pytest.mark.parametrize("url", SQLITE + SERVER)
@pytest.mark.parametrize("nodes", [0, 1])
def test_a_single_node_may_use_any_store(url, nodes):
    check_store_for_cluster(url, nodes)


@pytest.mark.parametrize("url", SERVER)
@pytest.mark.parametrize("nodes", [2, 3, 40])
def test_a_multi_node_cluster_may_use_postgres(url, nodes):
    check_store_for_cluster(url, nodes)


@pytest.mark.parametrize("url", SQLITE)
@pytest.mark.parametrize("nodes", [2, 3, 40])
def test_a_multi_node_cluster_refuses_sqlite_with_a_message_that_says_what_to_do(url, nodes):
    with pytest.raises(ConfigError) as raised:
        check_store_for_cluster(url, nodes)
    message = str(raised.value)
    assert isinstance(raised.value, LLMRecError)
    assert f"{nodes} alive nodes" in message and "SQLite" in message
    assert "postgresql://" in message and "store-url" in message and ONE_MACHINE_ENV in message
    where = (url or "").strip() or "the default SQLite file under LLMREC_HOME/state"
    assert repr(where) in message


@pytest.mark.parametrize("url", SQLITE)
def test_a_cluster_declared_on_one_machine_may_use_sqlite(url):
    check_store_for_cluster(url, 3, one_machine=True)


@pytest.mark.parametrize(("value", "declared"), [("1", True), ("true", True), (" Yes ", True), ("0", False), ("", False), ("no", False)])
def test_one_machine_is_declared_only_by_a_true_value(value, declared):
    assert declares_one_machine({ONE_MACHINE_ENV: value}) is declared
    assert declares_one_machine({}) is False


def test_the_ranker_deployment_checks_the_store_before_it_opens_it():
    """RankerDeployment.__init__ (Serve only, so read, not run) calls the check with Ray's alive nodes, then opens the store."""
    tree = ast.parse((Path(__file__).resolve().parents[2] / "deployments" / "ranker.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RankerDeployment"]
    (init,) = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    calls = [ast.unparse(n.func) for n in ast.walk(init) if isinstance(n, ast.Call)]
    assert "check_store_for_cluster" in calls and "ray.nodes" in calls and "Store.open" in calls
    lines = {name: min(n.lineno for n in ast.walk(init) if isinstance(n, ast.Call) and ast.unparse(n.func) == name) for name in ("check_store_for_cluster", "Store.open")}
    assert lines["check_store_for_cluster"] < lines["Store.open"], "refuse before the SQLite file is opened"
