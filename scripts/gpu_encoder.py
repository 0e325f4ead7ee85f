"""The served text encoder (multilingual-e5-small) measured on a machine without llmrec: a faithful, smaller pack.

Why: the GPU machine has torch, transformers, safetensors and numpy but no llmrec, no model weights, and
takes at most 64 MiB of files per call; the prepared model is 470 MB of fp32. `pack` (here, with llmrec)
writes what the demo catalog's texts need into `.device/e5-pack` (under 60 MB); `run` (there) rebuilds the
model from it and measures encoding and exact search per device and dtype.

How it stays faithful:
- the texts are the demo catalog's items exactly as the index embeds them (`catalog_texts("demo")`), and the
  served `Encoder` adds no e5 prompt (plain `encode`, `default_prompt_name` is None), so none is added here;
- they are tokenized by the served model's own tokenizer with sentence-transformers' text kwargs
  (truncation "longest_first" at the served max_seq_length), checked against the model's `preprocess`;
- the weights are the served model's own, every tensor but the unused pooler; the word embeddings keep only
  the rows of token ids that occur (ids remapped to that compact vocabulary), which changes no output.
  float16 storage is the one loss: `run` reports its cost as the cosine of its CPU float32 vectors to the
  served encoder's (CPU float32) vectors of the first texts, stored in the pack;
- `run` encodes like sentence-transformers: texts sorted by character length (longest first), batches at
  the served batch size padded to their longest text, mean pooling over the attention mask (float32 sums),
  L2 normalisation, each batch's vectors copied to the host.

    LLMREC_HOME=... PYTHONPATH=. .venv/bin/python scripts/gpu_encoder.py pack
    python scripts/gpu_encoder.py run                    # on the GPU machine, from the repository root
    python scripts/gpu_encoder.py run --devices cpu --limit 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PACK = Path(__file__).resolve().parents[1] / ".device" / "e5-pack"
MAX_PACK_BYTES = 60_000_000
REFERENCES = 512  # texts whose served vectors the pack carries
TOP_K = 10
QUERIES = 1000
SCALE_VECTORS = 1_000_000
CONFIG_FIELDS = (  # BertConfig fields that define the network; nothing version-specific travels
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act", "max_position_embeddings",
    "type_vocab_size", "layer_norm_eps", "position_embedding_type",
)  # fmt: skip


def median_seconds(work: Callable[[], Any], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        sync()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


# --------------------------------------------------------------------------- pack (here, with llmrec)


def pack(out: Path) -> None:
    import sentence_transformers
    import torch
    import transformers
    from safetensors.torch import save_file

    from llmrec.bench.encoder import catalog_texts
    from llmrec.config import EncoderConfig
    from llmrec.serving.encoder import Encoder

    config = EncoderConfig(device="cpu", dtype="float32")  # the served model, batch size and max_seq_length
    encoder = Encoder(config)
    model, tokenizer = encoder.model[0].auto_model, encoder.model.tokenizer
    if encoder.model.default_prompt_name is not None:
        raise SystemExit(f"the served encoder now adds the prompt {encoder.model.default_prompt_name!r}: pack it too")
    texts = catalog_texts("demo")
    max_length = encoder.model.max_seq_length
    ids = tokenizer(texts, truncation="longest_first")["input_ids"]  # sentence-transformers' text kwargs, unpadded
    order = np.argsort([-len(text) for text in texts])  # sentence-transformers' batching order
    checked = [*range(config.batch_size), *order[: config.batch_size]]  # the first texts and the longest (truncated) ones
    served = encoder.model.preprocess([texts[i] for i in checked])
    for i, input_ids, mask in zip(checked, served["input_ids"], served["attention_mask"]):
        if input_ids[mask.bool()].tolist() != ids[i]:
            raise SystemExit(f"text {i}: tokens differ from the served encoder's preprocess")
    lengths = np.array([len(row) for row in ids])
    flat = np.concatenate([np.asarray(row) for row in ids])
    used = np.union1d(flat, [tokenizer.pad_token_id])  # the original ids kept, ascending
    compact = np.searchsorted(used, flat)

    state = {name: tensor for name, tensor in model.state_dict().items() if not name.startswith("pooler.")}
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][torch.from_numpy(used)]
    full = model.config.to_dict()
    bert = {field: full[field] for field in CONFIG_FIELDS}
    bert.update(vocab_size=len(used), pad_token_id=int(np.searchsorted(used, tokenizer.pad_token_id)))

    batches = [[texts[i] for i in order[start : start + config.batch_size]] for start in range(0, len(texts), config.batch_size)]
    tokenize_s = median_seconds(lambda: [tokenizer(b, padding=True, truncation="longest_first", return_tensors="pt") for b in batches], 3)

    out.mkdir(parents=True, exist_ok=True)
    save_file({name: t.to(torch.float16).contiguous() for name, t in state.items()}, str(out / "model.safetensors"))
    np.save(out / "tokens.npy", compact.astype(np.uint16 if len(used) <= 2**16 else np.int32))
    np.save(out / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    np.save(out / "char_lengths.npy", np.array([len(text) for text in texts], dtype=np.int32))
    np.save(out / "vocab_ids.npy", used.astype(np.int32))  # compact id -> the tokenizer's id
    np.save(out / "reference.npy", encoder.encode(texts[:REFERENCES]).astype(np.float16))
    (out / "config.json").write_text(json.dumps(bert, indent=2) + "\n")
    meta = {
        "model": config.model,
        "catalog": "demo",
        "texts": len(texts),
        "tokens": int(lengths.sum()),
        "truncated_texts": int((lengths == max_length).sum()),
        "max_seq_length": max_length,
        "batch_size": config.batch_size,
        "prompt": None,
        "vocab_kept": len(used),
        "vocab_full": int(full["vocab_size"]),
        "references": min(REFERENCES, len(texts)),
        "tokenizer": {
            "class": type(tokenizer).__name__,
            "fast": bool(tokenizer.is_fast),
            "texts_per_s": round(len(texts) / tokenize_s, 1),
            "how": f"median of 3 passes over all texts in batches of {config.batch_size}, padded, tensors (as sentence-transformers calls it)",
            "cpu_count": os.cpu_count(),
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "sentence_transformers": sentence_transformers.__version__},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    sizes = {path.name: path.stat().st_size for path in sorted(out.iterdir())}
    for name, size in sizes.items():
        print(f"{size:>12,}  {name}")
    total = sum(sizes.values())
    print(f"{total:>12,}  total in {out} ({len(used):,} of {full['vocab_size']:,} embedding rows, {len(texts):,} texts, {int(lengths.sum()):,} tokens)")
    print(f"tokenizer here: {meta['tokenizer']['texts_per_s']:,.0f} texts/s on {os.cpu_count()} CPUs")
    if total >= MAX_PACK_BYTES:
        raise SystemExit(f"the pack is {total:,} bytes, over {MAX_PACK_BYTES:,}: it would not travel")


# --------------------------------------------------------------------------- run (there, without llmrec)


def load_model(pack_dir: Path):
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(**json.loads((pack_dir / "config.json").read_text())), add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(load_file(str(pack_dir / "model.safetensors")), strict=False)
    if unexpected or {name for name, _ in model.named_parameters()} & set(missing):  # older transformers keep position_ids as a buffer
        raise SystemExit(f"the pack does not fit this BertModel: missing {missing}, unexpected {unexpected}")
    return model.eval()


def make_batches(pack_dir: Path, limit: int | None, batch_size: int, pad_id: int) -> tuple[list[tuple[Any, Any]], np.ndarray, int]:
    """Padded (ids, mask) batches in sentence-transformers' order, that order, and the token count."""
    import torch

    tokens, offsets = np.load(pack_dir / "tokens.npy"), np.load(pack_dir / "offsets.npy")
    count = len(offsets) - 1 if limit is None else min(limit, len(offsets) - 1)
    order = np.argsort(-np.load(pack_dir / "char_lengths.npy")[:count])
    batches = []
    for start in range(0, count, batch_size):
        rows = [tokens[offsets[i] : offsets[i + 1]].astype(np.int64) for i in order[start : start + batch_size]]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.from_numpy(row)
            mask[r, : len(row)] = 1
        batches.append((ids, mask))
    return batches, order, int(offsets[count])


