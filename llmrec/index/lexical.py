"""Per-scene BM25 over the items' rendered text (bm25s): the lexical half of hybrid retrieval.

Words the encoder blurs (names, years, rare genres, product codes) match here exactly. bm25s has
no incremental update, so an index is built whole from a scene's texts and replaced when they
change (the Retriever builds the new one outside its lock, so searches go on meanwhile, and an
item written over HTTP is in both indexes when the write returns).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import bm25s
import numpy as np

MAX_QUERY_CHARS = 8000  # a user's liked items as a query: bounded work per request


def _tokens(texts: Sequence[str]) -> list[list[str]]:
    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


class LexicalIndex:
    """BM25 scores of one scene's items for a text."""

    def __init__(self, texts: Mapping[str, str], version: int = 0) -> None:
        self.version = version  # which state of the scene's texts it was built from
        self.item_ids = list(texts)
        self.position = {item_id: n for n, item_id in enumerate(self.item_ids)}
        self.bm25 = bm25s.BM25()
        if self.item_ids:
            self.bm25.index(bm25s.tokenize([texts[i] for i in self.item_ids], stopwords="en", show_progress=False), show_progress=False)

    def __len__(self) -> int:
        return len(self.item_ids)

    def query(self, text: str) -> LexicalMatch:
        """The text's BM25 score of every item, computed once per request."""
        if not self.item_ids or not text:
            return LexicalMatch(self, np.zeros(len(self.item_ids), np.float32))
        tokens = _tokens([text[:MAX_QUERY_CHARS]])[0]
        every = np.asarray(self.bm25.get_scores(tokens), dtype=np.float32) if tokens else np.zeros(len(self.item_ids), np.float32)
        return LexicalMatch(self, every)


class LexicalMatch:
    """One text's BM25 scores over a scene: its best matches, and the score of any item."""

    def __init__(self, index: LexicalIndex, every: np.ndarray) -> None:
        self.index, self.every = index, every

    def scores(self, item_ids: Sequence[str]) -> np.ndarray:
        """BM25 of each item for the text (0 for items not in the index)."""
        position = self.index.position
        return np.array([self.every[position[i]] if i in position else 0.0 for i in item_ids], dtype=np.float32)

    def top(self, n: int, allow: Callable[[str], bool], max_examined: int) -> list[str]:
        """The `n` best-matching items that `allow` accepts, among the best `max_examined` (or n) with a positive score."""
        every, limit, found = self.every, max(n, max_examined), []
        matched = np.flatnonzero(every > 0)  # a few items per query word: the best `limit` are picked without sorting the scene
        if len(matched) > limit:
            matched = matched[np.argpartition(-every[matched], limit - 1)[:limit]]
        for position in matched[np.lexsort((matched, -every[matched]))]:  # best first, ties in index order
            if len(found) >= n:
                break
            item_id = self.index.item_ids[position]
            if allow(item_id):
                found.append(item_id)
        return found
