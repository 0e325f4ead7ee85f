"""The catalog format: scenes, items, users, interactions (and optional knowledge-graph facts).

Stored as one parquet file per table plus a manifest. Item ids are unique across scenes.
Attributes are free-form per scene (genres, year, artist, price ...) and kept as JSON text so
one schema serves every scene.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from llmrec.config import llmrec_home
from llmrec.errors import AssetError

COLUMNS: dict[str, list[str]] = {
    "scenes": ["scene", "name", "description"],
    "items": ["item_id", "scene", "title", "text", "attributes", "created_at"],
    "users": ["user_id", "attributes"],
    "interactions": ["user_id", "item_id", "rating", "timestamp"],
    "kg": ["item_id", "relation", "object"],
}
FORMAT_VERSION = 1


def attributes_json(attributes: dict[str, Any]) -> str:
    """Attributes as stored: JSON with sorted keys, no NaN, no empty values."""
    clean = {k: v for k, v in attributes.items() if v is not None and v == v and v != "" and v != []}
    return json.dumps(clean, sort_keys=True, ensure_ascii=False, default=str)


def _frame(name: str, frame: pd.DataFrame | None) -> pd.DataFrame:
    columns = COLUMNS[name]
    if frame is None:
        frame = pd.DataFrame(columns=columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}; expected {columns}")
    frame = frame[columns].reset_index(drop=True)
    for column in columns:
        if column in ("rating", "timestamp"):
            frame[column] = pd.to_numeric(frame[column]).astype("float64" if column == "rating" else "int64")
        elif column == "created_at":
            frame[column] = pd.to_numeric(frame[column]).fillna(0).astype("int64")
        elif column == "attributes":
            frame[column] = frame[column].fillna("{}").astype(str).replace("", "{}")
        else:
            frame[column] = frame[column].fillna("").astype(str)
    return frame


@dataclass
class Catalog:
    """A named, multi-scene catalog with its users and interactions."""

    name: str
    scenes: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame = field(default_factory=lambda: _frame("users", None))
    interactions: pd.DataFrame = field(default_factory=lambda: _frame("interactions", None))
    kg: pd.DataFrame = field(default_factory=lambda: _frame("kg", None))

    def __post_init__(self) -> None:
        for table in COLUMNS:
            setattr(self, table, _frame(table, getattr(self, table)))
        self._check()

    def _check(self) -> None:
        duplicated = self.items["item_id"][self.items["item_id"].duplicated()]
        if len(duplicated):
            raise ValueError(f"item ids must be unique across scenes; repeated: {duplicated.head(5).tolist()}")
        unknown_scenes = set(self.items["scene"]) - set(self.scenes["scene"])
        if unknown_scenes:
            raise ValueError(f"items refer to scenes not in the scenes table: {sorted(unknown_scenes)[:5]}")
        unknown_items = set(self.interactions["item_id"].unique()) - set(self.items["item_id"])
        if unknown_items:
            raise ValueError(f"interactions refer to unknown items: {sorted(unknown_items)[:5]}")

    def summary(self) -> dict[str, Any]:
        per_scene = self.items.groupby("scene").size()
        inter = self.interactions.merge(self.items[["item_id", "scene"]], on="item_id")
        inter_per_scene = inter.groupby("scene").size()
        return {
            "name": self.name,
            "items": len(self.items),
            "users": len(self.users),
            "interactions": len(self.interactions),
            "kg_facts": len(self.kg),
            "scenes": {
                s: {"items": int(per_scene.get(s, 0)), "interactions": int(inter_per_scene.get(s, 0))}
                for s in self.scenes["scene"]
            },
        }

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for table in COLUMNS:
            getattr(self, table).to_parquet(directory / f"{table}.parquet", index=False)
        manifest = {
            "format_version": FORMAT_VERSION,
            "written_at": datetime.now(UTC).isoformat(),
            **self.summary(),
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> Catalog:
        manifest = json.loads((directory / "manifest.json").read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise AssetError(f"{directory} has catalog format {manifest.get('format_version')}, expected {FORMAT_VERSION}: prepare it again")
        tables = {t: pd.read_parquet(directory / f"{t}.parquet") for t in COLUMNS}
        return cls(name=manifest["name"], **tables)


def catalog_dir(name: str) -> Path:
    return llmrec_home() / "data" / name


def load_catalog(name_or_path: str) -> Catalog:
    """Load a prepared catalog by name (under LLMREC_HOME/data) or from a directory."""
    path = Path(name_or_path).expanduser()
    directory = path if (path / "manifest.json").is_file() else catalog_dir(name_or_path)
    if not (directory / "manifest.json").is_file():
        raise AssetError(f"catalog {name_or_path!r} is not prepared: run `llmrec data prepare {name_or_path}`")
    return Catalog.load(directory)