def encode(model, batches: list[tuple[Any, Any]], device: str) -> np.ndarray:
    """sentence-transformers' Pooling(mean) + Normalize, each batch's vectors copied to the host; rows in batch order."""
    import torch

    parts = []
    with torch.inference_mode():
        for ids, mask in batches:
            ids, mask = ids.to(device), mask.to(device)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * weights).sum(dim=1, dtype=torch.float32)
            pooled = (summed / weights.sum(dim=1, dtype=torch.float32).clamp(min=1e-9)).to(hidden.dtype)
            parts.append(torch.nn.functional.normalize(pooled, p=2, dim=1).cpu())
    return torch.cat(parts).float().numpy()


def timed_encode(model, batches: list[tuple[Any, Any]], order: np.ndarray, device: str, repeats: int) -> tuple[np.ndarray, float]:
    """After a warm-up (a full pass on GPU, one batch on CPU): the vectors in text order and the median seconds per pass."""
    import torch

    encode(model, batches if device == "cuda" else batches[:1], device)
    passes: list[np.ndarray] = []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    seconds = median_seconds(lambda: passes.append(encode(model, batches, device)), repeats, sync)
    vectors = passes[-1]
    ordered = np.empty_like(vectors)
    ordered[order] = vectors
    return ordered, seconds


