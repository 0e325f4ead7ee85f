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


def test_the_library_imports_no_ray_and_none_of_its_callers():
    """Layers point one way: `deployments/`, `train/` and the command line (`llmrec_cli/`) import
    `llmrec/`, never the reverse, and the library runs without Ray (lazy imports inside functions count)."""
    import ast

    outward = {"ray", "deployments", "train", "llmrec_cli"}
    found = []
    for path in sorted((REPO / "llmrec").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names if name.split(".")[0] in outward]
    assert not found, found
