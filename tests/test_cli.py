"""The `llmrec` command line, run as a user runs it: a separate process, real catalog, --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest


def llmrec(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmrec_cli", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=900
    )


def test_prepare_movielens_1m_reports_the_published_counts(llmrec_home):
    result = llmrec("data", "prepare", "movielens-1m", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["interactions"], summary["items"], summary["users"]) == (1_000_209, 3_883, 6_040)


def test_prepare_movielens_100k_carries_knowledge_graph_facts(llmrec_home):
    result = llmrec("data", "prepare", "movielens-100k", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["interactions"], summary["items"], summary["users"]) == (100_000, 1_682, 943)
    assert summary["kg_facts"] > 50_000


def test_recommend_by_query_prints_animated_films_as_json(demo):
    result = llmrec("recommend", "--scene", "movie", "--query", "funny animated movie for kids", "-k", "10", "--json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    assert len(items) == 10
    kids = [i for i in items if {"Animation", "Children's"} & set(i["attributes"]["genres"])]
    assert len(kids) >= 7, [i["title"] for i in items]


def test_item_added_by_cli_is_returned_by_the_next_call(demo, tmp_path):
    item_id = f"cli-{uuid.uuid4().hex[:8]}"
    store = {"LLMREC__STORE__URL": f"sqlite:///{tmp_path / 'state.sqlite'}"}
    added = llmrec("items", "add", "--id", item_id, "--scene", "grocery", "--title", "Smoked Sea Salt Caramels",
                   "--text", "Soft butter caramels with smoked sea salt, hand-wrapped.", "--attr", "brand=Saltworks", "--json", env=store)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"added": [item_id]}
    result = llmrec("recommend", "--query", "smoked sea salt caramel candy", "-k", "3", "--json", env=store)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["scene"] == "grocery" and answer["items"][0]["item_id"] == item_id


def test_items_from_a_file_events_removal_and_scenes_reach_the_store_every_later_call_reads(demo_catalog, tmp_path):
    tag = uuid.uuid4().hex[:8]
    store = {"LLMREC__STORE__URL": f"sqlite:///{tmp_path / 'state.sqlite'}"}
    lines = [{"item_id": f"cli-file-{tag}-{n}", "scene": "music", "title": f"Accordion Waltz {n}", "text": "A French accordion waltz."} for n in range(2)]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    added = llmrec("items", "add", "--file", str(tmp_path / "items.jsonl"), "--json", env=store)
    assert added.returncode == 0 and json.loads(added.stdout) == {"added": [line["item_id"] for line in lines]}, added.stderr
    removed = llmrec("items", "remove", lines[0]["item_id"], "--json", env=store)
    assert removed.returncode == 0 and json.loads(removed.stdout) == {"removed": [lines[0]["item_id"]]}, removed.stderr
    stored = llmrec("events", "add", "--user-id", f"cli-user-{tag}", "--item-id", lines[1]["item_id"], "--kind", "like", "--json", env=store)
    assert stored.returncode == 0 and json.loads(stored.stdout) == {"stored": 1}, stored.stderr
    scenes = llmrec("scenes", "--json", env=store)
    assert scenes.returncode == 0, scenes.stderr
    sizes = {s["scene"]: s["items"] for s in json.loads(scenes.stdout)}
    assert sizes["music"] == int((demo_catalog.items["scene"] == "music").sum()) + 1  # one added item is left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "--query", "comedy", "-k", "0"], "k: Input should be greater than or equal to 1"),
        (["recommend"], "empty request"),
        (["recommend", "--scene", "books", "--query", "a novel"], "unknown scene 'books'"),
        (["recommend", "--query", "comedy", "-k", "500"], "above the maximum 100"),
        (["recommend", "--user-id", "nobody-at-all"], "nothing else to go on"),
        (["data", "prepare", "no-such-data"], "unknown data set 'no-such-data'"),
        (["items", "add", "--id", "x"], "give --id, --scene and --title or --text"),
        (["recommend", "--query", "comedy", "--range", "year=abc:1999"], "needs numbers"),
        (["recommend", "--query", "comedy", "--set", "nonsense"], "must look like section.key=value"),
        (["recommend", "--query", "comedy", "--set", "index.kind=[unclosed"], "is not a valid value"),
        (["recommend", "--query", "comedy", "--set", "encoder.device=cuda"], "sees no CUDA device"),
        (["recommend", "--query", "comedy", "--set", "encoder.nonsense=1"], "encoder.nonsense: Extra inputs are not permitted"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(demo, args, message):
    result = llmrec(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