def search_rate(matrix, probe, repeats: int = 3) -> tuple[Any, float]:
    """Exact inner-product top-k of `probe` against `matrix` on their device: the neighbours and queries/s."""
    import torch

    sync = torch.cuda.synchronize if matrix.is_cuda else (lambda: None)
    top = (probe @ matrix.T).topk(TOP_K, dim=1).indices  # warm-up
    sync()
    return top.cpu().numpy(), len(probe) / median_seconds(lambda: (probe @ matrix.T).topk(TOP_K, dim=1), repeats, sync)


def run(pack_dir: Path, limit: int | None, devices: list[str], cuda_batch_sizes: list[int], passes: int, cpu_passes: int) -> dict[str, Any]:
    import torch
    import transformers

    meta = json.loads((pack_dir / "meta.json").read_text())
    pad_id = json.loads((pack_dir / "config.json").read_text())["pad_token_id"]
    reference = np.load(pack_dir / "reference.npy").astype(np.float32)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)  # unit length again after float16 storage
    cuda = torch.cuda.is_available()
    notes = [] if cuda or "cuda" not in devices else ["cuda: torch sees no GPU here, cuda rows skipped"]
    result: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "attn_implementation": None,
        "cpu_threads": torch.get_num_threads(),
        "model": meta["model"],
        "max_seq_length": meta["max_seq_length"],
        "vocab_kept": meta["vocab_kept"],
        "tokenizer_texts_per_s_packing_machine": meta["tokenizer"]["texts_per_s"],
        "tokenizer_packing_machine_cpus": meta["tokenizer"]["cpu_count"],
        "rows": [],
        "notes": notes,
    }
    first: tuple[np.ndarray, np.ndarray] | None = None
    for device in [d for d in devices if d == "cpu" or cuda]:
        for batch_size in [meta["batch_size"]] if device == "cpu" else cuda_batch_sizes:
            batches, order, tokens = make_batches(pack_dir, limit, batch_size, pad_id)
            for dtype in ["float32"] if device == "cpu" else ["float32", "float16", "bfloat16"]:
                model = load_model(pack_dir).to(device=device, dtype=getattr(torch, dtype))  # afresh: bfloat16 -> float32 would lose bits
                repeats = passes if device == "cuda" else cpu_passes
                result["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
                vectors, seconds = timed_encode(model, batches, order, device, repeats)
                count = min(len(reference), len(vectors))
                cosines = np.sum(vectors[:count] * reference[:count], axis=1) / np.linalg.norm(vectors[:count], axis=1)  # half-precision rows are not quite unit length
                matrix = torch.from_numpy(vectors).to(device)
                top, qps = search_rate(matrix, matrix[: min(QUERIES, len(vectors))])
                first = first or (vectors, top)
                result["rows"].append({
                    "device": device, "dtype": dtype, "batch_size": batch_size, "texts": len(vectors), "passes": repeats,
                    "texts_per_s": round(len(vectors) / seconds, 1), "tokens_per_s": round(tokens / seconds),
                    "min_cosine_vs_reference": round(float(cosines.min()), 7), "mean_cosine_vs_reference": round(float(cosines.mean()), 7),
                    "reference_texts": count, "top10_overlap_vs_first_row": round(float(np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(top, first[1])])), 4),
                    "exact_search_queries_per_s": round(qps, 1), "exact_search_vectors": len(vectors),
                })  # fmt: skip
                print(format_row(result["rows"][-1]), flush=True)
    if cuda and "cuda" in devices:
        generator = torch.Generator(device="cuda").manual_seed(0)
        scale = torch.nn.functional.normalize(torch.randn(SCALE_VECTORS, 384, device="cuda", generator=generator), dim=1).half()
        probe = torch.from_numpy(first[0][:QUERIES]).to("cuda", torch.float16)
        _, qps = search_rate(scale, probe)
        result["scale_search"] = {"vectors": SCALE_VECTORS, "dim": 384, "dtype": "float16", "queries": len(probe), "queries_per_s": round(qps, 1)}
    else:
        notes.append("scale search over 1,000,000 float16 vectors: GPU only, skipped")
    return result


