"""Metrics against numbers worked out by hand (arithmetic in the comments) and against MSR's own test case."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from llmrec.evaluation.metrics import (
    auc,
    hit_rate_at_k,
    logloss,
    map,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

RANKING = (precision_at_k, recall_at_k, hit_rate_at_k, ndcg_at_k, map, map_at_k)

# Two users, k=3. u1's top 3 is a, b, c: one hit (b) at rank 2 of 2 relevant.
# u2's list x, y is shorter than k: one hit (x) at rank 1 of 2 relevant.
RECOMMENDED = {"u1": ["a", "b", "c", "d"], "u2": ["x", "y"]}
RELEVANT = {"u1": {"b", "d"}, "u2": {"x", "z"}}


def test_precision_divides_by_k_even_when_the_list_is_shorter():
    # u1: 1 hit / 3 = 1/3; u2: 1 hit / 3 (not / 2) = 1/3; mean = 1/3
    assert precision_at_k(RECOMMENDED, RELEVANT, k=3) == pytest.approx(1 / 3)


def test_recall_divides_by_the_number_of_relevant_items():
    # u1: 1/2; u2: 1/2; mean = 0.5
    assert recall_at_k(RECOMMENDED, RELEVANT, k=3) == pytest.approx(0.5)


def test_hit_rate_counts_users_with_any_hit():
    # both users have a hit in their top 3: 2/2
    assert hit_rate_at_k(RECOMMENDED, RELEVANT, k=3) == 1.0
    # k=1: u1's top 1 is a (miss), u2's is x (hit): 1/2
    assert hit_rate_at_k(RECOMMENDED, RELEVANT, k=1) == 0.5


def test_ndcg_discounts_by_log_of_rank_plus_one():
    # Let g = ln2/ln3 = 0.63093 (the discount of rank 2 relative to rank 1; the log base cancels).
    # u1: dcg = rank 2 = g; idcg = 2 relevant, min(3, 2) = 2 slots = 1 + g; ndcg = g / (1 + g) = 0.38685
    # u2: dcg = rank 1 = 1; idcg = 1 + g;                                 ndcg = 1 / (1 + g) = 0.61315
    # mean = (g + 1) / (1 + g) / 2 = 0.5
    assert ndcg_at_k(RECOMMENDED, RELEVANT, k=3) == pytest.approx(0.5)


def test_map_averages_precision_at_each_hit_over_all_relevant_items():
    # u1: hit at rank 2, precision 1/2; / 2 relevant = 0.25
    # u2: hit at rank 1, precision 1/1; / 2 relevant = 0.5
    # mean = 0.375 (k=3 >= every relevant count, so map_at_k agrees)
    assert map(RECOMMENDED, RELEVANT, k=3) == pytest.approx(0.375)
    assert map_at_k(RECOMMENDED, RELEVANT, k=3) == pytest.approx(0.375)


def test_map_keeps_all_relevant_items_in_the_denominator_while_map_at_k_caps_it_at_k():
    # k=1: u1's top 1 (a) misses: 0. u2's top 1 (x) hits, precision 1.
    # map:      u2 = 1 / 2 relevant       = 0.5; mean (0 + 0.5) / 2 = 0.25
    # map_at_k: u2 = 1 / min(2 relevant, 1) = 1; mean (0 + 1) / 2   = 0.5
    assert map(RECOMMENDED, RELEVANT, k=1) == pytest.approx(0.25)
    assert map_at_k(RECOMMENDED, RELEVANT, k=1) == pytest.approx(0.5)


def test_map_uses_the_precision_at_every_hit_not_just_the_first():
    # hits at ranks 1 and 3 of 2 relevant: (1/1 + 2/3) / 2 = 0.83333
    assert map({"u": ["a", "x", "b"]}, {"u": {"a", "b"}}, k=3) == pytest.approx((1 + 2 / 3) / 2)


def test_user_without_a_hit_in_the_top_k_counts_as_zero():
    recommended = {"u1": ["a", "b"], "u2": ["c", "d"]}
    relevant = {"u1": {"a"}, "u2": {"z"}}  # u2 has nothing relevant in its list
    # u1: precision 1/2, recall 1/1, hit 1, ndcg 1, AP 1/1; u2: all 0; means over 2 users
    assert precision_at_k(recommended, relevant, k=2) == pytest.approx(0.25)
    assert recall_at_k(recommended, relevant, k=2) == pytest.approx(0.5)
    assert hit_rate_at_k(recommended, relevant, k=2) == pytest.approx(0.5)
    assert ndcg_at_k(recommended, relevant, k=2) == pytest.approx(0.5)
    assert map(recommended, relevant, k=2) == pytest.approx(0.5)


def test_relevant_items_past_k_are_not_hits():
    # the only relevant item sits at rank 3; with k=2 nothing counts
    recommended, relevant = {"u": ["a", "b", "c"]}, {"u": {"c"}}
    assert all(metric(recommended, relevant, k=2) == 0.0 for metric in RANKING)
    # with k=3: precision 1/3, ndcg = (1/ln4) / (1/ln2) = ln2/ln4 = 0.5, AP = (1/3) / 1
    assert precision_at_k(recommended, relevant, k=3) == pytest.approx(1 / 3)
    assert ndcg_at_k(recommended, relevant, k=3) == pytest.approx(0.5)
    assert map(recommended, relevant, k=3) == pytest.approx(1 / 3)


def test_k_larger_than_the_list_only_lowers_precision():
    recommended, relevant = {"u": ["a", "b"]}, {"u": {"a", "b"}}
    # precision 2/5; recall 2/2; ndcg: both hits in the 2 ideal slots = 1; AP (1/1 + 2/2) / 2 = 1
    assert precision_at_k(recommended, relevant, k=5) == pytest.approx(0.4)
    assert recall_at_k(recommended, relevant, k=5) == 1.0
    assert ndcg_at_k(recommended, relevant, k=5) == pytest.approx(1.0)
    assert map(recommended, relevant, k=5) == pytest.approx(1.0)
    assert map_at_k(recommended, relevant, k=5) == pytest.approx(1.0)


def test_users_only_in_the_predictions_are_ignored():
    with_ghosts = {**RECOMMENDED, "ghost": ["b", "x"], "empty-test": ["a"]}
    relevant = {**RELEVANT, "empty-test": set()}  # an empty set is no test data
    for metric in RANKING:
        assert metric(with_ghosts, relevant, k=3) == pytest.approx(metric(RECOMMENDED, RELEVANT, k=3))


def test_users_only_in_the_test_set_count_for_ndcg_but_not_the_others():
    # MSR's precision/recall/map divide by |test ∩ predicted| users; its ndcg outer-merges the whole
    # test frame, so a test user without a list scores 0 there.
    recommended = {"u1": ["a"], "u2": []}  # an empty list is no prediction
    relevant = {"u1": {"a"}, "u2": {"b"}}
    # precision, recall, hit rate, map: u1 alone = 1.0
    for metric in (precision_at_k, recall_at_k, hit_rate_at_k, map, map_at_k):
        assert metric(recommended, relevant, k=1) == 1.0
    # ndcg: (u1 = 1, u2 = 0) / 2 users = 0.5
    assert ndcg_at_k(recommended, relevant, k=1) == pytest.approx(0.5)


def test_empty_or_disjoint_inputs_score_zero():
    for metric in RANKING:
        assert metric({}, {}, k=10) == 0.0
        assert metric({"u": ["a"]}, {}, k=10) == 0.0
        assert metric({}, {"u": {"a"}}, k=10) == 0.0
        assert metric({"u": ["a"]}, {"v": {"a"}}, k=10) == 0.0


def test_k_below_one_is_rejected():
    with pytest.raises(ValueError):
        precision_at_k(RECOMMENDED, RELEVANT, k=0)


def test_reproduces_msr_ranking_test_case():
    # recommenders-team/recommenders tests/unit/recommenders/evaluation/conftest.py (rating_true,
    # rating_pred) and test_python_evaluation.py: precision@10 0.26666, recall@10 0.37777,
    # ndcg@10 0.38172, map 0.23613, map_at_k 0.23613. The predictions, ranked by score:
    recommended = {1: [3, 10, 12], 2: [10, 3, 5, 11, 13], 3: [4, 10, 7, 13, 1, 3, 5, 2, 11, 14]}
    relevant = {1: {3, 1, 2}, 2: {1, 4, 5, 6, 7}, 3: {2, 5, 6, 8, 9, 10, 11, 12, 13, 14}}
    # hits: user 1 at rank 1 (of 3 relevant), user 2 at rank 3 (of 5), user 3 at ranks 2,4,7,8,9,10 (of 10)
    # precision: (1 + 1 + 6) / 10 / 3 = 0.26667
    assert precision_at_k(recommended, relevant, k=10) == pytest.approx(0.26666, abs=1e-4)
    # recall: (1/3 + 1/5 + 6/10) / 3 = 0.37778
    assert recall_at_k(recommended, relevant, k=10) == pytest.approx(0.37777, abs=1e-4)
    # ndcg, 1/ln(1+r) for r = 1..10: 1.44270 0.91024 0.72135 0.62133 0.55811 0.51390 0.48090 0.45512 0.43429 0.41703
    # user 1: 1.44270 / (1.44270 + 0.91024 + 0.72135) = 0.46928
    # user 2: 0.72135 / (sum of the first 5 = 4.25373) = 0.16958
    # user 3: (0.91024 + 0.62133 + 0.48090 + 0.45512 + 0.43429 + 0.41703 = 3.31891) / (sum of all 10 = 6.55497) = 0.50632
    # mean = (0.46928 + 0.16958 + 0.50632) / 3 = 0.38173
    assert ndcg_at_k(recommended, relevant, k=10) == pytest.approx(0.38172, abs=1e-4)
    # map: user 1: 1/1 / 3 = 0.33333; user 2: 1/3 / 5 = 0.06667;
    # user 3: (1/2 + 2/4 + 3/7 + 4/8 + 5/9 + 6/10) / 10 = 3.08413 / 10 = 0.30841; mean = 0.23614
    assert map(recommended, relevant, k=10) == pytest.approx(0.23613, abs=1e-4)
    assert map_at_k(recommended, relevant, k=10) == pytest.approx(0.23613, abs=1e-4)
    # perfect lists (the true items, best first): MSR asserts ndcg 1, recall 1, map 1, precision 0.6
    # (precision: (3 + 5 + 10) / 10 / 3 = 0.6)
    perfect = {u: sorted(items) for u, items in relevant.items()}
    assert precision_at_k(perfect, relevant, k=10) == pytest.approx(0.6)
    assert ndcg_at_k(perfect, relevant, k=10) == pytest.approx(1.0)
    assert recall_at_k(perfect, relevant, k=10) == pytest.approx(1.0)
    assert map(perfect, relevant, k=10) == pytest.approx(1.0)


# ---- classification ------------------------------------------------------------------------------


def _pairwise_auc(labels, scores) -> float:
    """Brute force: over every (positive, negative) pair, 1 if the positive scores higher, 1/2 on a tie."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_of_a_known_example():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 0.35>0.1, 0.8>0.1, 0.8>0.4 = 3 of 4 = 0.75
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auc_counts_a_tie_as_half_a_pair():
    # positives 0.5, 0.9; negatives 0.5, 0.1: 0.5=0.5 -> 1/2, the other three pairs won: 3.5 / 4
    assert auc([0, 1, 1, 0], [0.5, 0.5, 0.9, 0.1]) == pytest.approx(0.875)


