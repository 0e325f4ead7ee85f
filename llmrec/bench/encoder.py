"""Benchmarks (commands, not tests): encoder throughput and exact retrieval per device and dtype.

Every configuration encodes the same texts; each row reports the median of `repeats` timed runs
after a warm-up, and how closely its vectors and top-10 neighbours agree with the first row
(CPU float32), so a faster configuration also shows what it costs in fidelity.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import EncoderConfig
from llmrec.serving.encoder import Encoder

TOP_K = 10


def catalog_texts(catalog_name: str) -> list[str]:
    """The rendered item texts of a prepared catalog, exactly as the index embeds them."""
    from llmrec.data.catalog import load_catalog
    from llmrec.data.items import ItemRecord

    items = load_catalog(catalog_name).items
    return [ItemRecord(r.item_id, r.scene, r.title, r.text, json.loads(r.attributes)).render() for r in items.itertuples()]


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _exact_top_k(vectors: np.ndarray, queries: int, device: str) -> tuple[np.ndarray, float]:
    """Brute-force inner-product top-k of the first `queries` vectors against all, on `device`."""
    import torch

    matrix = torch.from_numpy(vectors).to(device)
    probe = matrix[:queries]
    (probe @ matrix.T).topk(TOP_K, dim=1)  # warm-up
    _synchronize(device)
    started = time.perf_counter()
    top = (probe @ matrix.T).topk(TOP_K, dim=1).indices
    _synchronize(device)
    return top.cpu().numpy(), queries / (time.perf_counter() - started)


def encoder_benchmark(
    texts: list[str], model: str, devices: list[str], dtypes: list[str], batch_size: int, repeats: int = 3, queries: int = 1000
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    reference: tuple[np.ndarray, np.ndarray] | None = None
    for device in devices:
        for dtype in dtypes:
            if device == "cpu" and dtype != "float32":
                continue  # half precision on CPU is slower, not a configuration anyone serves
            encoder = Encoder(EncoderConfig(model=model, device=device, dtype=dtype, batch_size=batch_size))
            encoder.encode(texts[:batch_size])
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                vectors = encoder.encode(texts)
                _synchronize(device)
                seconds.append(time.perf_counter() - started)
            top, qps = _exact_top_k(vectors, min(queries, len(texts)), device)
            if reference is None:
                reference = (vectors, top)
            overlap = np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(top, reference[1])])
            rows.append(
                {
                    "device": device,
                    "dtype": dtype,
                    "batch_size": batch_size,
                    "texts_per_s": round(len(texts) / statistics.median(seconds), 1),
                    "seconds_median": round(statistics.median(seconds), 3),
                    "min_cosine_vs_first_row": round(float(np.min(np.sum(vectors * reference[0], axis=1))), 5),
                    "exact_search_queries_per_s": round(qps, 1),
                    "top10_overlap_vs_first_row": round(float(overlap), 4),
                }
            )
    return {"texts": len(texts), "model": model, "top_k": TOP_K, "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    head = "| device | dtype | texts/s | min cosine vs first | exact search q/s | top-10 overlap |"
    lines = [f"{result['texts']} texts, model {result['model']}", head, "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['device']} | {r['dtype']} | {r['texts_per_s']:,.1f} | {r['min_cosine_vs_first_row']:.5f} | "
            f"{r['exact_search_queries_per_s']:,.0f} | {r['top10_overlap_vs_first_row']:.4f} |"
        )
    return "\n".join(lines)


def read_texts(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]