def format_row(r: dict[str, Any]) -> str:
    return (
        f"| {r['device']} | {r['dtype']} | {r['batch_size']} | {r['texts']:,} | {r['texts_per_s']:,.1f} | {r['tokens_per_s']:,} | "
        f"{r['min_cosine_vs_reference']:.7f} | {r['mean_cosine_vs_reference']:.7f} | {r['top10_overlap_vs_first_row']:.4f} | {r['exact_search_queries_per_s']:,.0f} |"
    )


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['model']} from the pack ({result['vocab_kept']:,} embedding rows), max_seq_length {result['max_seq_length']}; "
        f"torch {result['torch']}, CUDA {result['cuda']}, transformers {result['transformers']}, GPU {result['gpu']}, "
        f"attention {result['attn_implementation']}, {result['cpu_threads']} CPU threads",
        "",
        "| device | dtype | batch | texts | texts/s | tokens/s | min cos vs served | mean cos vs served | top-10 overlap vs first row | exact search q/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[format_row(r) for r in result["rows"]],
        "",
        f"Tokenizer (CPU work, fast tokenizer), measured on the packing machine ({result['tokenizer_packing_machine_cpus']} CPUs): {result['tokenizer_texts_per_s_packing_machine']:,.0f} texts/s",
    ]
    if "scale_search" in result:
        s = result["scale_search"]
        lines.append(f"Exact top-{TOP_K} over {s['vectors']:,} random unit vectors ({s['dim']}-d, {s['dtype']}, GPU): {s['queries_per_s']:,.0f} queries/s")
    lines += [f"Note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("pack", help="write the pack (needs llmrec and the prepared model)").add_argument("--out", type=Path, default=PACK)
    runner = commands.add_parser("run", help="measure from the pack (torch, transformers, safetensors, numpy only)")
    runner.add_argument("--pack", type=Path, default=PACK)
    runner.add_argument("--limit", type=int, default=None, help="only the first N texts (default: all)")
    runner.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    runner.add_argument("--cuda-batch-sizes", nargs="+", type=int, default=[64, 512], help="the first is the served batch size; CPU uses the served one")
    runner.add_argument("--passes", type=int, default=3, help="timed passes per GPU row (median)")
    runner.add_argument("--cpu-passes", type=int, default=1, help="timed passes on CPU (all texts take about 3 min per pass on 2 cores, an estimated 20-60 s on 16)")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.out)
        return
    result = run(args.pack, args.limit, args.devices, args.cuda_batch_sizes, args.passes, args.cpu_passes)
    print(format_table(result))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_encoder.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