def test_auc_matches_the_pairwise_count_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, size=40)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 6, size=40) / 5  # six levels: plenty of ties
        assert auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))


def test_auc_needs_both_classes():
    with pytest.raises(ValueError):
        auc([1, 1], [0.2, 0.3])


def test_logloss_by_hand():
    # -(ln 0.8 + ln(1 - 0.4)) / 2 = (0.22314 + 0.51083) / 2 = 0.36698
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(0.366985, abs=1e-6)


def test_logloss_clips_certain_mistakes_to_eps():
    # p = 0 for a positive is clipped to 1e-15: -ln(1e-15) = 15 ln 10 = 34.53878
    assert logloss([1], [0.0]) == pytest.approx(15 * math.log(10))
    assert logloss([0, 1], [0.0, 1.0]) == pytest.approx(0.0, abs=1e-12)


def test_reproduces_msr_auc_and_logloss_test_case():
    # recommenders-team/recommenders tests/unit/recommenders/evaluation/test_python_evaluation.py
    # (test_python_auc, test_python_logloss): ratings >= 3 are positive, predictions min-max scaled over
    # all 18 rows (min 5, max 14), then the 8 (user, item) pairs in both frames:
    # true ratings 3 3 5 5 3 3 2 1 -> labels 1 1 1 1 1 1 0 0; predictions 14 12 7 8 13 6 11 5 -> (p - 5) / 9
    labels = [1, 1, 1, 1, 1, 1, 0, 0]
    probabilities = [(p - 5) / 9 for p in (14, 12, 7, 8, 13, 6, 11, 5)]
    # auc: every positive beats the 0; 1, 7/9, 8/9 beat 6/9: (6 + 3) / 12 = 0.75
    assert auc(labels, probabilities) == pytest.approx(0.75, abs=1e-4)
    # logloss: -[ln(1-1e-15) + ln 7/9 + ln 2/9 + ln 3/9 + ln 8/9 + ln 1/9 + ln(1 - 6/9) + ln 1] / 8
    #        = (0 + 0.25131 + 1.50408 + 1.09861 + 0.11778 + 2.19722 + 1.09861 + 0) / 8 = 0.78345
    assert logloss(labels, probabilities) == pytest.approx(0.7835, abs=1e-4)
