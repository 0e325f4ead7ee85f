"""What an installed llmrec carries: every data file of its packages is in the package data (a file
left out works from a checkout and fails in the image, as index-auto.json once did)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_data_file_of_the_packages_is_in_the_package_data():
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_data = settings["package-data"]
    for package in settings["packages"]["find"]["include"]:
        root = REPO / package.removesuffix("*")
        shipped = {path for pattern in package_data.get(root.name, []) for path in root.glob(pattern)}  # setuptools' glob
        data = {p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
        assert data <= shipped, sorted(str(p.relative_to(REPO)) for p in data - shipped)
