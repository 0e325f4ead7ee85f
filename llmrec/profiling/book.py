"""The book of written profiles: one JSON line per profile, keyed by the content it was written for.

Appended a batch at a time and synced to disk, so a job that stops (or is killed) resumes where it
was: items whose content key is already in the book are not profiled again. A profile of an item
whose content changed since is simply not found. Books live under
LLMREC_HOME/profiles/<catalog>/<model>-v<PROFILE_VERSION>.jsonl; `export` writes the gzipped copy
that a catalog can ship (llmrec/configs/profiles/<catalog>.jsonl.gz, joined by `llmrec data prepare`).
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

from llmrec.config import llmrec_home
from llmrec.profiling.profile import PROFILE_VERSION, ItemProfile


def book_path(catalog: str, model: str) -> Path:
    return llmrec_home() / "profiles" / catalog / f"{Path(model).name}-v{PROFILE_VERSION}.jsonl"


def read_profiles(path: Path) -> dict[str, ItemProfile]:
    """Content key -> profile, from a book (plain or gzipped JSON lines). What a crash can leave at
    the end (a torn line, a cut multi-byte character, a truncated gzip stream) is skipped."""
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:  # a stream cut short gives what it holds: zlib does not ask for the missing trailer
            raw = zlib.decompressobj(wbits=31).decompress(raw)
        except zlib.error:
            return {}
    profiles = {}
    for line in raw.splitlines():
        try:
            profile = ItemProfile.from_dict(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        profiles[profile.key] = profile
    return profiles


class ProfileBook:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.profiles = read_profiles(path)

    def __contains__(self, key: str) -> bool:
        return key in self.profiles

    def __len__(self) -> int:
        return len(self.profiles)

    def append(self, profiles: Iterable[ItemProfile]) -> int:
        """Write the profiles durably (flushed and synced) before they count as done."""
        fresh = [p for p in profiles if p.key not in self.profiles]
        if not fresh:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as out:
            if out.tell() and not self._ends_with_newline():
                out.write("\n")  # after a torn line, start a fresh one
            for profile in fresh:
                out.write(json.dumps(profile.as_dict(), ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.profiles.update((p.key, p) for p in fresh)
        return len(fresh)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as raw:
            raw.seek(-1, os.SEEK_END)
            return raw.read(1) == b"\n"

    def export(self, path: Path, keys: Iterable[str] | None = None) -> int:
        """A gzipped copy of the profiles (of `keys` only, if given), in key order: the same book gives
        the same bytes. Written to a temporary file and renamed over `path`, so it is whole or absent."""
        chosen = sorted(self.profiles if keys is None else {k for k in keys if k in self.profiles})
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as raw:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out:
                for key in chosen:
                    out.write((json.dumps(self.profiles[key].as_dict(), ensure_ascii=False, sort_keys=True) + "\n").encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
        return len(chosen)
