"""Versioned index builds, switched atomically: what serving and the Ray index job publish.

Layout under an index root (the directory the recommender reads, LLMREC_HOME/indexes/CATALOG/ENCODER):

    versions/<version>/<scene>/{index.faiss, ids.json, meta.json}   one complete build each
    versions/<version>/version.json                                 what went into it
    current -> versions/<version>                                   one symlink, swapped with rename(2)
    <scene> -> current/<scene>                                      what readers open

A build writes a new version directory (each file fsynced), renames it into place and only then
swaps `current`, so a reader (or a serving replica loading at that moment) sees the old build or
the new one, never a mix or a half-written file; files of a version are never rewritten. Older
versions beyond `keep` are pruned.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CURRENT = "current"
VERSIONS = "versions"


def new_version() -> str:
    """UTC time to the microsecond: versions sort in the order they were built."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def current_version(root: Path) -> str | None:
    link = Path(root) / CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def _swap_link(link: Path, target: str) -> None:
    """Point `link` at `target` atomically (a new symlink renamed over the old one)."""
    staging = link.with_name(f".{link.name}.tmp-{os.getpid()}-{time.time_ns()}")
    os.symlink(target, staging)
    os.replace(staging, link)


def publish_version(root: Path, scene_indexes: Mapping[str, Any], metadata: Mapping[str, Mapping[str, Any]], info: Mapping[str, Any], keep: int = 2) -> Path:
    """Save each scene's VectorIndex into a new version, switch `current` to it, prune old ones.
    `metadata[scene]` goes into that scene's meta.json (the recommender checks its key there)."""
    root = Path(root)
    version = new_version()
    versions = root / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    staging = versions / f".{version}.tmp"
    for scene, index in scene_indexes.items():
        index.save(staging / scene, dict(metadata.get(scene, {})))
    (staging / "version.json").write_text(json.dumps({"version": version, "scenes": {s: len(i) for s, i in scene_indexes.items()}, **info}, indent=2, default=str))
    fsync_tree(staging)
    final = versions / version
    staging.rename(final)
    fsync_dir(versions)
    for scene in scene_indexes:  # first build over a plain directory: move the old one aside once
        entry = root / scene
        if entry.exists() and not entry.is_symlink():
            entry.rename(versions / f"00000000-legacy-{version}-{scene}")  # sorts first: pruned first
    _swap_link(root / CURRENT, f"{VERSIONS}/{version}")
    for scene in scene_indexes:
        if not (root / scene).is_symlink():
            _swap_link(root / scene, f"{CURRENT}/{scene}")
    prune_versions(root, keep)
    return final


def prune_versions(root: Path, keep: int = 2) -> list[str]:
    """Remove all but the newest `keep` versions (the current one always stays)."""
    current = current_version(root)
    builds = sorted(p for p in (Path(root) / VERSIONS).iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for path in builds[: max(0, len(builds) - keep)]:
        if path.name != current:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file under `root`, and the folders holding them, to disk."""
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for folder in [root, *(p for p in Path(root).rglob("*") if p.is_dir())]:
        fsync_dir(folder)
