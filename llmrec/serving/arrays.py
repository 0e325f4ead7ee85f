"""A trained model as one file: its numpy arrays and a JSON header (vocabularies, card) in one .npz.

Written to a temporary file and renamed, so a reader sees the old model or the new one, never half
of each; read back with the header's `format` checked against the reader's and the arrays' shapes
against the model's vocabularies."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

READ_ERRORS = (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile)  # what a truncated or foreign file raises


def save_arrays(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(partial, meta=np.array(json.dumps(meta)), **arrays)
    partial.replace(path)
    return path


def load_arrays(path: Path, names: tuple[str, ...], expected_format: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays); raises one of READ_ERRORS when the file is not such a model."""
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        arrays = {name: stored[name] for name in names}
    if not isinstance(meta, dict):
        raise ValueError("its header is not a JSON object")
    if meta.get("format") != expected_format:
        raise ValueError(f"format {meta.get('format')}, expected {expected_format}")
    return meta, arrays


def check_shapes(arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]) -> None:
    """A ValueError naming the arrays whose shape does not fit the model's vocabularies."""
    wrong = [name for name, shape in expected.items() if arrays[name].shape != shape]
    if wrong:
        raise ValueError(f"arrays {', '.join(wrong)} do not fit the vocabularies")
