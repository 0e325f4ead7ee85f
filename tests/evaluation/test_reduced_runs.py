"""Reduced versions of the protocols on the real MovieLens data: the numbers must be sane (EASE beats
popularity beats random; content beats random on cold items; the scene-aware reranker beats the
item prior), and `llmrec eval` writes its table, JSON, plot and predictions. The full runs are
commands (docs/evaluation.md), not tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from llmrec.serving.blend import SIGNALS
from llmrec_cli.main import main


@pytest.fixture(scope="module")
def movielens(llmrec_home: Path) -> None:
    from llmrec.data.catalog import catalog_dir
    from llmrec.data.datasets import prepare

    for name in ("movielens-100k", "movielens-1m"):
        if not (catalog_dir(name) / "manifest.json").is_file():
            prepare(name)


def test_ml100k_msr_reduced_ranks_ease_over_popularity_over_random(movielens):
    from llmrec.evaluation import run_protocol

    run = run_protocol("ml100k-msr", ["random", "popularity", "ease"], reduced=300)
    ndcg = {model: metrics["ndcg@10"] for model, metrics in run.results.items()}
    assert ndcg["random"] < 0.05 < ndcg["popularity"] < ndcg["ease"]
    assert 0.40 < ndcg["ease"] < 0.60  # the full protocol gives 0.4855 (docs/evaluation.md)
    assert set(run.results["ease"]) == {"ndcg@10", "precision@10", "recall@10", "map"}
    assert run.details["ease"]["params"]["l2"] in {50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0}


def test_ml100k_msr_reduced_served_recommender_beats_popularity_and_random(movielens):
    """`llmrec` is the served recommender (a Recommender on the training data, its blend fitted on
    validation), ranking through RecommendRequests."""
    from llmrec.evaluation import run_protocol

    run = run_protocol("ml100k-msr", ["random", "popularity", "llmrec"], reduced=200)
    ndcg = {model: metrics["ndcg@10"] for model, metrics in run.results.items()}
    assert ndcg["random"] < ndcg["popularity"] < ndcg["llmrec"]
    assert ndcg["llmrec"] > 0.40  # the full protocol: docs/evaluation.md
    chosen = run.details["llmrec"]["blend_weights"]  # what validation fitted, reported
    assert chosen and all(set(weights) <= {*SIGNALS, "mmr_lambda"} and weights for weights in chosen.values())
    from llmrec.evaluation.protocols import ml100k_msr

    train = ml100k_msr(max_users=200).train.frame
    seen = set(zip(train["user_id"].astype(str), train["item_id"].astype(str)))
    served = [(str(user), str(item)) for label, user, item, _, _ in run.predictions if label == "llmrec"]
    assert len(served) == 10 * len({u for u, _ in served}) and not seen & set(served), "ten items per user, no training item recommended"


def test_ml1m_cold_items_reduced_content_beats_random_among_cold_items(movielens):
    from llmrec.evaluation import run_protocol

    run = run_protocol("ml1m-cold-items", ["random", "tfidf"], reduced=300)
    assert run.results["random"]["ndcg@20"] < run.results["tfidf"]["ndcg@20"]
    # every recommendation is a cold test item (warm items are masked)
    from llmrec.evaluation import ml1m_cold_items_split

    cold_test = set(ml1m_cold_items_split().cold_test_items)
    assert {item for _, _, item, _, _ in run.predictions} <= cold_test


def test_cold_item_split_keeps_cold_items_out_of_training(movielens):
    from llmrec.evaluation import ml1m_cold_items_split

    split = ml1m_cold_items_split()
    cold = set(split.cold_valid_items) | set(split.cold_test_items)
    assert not cold & set(split.train["item_id"])
    assert not set(split.cold_valid_items) & set(split.cold_test_items)
    assert len(cold) == round(0.2 * 3706)  # 20% of the 3,706 rated movies


def test_cli_eval_scenes_reduced_served_in_context_beats_popularity_and_writes_table_json_plot_and_predictions(movielens, tmp_path, capsys):
    """`llmrec` is the served recommender, each test user one request in their age group's context."""
    predictions = tmp_path / "predictions.csv"
    code = main(
        ["eval", "ml1m-scenes", "--models", "random,popularity,shared,llmrec", "--reduced", "400", "--json",
         "--output", str(tmp_path), "--predictions", str(predictions)]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "ml1m-scenes.json").read_text())
    assert printed["protocol"] == saved["protocol"] == "ml1m-scenes"
    auc = {model: metrics["auc"] for model, metrics in saved["results"].items()}
    assert auc["random"] < 0.55 < auc["popularity"] < auc["shared"]
    assert auc["popularity"] + 0.03 < auc["llmrec"]
    served = saved["details"]["llmrec"]["params"]
    assert served["context model"]["validation_auc"] > 0.7  # and every test row was answered (else the run raises)
    for scene in ("under-25", "25-34", "35+"):
        assert 0 < saved["results"]["llmrec"][f"ndcg@10 ({scene})"] <= 1
    assert (tmp_path / "ml1m-scenes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with predictions.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["model", "user_id", "item_id", "rank", "score"]
    assert {r["model"] for r in rows} == {"random", "popularity", "shared", "llmrec"}
    assert rows[0]["rank"] == "1" and "(" in rows[0]["item_id"]  # original 'Title (Year)' ids


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "no-such-protocol"], "unknown protocol"),
        (["eval", "ml100k-msr", "--models", "ease,nope"], "unknown model 'nope'"),
        (["eval", "ml100k-msr", "--models", "finetuned"], "needs --encoder DIR"),
        (["eval", "ml100k-msr", "--models", "finetuned", "--encoder", "/no/such/dir"], "is not a directory"),
    ],
)
def test_cli_eval_rejects_bad_input_with_exit_2(movielens, argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_ml1m_cold_items_reduced_cross_encoder_weight_is_chosen_on_validation_and_rescores_only_each_users_head(movielens, exported_reranker):
    from llmrec.evaluation import ml1m_cold_items_split
    from llmrec.evaluation.baselines import TfIdf
    from llmrec.evaluation.cross import WEIGHTS, CrossReranked
    from llmrec.evaluation.protocols import ml1m_cold_items
    from llmrec.evaluation.tasks import metric_specs, objective_value, top_k
    from llmrec.serving.cross_encoder import CrossReranker

    setup = ml1m_cold_items(max_users=25)
    objective = metric_specs(setup.metrics)[0]
    first = TfIdf()
    first_value = first.tune(setup.tune_train, setup.valid, objective)
    model = CrossReranked("tfidf-rerank", first, CrossReranker(str(exported_reranker)), head=10)
    value = model.tune(setup.tune_train, setup.valid, objective)
    assert model.params["weight"] in WEIGHTS and value >= first_value - 1e-9
    assert model.params["validation_by_weight"]["0.0"] == pytest.approx(first_value, abs=1e-4)
    scored = model.pairs_scored
    assert 0 < scored <= len(setup.valid[0].user_ids) * 10  # only each user's head, once across all weights
    test = setup.test[0]
    assert test.texts and all(t.startswith("Liked: ") for t in test.texts if "Liked" in t)
    ranked = top_k(model.score(test), test, setup.k)
    assert {str(setup.items.ids[i]) for row in ranked for i in row} <= set(ml1m_cold_items_split().cold_test_items)
    assert 0.0 <= objective_value(model.score(test), test, objective) <= 1.0


def test_cli_eval_hybrid_rerank_needs_a_reranker_directory(capsys):
    assert main(["eval", "ml1m-cold-items", "--models", "hybrid-rerank"]) != 0
    assert "needs --reranker DIR" in capsys.readouterr().err
