"""`llmrec profile --ray`: the Ray Data job on the session's local Ray writes the same book as the
in-process job, and skips what the book already has."""

from __future__ import annotations

from conftest import require_packaged_llm

from llmrec.config import ProfilingConfig
from llmrec.profiling.book import ProfileBook
from llmrec.profiling.profile import ItemSource


def test_the_ray_data_job_profiles_what_the_book_lacks_and_resumes_from_it(local_ray, tmp_path):
    from train.profile_job import profile_sources

    require_packaged_llm()
    sources = [
        ItemSource("g1", "grocery", "I love it", "I love this Lipton green tea with honey, I drink it every afternoon.", {"title_source": "review"}),
        ItemSource("m1", "movie", "Heat (1995)", "", {"genres": ["Action", "Crime", "Thriller"], "year": 1995}),
    ]
    book = ProfileBook(tmp_path / "book.jsonl")
    config = ProfilingConfig(batch_size=2, threads=1)
    first = profile_sources(sources[:1], book, config, actors=1)
    assert (first["written"], first["already_profiled"]) == (1, 0)
    both = profile_sources(sources, ProfileBook(book.path), config, actors=1)
    assert (both["written"], both["already_profiled"]) == (1, 1)
    profiles = ProfileBook(book.path).profiles
    assert "tea" in profiles[sources[0].key].title.lower()
    assert profiles[sources[1].key].title == "Heat (1995)" and profiles[sources[1].key].keywords
