"""Exported model directories load in the serving classes and compute what the trained modules
computed: the encoder in llmrec's Encoder, the reranker in CrossReranker."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import nudge_weights

from llmrec.config import EncoderConfig
from llmrec.data.assets import resolve_model
from llmrec.serving.cross_encoder import CrossReranker, blend
from llmrec.serving.encoder import Encoder
from llmrec.training.export import export_cross_encoder, export_encoder, read_card
from llmrec.training.model import BiEncoder, CrossScorer, load_tokenizer, tokenize

BASE = resolve_model("all-MiniLM-L6-v2")
TEXTS = ["Movie: Toy Story. Year: 1995. Genres: Animation, Children's, Comedy.", "Liked: Fargo; Heat. About me: age 25-34."]


def test_exported_encoder_embeds_in_the_serving_encoder_exactly_as_the_trained_tower(tmp_path):
    tower = BiEncoder(BASE)
    nudge_weights(tower)
    tower.eval()
    with torch.no_grad():
        trained = tower.embed(tokenize(load_tokenizer(BASE), TEXTS, 128, "cpu")).numpy()
    export_encoder(tower.state_dict(), BASE, tmp_path / "encoder", {"data": {"catalog": "test"}})
    served = Encoder(EncoderConfig(model=str(tmp_path / "encoder"), device="cpu")).encode(TEXTS)
    assert np.allclose(served, trained, atol=1e-5)
    assert read_card(tmp_path / "encoder")["kind"] == "encoder" and (tmp_path / "encoder" / "README.md").is_file()


def test_exported_reranker_scores_in_cross_reranker_as_the_trained_scorer_and_blends(tmp_path):
    scorer = CrossScorer(BASE)
    nudge_weights(scorer)
    scorer.eval()
    query, items = "a funny animated film for children", [TEXTS[0], "Movie: Heat. Year: 1995. Genres: Action, Crime, Thriller."]
    with torch.no_grad():
        logits = scorer(tokenize(load_tokenizer(BASE), [query, query], 128, "cpu", pair=items)).numpy()
    export_cross_encoder(scorer.state_dict(), BASE, tmp_path / "reranker", {})
    scores = CrossReranker(str(tmp_path / "reranker")).scores(query, items)
    assert np.allclose(scores, 1 / (1 + np.exp(-logits)), atol=1e-5)
    first = np.array([0.9, 0.1])
    assert np.argsort(-blend(first, scores, 0.0)).tolist() == [0, 1]
    assert np.argsort(-blend(first, scores, 1.0)).tolist() == np.argsort(-scores).tolist()
    with pytest.raises(ValueError, match="2 first-stage scores but 1"):
        blend(first, scores[:1])
