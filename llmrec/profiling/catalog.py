"""Profiles and catalogs: which items a job profiles, the in-process job, and a catalog with its
profiles joined (what `llmrec data prepare` does with a catalog's shipped profiles)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from llmrec.data.catalog import Catalog, attributes_json
from llmrec.data.text import PROFILE_ATTRIBUTE
from llmrec.profiling.book import ProfileBook
from llmrec.profiling.profile import ItemProfile, ItemSource, apply_profile
from llmrec.profiling.profiler import Profiler

SHIPPED_PROFILES = Path(__file__).resolve().parent.parent / "configs" / "profiles"  # <catalog>.jsonl.gz, applied by `llmrec data prepare`


def catalog_sources(catalog: Catalog, scenes: Iterable[str] = (), limit: int | None = None, item_ids: Iterable[str] | None = None) -> list[ItemSource]:
    """The catalog's items not profiled yet (of `scenes` and among `item_ids`, if given), in catalog order."""
    wanted, chosen = set(scenes), None if item_ids is None else set(item_ids)
    sources = []
    for row in catalog.items.itertuples(index=False):
        attributes = json.loads(row.attributes)
        if (wanted and row.scene not in wanted) or (chosen is not None and row.item_id not in chosen) or PROFILE_ATTRIBUTE in attributes:
            continue
        sources.append(ItemSource(row.item_id, row.scene, row.title, row.text, attributes))
    return sources[:limit] if limit is not None else sources


Batches = Callable[[list[ItemSource]], Iterable[list[tuple[ItemSource, ItemProfile | None]]]]


def in_batches(profile: Callable[[Sequence[ItemSource]], list[ItemProfile | None]], batch_size: int) -> Batches:
    """The items to profile, `batch_size` at a time through `profile` (in this process)."""

    def batches(todo: list[ItemSource]) -> Iterable[list[tuple[ItemSource, ItemProfile | None]]]:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            yield list(zip(chunk, profile(chunk), strict=True))

    return batches


def profile_into(sources: Sequence[ItemSource], book: ProfileBook, batches: Batches) -> dict[str, Any]:
    """Profile the sources whose content the book lacks; each batch `batches` yields is written
    durably before the next is read (a stopped job resumes from the book), with a progress bar."""
    todo = [s for s in sources if s.key not in book]
    started, written, unreadable = time.perf_counter(), 0, 0
    with tqdm(total=len(todo), desc="profile", unit="item") as progress:
        for batch in batches(todo):
            written += book.append(p for _, p in batch if p is not None)
            unreadable += sum(p is None for _, p in batch)
            progress.update(len(batch))
    seconds = time.perf_counter() - started
    return {
        "items": len(sources), "already_profiled": len(sources) - len(todo), "written": written, "unreadable": unreadable,
        "seconds": round(seconds, 1), "items_per_s": round(len(todo) / seconds, 3) if todo and seconds else None, "book": str(book.path),
    }


def profile_catalog(profiler: Profiler, book: ProfileBook, sources: Sequence[ItemSource]) -> dict[str, Any]:
    """The in-process job (`llmrec profile`); `llmrec profile --ray` runs the same over a Ray Data actor pool."""
    return profile_into(sources, book, in_batches(profiler.profile, profiler.config.batch_size))


def with_profiles(catalog: Catalog, profiles: Mapping[str, ItemProfile]) -> tuple[Catalog, int]:
    """The catalog with each item's profile joined where the book has one for its current content; and how many."""
    if not profiles:
        return catalog, 0
    items = catalog.items.copy()
    applied = 0
    titles, attributes = items["title"].tolist(), items["attributes"].tolist()
    for n, row in enumerate(items.itertuples(index=False)):
        read = json.loads(row.attributes)
        if PROFILE_ATTRIBUTE in read:
            continue
        profile = profiles.get(ItemSource(row.item_id, row.scene, row.title, row.text, read).key)
        if profile is not None:
            title, joined = apply_profile(row.scene, row.title, read, profile)
            titles[n], attributes[n] = title, attributes_json(joined)
            applied += 1
    items["title"], items["attributes"] = titles, attributes
    return Catalog(catalog.name, catalog.scenes, items, catalog.users, catalog.interactions, catalog.kg), applied
