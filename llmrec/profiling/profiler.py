"""The profiler: items in, profiles out, in batches sized for the generator."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from llmrec.config import ProfilingConfig
from llmrec.profiling.generate import Generator, make_generator
from llmrec.profiling.profile import SYSTEM, ItemProfile, ItemSource, answer_prefix, conversation, output_schema, read_profile

log = logging.getLogger(__name__)


class Profiler:
    """Writes each item's profile with one model; an answer it cannot read gives None for that item."""

    def __init__(self, config: ProfilingConfig, generator: Generator | None = None) -> None:
        self.config = config
        self.generator = generator or make_generator(config)
        if self.generator is None:
            raise ValueError("profiling.backend is 'none': no model to profile items with")

    def profile(self, sources: Sequence[ItemSource]) -> list[ItemProfile | None]:
        profiles: list[ItemProfile | None] = []
        for start in range(0, len(sources), self.config.batch_size):
            batch = sources[start : start + self.config.batch_size]
            users = [conversation(s, self.config.text_chars)[-1]["content"] for s in batch]
            answers = self.generator.generate(SYSTEM, users, [answer_prefix(s) for s in batch], [output_schema(s) for s in batch])
            for source, answer in zip(batch, answers, strict=True):
                profile = read_profile(answer, source, self.config.model)
                if profile is None:
                    log.warning("profile of %s unreadable: %.200r", source.item_id, answer)
                profiles.append(profile)
        return profiles
