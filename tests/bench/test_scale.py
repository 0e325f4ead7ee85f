"""`llmrec bench scale` on a reduced run: real films, real encoder, real FAISS, the in-process recommender.

The full run (10k to 1M items) is a command (docs/scale.md); this proves the pieces it rests on:
projected vectors close to encoded ones, exact recall 1.0, an auto pick that meets its recall bar, a
written table that `index.kind: auto` then follows, and whole requests answered over the scale catalog.
"""

from __future__ import annotations

import json

import pytest

from llmrec.bench import scale
from llmrec.config import IndexConfig, load_config
from llmrec.index import vector_index


@pytest.fixture(scope="module")
def reduced_run():
    return scale.scale_benchmark(
        load_config(), sizes=[300, 900], requests=3, n_films=700, naive_items=40, naive_requests=1, projection_sample=50, log=lambda line: None
    )


def test_projected_vectors_of_recombined_films_are_close_to_their_encoded_vectors(reduced_run):
    assert reduced_run["projection_cosine"] > 0.9


def test_exact_search_has_recall_one_and_the_auto_pick_meets_the_recall_bar_with_and_without_a_filter(reduced_run):
    rows = reduced_run["rows"]
    assert {r["size"] for r in rows} == {300, 900}
    assert {r["projected"] for r in rows if r["size"] == 900} == {900 - (700 - scale.QUERIES)}
    for row in rows:
        if row["kind"] == "flat":  # exact: only ties at the 10th score (films with the same text) can swap an id
            assert row["recall@10"] >= 0.99 and row["recall@10_filtered"] >= 0.99
    for pick in reduced_run["auto"]:
        chosen = next(r for r in rows if r["size"] == pick["size"] and r["kind"] == pick["kind"] and r["params"] == pick["params"])
        assert chosen["recall@10"] >= scale.MIN_RECALL and chosen["recall@10_filtered"] >= scale.MIN_RECALL
        faster = [r for r in rows if r["size"] == pick["size"] and r["p50_k10_ms"] < chosen["p50_k10_ms"]]
        assert all(min(r["recall@10"], r["recall@10_filtered"]) < scale.MIN_RECALL for r in faster)


def test_whole_requests_over_the_scale_catalog_are_timed_with_the_auto_index(reduced_run):
    picks = {p["size"]: p["kind"] for p in reduced_run["auto"]}
    for row in reduced_run["recommend"]:
        assert row["index_kind"] == picks[row["size"]]
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["p50_filtered_ms"] > 0
    assert reduced_run["naive"]["items"] == 40 and reduced_run["naive"]["naive_p50_ms"] > 0
    table = scale.format_result(reduced_run)
    assert "**auto**" in table and "seed design" in table


def test_the_written_auto_table_is_what_index_kind_auto_follows(reduced_run, tmp_path, monkeypatch):
    path = tmp_path / "index-auto.json"
    scale.write_auto(reduced_run, path)
    assert json.loads(path.read_text())["choices"] == reduced_run["auto"]
    read = vector_index.auto_table.__wrapped__  # the uncached reader
    monkeypatch.setattr(vector_index, "auto_table", lambda: read(path))
    for pick in reduced_run["auto"]:
        chosen = vector_index.resolve(IndexConfig(kind="auto"), pick["size"])
        assert chosen.kind == pick["kind"] and all(getattr(chosen, k) == v for k, v in pick["params"].items())
