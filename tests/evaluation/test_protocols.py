"""Evaluation plumbing on hand-computed cases: top-k masking, metrics of ranked lists, protocol splits."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmrec.data.text import attribute_tokens
from llmrec.evaluation.protocols import COLD_USER_STEPS, _step_queries
from llmrec.evaluation.scenes import SCENES, _cross, scene_metrics
from llmrec.evaluation.tasks import (
    Items,
    Queries,
    evaluate,
    interaction_matrix,
    metric_specs,
    top_k,
)


def _items(n: int) -> Items:
    return Items(np.array([f"i{j}" for j in range(n)], dtype=object), [f"item {j}" for j in range(n)], [[] for _ in range(n)])


def _queries(history: list[list[int]], relevant: list[set[int]], n_items: int, candidates=None) -> Queries:
    rows = [r for r, cols in enumerate(history) for _ in cols]
    cols = [c for cols in history for c in cols]
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(history), n_items))
    return Queries("q", [f"u{r}" for r in range(len(history))], matrix, [{}] * len(history), relevant, candidates)


def test_top_k_leaves_out_history_and_non_candidates_and_orders_best_first():
    scores = np.array([[0.9, 0.8, 0.1, 0.5, 0.7]])
    queries = _queries([[0]], [{1}], 5, candidates=np.array([True, True, True, True, False]))
    # item 0 is history, item 4 is not a candidate: 1 (0.8), 3 (0.5), 2 (0.1)
    assert top_k(scores, queries, 3) == [[1, 3, 2]]
    assert top_k(scores, queries, 10) == [[1, 3, 2]]  # fewer rankable items than k


def test_evaluate_matches_hand_computed_ndcg_precision_recall_map():
    # user 0: list [a, b, c], relevant {b, d}: hit at rank 2.
    # nDCG@3 = (1/ln 3) / (1/ln 2 + 1/ln 3); P@3 = 1/3; R@3 = 1/2; MSR map = (1/2) / 2 = 0.25
    # user 1: list [c, a, b], relevant {c}: hit at rank 1 -> nDCG 1, P 1/3, R 1, map 1.
    queries = _queries([[], []], [{1, 3}, {2}], 4)
    found = evaluate(queries, [[0, 1, 2], [2, 0, 1]], metric_specs(["ndcg@3", "precision@3", "recall@3", "map@3"]))
    ndcg0 = (1 / math.log(3)) / (1 / math.log(2) + 1 / math.log(3))
    assert found["ndcg@3"] == pytest.approx((ndcg0 + 1) / 2)
    assert found["precision@3"] == pytest.approx(1 / 3)
    assert found["recall@3"] == pytest.approx(0.75)
    assert found["map@3"] == pytest.approx((0.25 + 1) / 2)


def test_users_without_targets_do_not_count():
    queries = _queries([[], []], [{0}, set()], 3)
    assert evaluate(queries, [[0], [1]], metric_specs(["ndcg@1"]))["ndcg@1"] == 1.0


def test_interaction_matrix_is_binary_and_ignores_unknown_ids():
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "zz"], "item_id": ["i1", "i1", "i0", "i0"]})
    matrix = interaction_matrix(frame, ["a", "b"], _items(2))
    assert matrix.toarray().tolist() == [[0, 1], [1, 0]]


def test_attribute_tokens_bucket_years_and_split_lists():
    assert attribute_tokens({"year": 1997, "genres": ["Comedy", "Drama"]}) == ["year=1995-1999", "genres=Comedy", "genres=Drama"]


def test_cold_user_steps_reveal_the_first_interactions_and_keep_the_same_targets():
    held = pd.DataFrame({"user_id": ["u"] * 7, "item_id": [f"i{j}" for j in range(7)], "rating": 4.0, "timestamp": range(7)})
    steps = _step_queries(held, _items(7), {"u": {"age": "25-34"}}, None)
    assert [q.name for q in steps] == ["profile", "first-1", "first-3", "first-5"]
    assert [q.history.nnz for q in steps] == list(COLD_USER_STEPS)
    assert steps[2].history.indices.tolist() == [0, 1, 2]
    assert all(q.relevant == [{5, 6}] for q in steps)  # the interactions after the first 5, at every step
    assert steps[0].profiles == [{"age": "25-34"}]


def test_cross_features_put_each_multi_hot_row_in_its_block():
    genres = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))
    crossed = _cross(np.array([1, 0]), 2, genres).toarray()
    assert crossed.tolist() == [[0, 0, 0, 1, 0, 1], [0, 1, 0, 0, 0, 0]]


def test_scene_metrics_per_scene_and_overall():
    scenes = list(SCENES)
    test = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c", "c"],
            "item_id": ["x", "y", "x", "y", "x", "y"],
            "label": [1, 0, 0, 1, 1, 0],
            "scene": [scenes[0], scenes[0], scenes[1], scenes[1], scenes[2], scenes[2]],
        }
    )
    perfect = scene_metrics(test, np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.3]))
    assert perfect["auc"] == 1.0
    assert all(perfect[f"ndcg@10 ({s})"] == 1.0 for s in scenes)
    inverted = scene_metrics(test, np.array([0.1, 0.9, 0.8, 0.2, 0.3, 0.7]))
    assert inverted["auc"] == 0.0
    assert inverted[f"ndcg@10 ({scenes[0]})"] == pytest.approx(1 / math.log(3) * math.log(2))
