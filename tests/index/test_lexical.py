"""BM25, the lexical half of hybrid retrieval: exact words match, and writes reach it at once."""

from __future__ import annotations

import numpy as np

from llmrec.index.lexical import LexicalIndex
from llmrec.serving.schemas import ItemIn


def test_bm25_ranks_the_items_that_share_the_rare_words_first():
    index = LexicalIndex(
        {
            "a": "Movie: Heat. Genres: Action, Crime, Thriller.",
            "b": "Movie: Toy Story. Genres: Animation, Comedy.",
            "c": "Movie: Casino. Genres: Crime, Drama.",
        }
    )
    match = index.query("a crime thriller")
    assert match.top(3, lambda i: True, 100) == ["a", "c"]  # "b" shares no word: not returned
    assert match.top(3, lambda i: i != "a", 100) == ["c"]
    scores = match.scores(["a", "b", "c", "unknown"])
    assert scores[0] > scores[2] > 0 and scores[1] == 0 and scores[3] == 0
    assert index.query("").top(3, lambda i: True, 100) == [] and not np.any(index.query("").scores(["a"]))


def test_an_added_item_is_found_by_its_words_at_once_and_a_removed_one_never(writable_demo):
    item = ItemIn(item_id="lexical-test-item", scene="grocery", title="Qwertzuiop Hazelnut Spread", text="A spread called qwertzuiop.")
    writable_demo.add_items([item])
    retriever = writable_demo.ranker.retriever
    found = retriever.search("grocery", None, 5, text="qwertzuiop")
    assert found.item_ids[0] == "lexical-test-item" and found.lexical[0] > 0
    writable_demo.remove_items(["lexical-test-item"])
    assert "lexical-test-item" not in retriever.search("grocery", None, 5, text="qwertzuiop").item_ids
