"""Named data sets that `llmrec data prepare NAME` turns into catalogs under LLMREC_HOME/data.

Packaged ones need nothing but the package registry; the public formats read files the user has
(`--source DIR`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmrec.data.catalog import Catalog, catalog_dir
from llmrec.errors import RequestError

PACKAGED: dict[str, Callable[[], Catalog]] = {}
FROM_FILES: dict[str, Callable[[Path], Catalog]] = {}


def _register() -> None:
    from llmrec.data.datasets import amazon, demo, goodreads, mind, movielens

    PACKAGED.update({"movielens-1m": movielens.load_ml1m, "movielens-100k": movielens.load_ml100k, "demo": demo.load_demo})
    FROM_FILES.update({"amazon-reviews-2023": amazon.load, "mind": mind.load, "goodreads": goodreads.load})


def prepare(name: str, source: Path | None = None, output: Path | None = None, profiles: bool = True) -> tuple[Catalog, Path]:
    """Build the named catalog, join the LLM profiles shipped for it (`profiles`), and save it
    (default: LLMREC_HOME/data/NAME). Returns it and where it went."""
    _register()
    if name in PACKAGED:
        catalog = PACKAGED[name]()
    elif name in FROM_FILES:
        if source is None:
            raise RequestError(f"data set {name!r} reads your copy of its files: pass --source DIR")
        catalog = FROM_FILES[name](Path(source))
    else:
        raise RequestError(f"unknown data set {name!r}; known: {sorted(PACKAGED) + sorted(FROM_FILES)}")
    if profiles:
        from llmrec.profiling.book import read_profiles
        from llmrec.profiling.catalog import SHIPPED_PROFILES, with_profiles

        catalog, _ = with_profiles(catalog, read_profiles(SHIPPED_PROFILES / f"{name}.jsonl.gz"))
    if output is not None:  # state and indexes are keyed by catalog name: one name per folder
        catalog.name = Path(output).name
    return catalog, catalog.save(output or catalog_dir(name))
