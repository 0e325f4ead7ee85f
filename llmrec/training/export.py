"""Turn a training checkpoint into a model directory that serving loads, with a card.

Encoder: a sentence-transformers directory (the base model's modules, pooling and tokenizer, with
the trained transformer weights), so `EncoderConfig(model=DIR)` / `--set encoder.model=DIR` loads
it. Reranker: a transformers sequence-classification directory with one output, which
`sentence_transformers.CrossEncoder(DIR)` and `llmrec.serving.cross_encoder.CrossReranker` load.
The directory is written beside the target and renamed into place, so a reader never sees half a
model; the card is `card.json` (machine-readable) and `README.md` (the same, for people).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CARD_FILE = "card.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")
SKIP_FROM_BASE = ("README.md", ".gitattributes", "data_config.json", "onnx", "openvino", CARD_FILE, *WEIGHT_FILES)


def _strip(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def replace_dir(staging: Path, target: Path) -> Path:
    """Move a finished `staging` directory to `target`, replacing what was there."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}-{time.time_ns()}")
    staging.mkdir()
    return staging


def export_encoder(state: dict[str, Any], base_model: str, output: Path, card: dict[str, Any]) -> Path:
    """`state` is BiEncoder.state_dict(). The pooling layer the training skipped is taken from the
    base model unchanged (mean pooling never reads it), so the directory holds a complete BERT."""
    from transformers import AutoModel

    output = Path(output)
    staging = _staging(output)
    shutil.copytree(base_model, staging, ignore=shutil.ignore_patterns(*SKIP_FROM_BASE), dirs_exist_ok=True)
    model = AutoModel.from_pretrained(base_model)
    missing, unexpected = model.load_state_dict(_strip(state, "backbone."), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise ValueError(f"checkpoint does not match {base_model}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.save_pretrained(staging)
    write_card(staging, {"kind": "encoder", "base_model": base_model, **card}, output.name)
    return replace_dir(staging, output)


def export_cross_encoder(state: dict[str, Any], base_model: str, output: Path, card: dict[str, Any]) -> Path:
    """`state` is CrossScorer.state_dict(): a sequence-classification BERT with one label."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    output = Path(output)
    staging = _staging(output)
    model = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=1)
    model.load_state_dict(_strip(state, "model."))
    model.save_pretrained(staging)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(staging)
    write_card(staging, {"kind": "reranker", "base_model": base_model, **card}, output.name)
    return replace_dir(staging, output)


def write_card(directory: Path, card: dict[str, Any], name: str) -> None:
    """card.json and a README.md titled `name` (the final directory's, not the staging one's)."""
    from llmrec import __version__

    card = {"created_at": datetime.now(UTC).isoformat(), "llmrec_version": __version__, **card}
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2, default=str))
    lines = [f"# llmrec {card['kind']}: {name}", "", f"Fine-tuned from `{card['base_model']}` by `llmrec train {card['kind']}`.", ""]
    for key in ("data", "split", "pairs", "training", "metrics", "zero_shot"):
        if key in card:
            lines += [f"## {key}", "", "```json", json.dumps(card[key], indent=2, default=str), "```", ""]
    lines += ["Serve it with `--set encoder.model=<this directory>`." if card["kind"] == "encoder" else "Serve it with `--set rerank.cross_encoder=<this directory>`.", ""]
    (directory / "README.md").write_text("\n".join(lines))


def read_card(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / CARD_FILE).read_text())
