"""JSON-lines reading shared by the public-format readers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmrec.errors import AssetError


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file, plain or gzipped, read one line at a time."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise AssetError(f"{path} line {number} is not JSON ({error}): download the file again") from None
