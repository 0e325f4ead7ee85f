"""Scene routing: explicit > intent > nearest description > history majority > default."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.errors import NotFoundError, RequestError
from llmrec.serving.router import SceneRouter

SCENES = {"movie": "Films to watch", "music": "Songs to listen to", "books": "Books to read"}
VECTORS = np.eye(3, dtype=np.float32)  # one orthogonal unit vector per scene, in SCENES order


def router(default_scene: str | None = None) -> SceneRouter:
    return SceneRouter(SCENES, VECTORS, default_scene=default_scene)


def test_explicit_scene_wins_over_every_other_signal():
    decision = router("books").route(
        explicit="music", intent_scene="movie", query_vector=VECTORS[0], history_scenes=["books", "books"]
    )
    assert (decision.scene, decision.source) == ("music", "explicit")


def test_unknown_explicit_scene_raises_not_found_listing_known_scenes():
    with pytest.raises(NotFoundError) as caught:
        router().route(explicit="podcasts", query_vector=VECTORS[0])
    message = str(caught.value)
    assert "'podcasts'" in message
    assert all(scene in message for scene in SCENES)
    assert isinstance(caught.value, RequestError)


def test_intent_scene_is_used_when_known():
    decision = router().route(intent_scene="books", query_vector=VECTORS[0])
    assert (decision.scene, decision.source) == ("books", "intent")


def test_a_request_the_language_model_found_about_no_scene_is_answered_as_such():
    decision = router("books").route(query_vector=VECTORS[0], history_scenes=["movie"], none_fits=True)
    assert (decision.scene, decision.source) == (None, "none_fits")
    assert router().route(explicit="music", none_fits=True).scene == "music"  # an explicit scene still wins


def test_unknown_intent_scene_is_ignored():
    decision = router().route(intent_scene="podcasts", query_vector=VECTORS[1])
    assert (decision.scene, decision.source) == ("music", "embedding")


def test_embedding_route_picks_the_nearest_scene_description():
    query = np.array([0.1, 0.3, 0.9], dtype=np.float32)
    decision = router().route(query_vector=query, history_scenes=["movie"])
    assert (decision.scene, decision.source) == ("books", "embedding")
    assert decision.scores == pytest.approx({"movie": 0.1, "music": 0.3, "books": 0.9})


def test_history_majority_decides_without_a_query():
    decision = router("movie").route(history_scenes=["music", "books", "music"])
    assert (decision.scene, decision.source) == ("music", "history")


def test_default_scene_is_the_last_resort():
    decision = router("books").route()
    assert (decision.scene, decision.source) == ("books", "default")


def test_nothing_to_go_on_raises_request_error_naming_the_scenes():
    with pytest.raises(RequestError) as caught:
        router().route()
    assert "movie" in str(caught.value) and not isinstance(caught.value, NotFoundError)


def test_unknown_default_scene_is_rejected_at_construction():
    with pytest.raises(ValueError, match="podcasts"):
        router("podcasts")


def test_check_returns_known_scene():
    assert router().check("music") == "music"
