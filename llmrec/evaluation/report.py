"""A run's outputs: the Markdown table, the JSON result, the PNG plot and the predictions CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from llmrec.errors import LLMRecError
from llmrec.evaluation.runner import Run


def as_json(run: Run, seconds: float) -> dict[str, Any]:
    """`{"protocol": ..., "results": {MODEL: {"ndcg@10": ...}}}` plus what tuning chose per model."""
    return {
        "protocol": run.protocol,
        "results": {m: {k: round(v, 4) for k, v in metrics.items()} for m, metrics in run.results.items()},
        "details": run.details,
        "seconds": round(seconds, 1),
    }


def markdown(run: Run) -> str:
    """One row per model, one column per metric, four decimals."""
    columns = list(dict.fromkeys(k for metrics in run.results.values() for k in metrics))
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for model, metrics in run.results.items():
        cells = [f"{metrics[c]:.4f}" if c in metrics else "" for c in columns]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(run: Run, path: Path) -> Path:
    """Grouped bars: one group per metric, one bar per model."""
    try:
        import matplotlib
    except ImportError:
        raise LLMRecError("the plot needs matplotlib: pip install 'llmrec[eval]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    columns = list(dict.fromkeys(k for metrics in run.results.values() for k in metrics))
    models = list(run.results)
    width = 0.8 / max(len(models), 1)
    figure, axes = plt.subplots(figsize=(min(16.0, max(6.0, 1.2 * len(columns) + 0.15 * len(columns) * len(models))), 5.0))
    positions = np.arange(len(columns))
    for i, model in enumerate(models):
        values = [run.results[model].get(c, np.nan) for c in columns]
        axes.bar(positions + i * width, values, width, label=model)
    axes.set_xticks(positions + width * (len(models) - 1) / 2, columns, rotation=30, ha="right")
    axes.set_title(run.protocol)
    axes.legend(fontsize="small", ncols=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_predictions(run: Run, path: Path) -> Path:
    """Every ranked item as `model,user_id,item_id,rank,score`, with the catalog's original ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "user_id", "item_id", "rank", "score"])
        writer.writerows((m, u, i, r, f"{s:.6g}") for m, u, i, r, s in run.predictions)
    return path


def save(run: Run, seconds: float, directory: Path) -> tuple[Path, Path]:
    """The JSON result and the plot of a run, named after the protocol."""
    directory.mkdir(parents=True, exist_ok=True)
    result = directory / f"{run.protocol}.json"
    result.write_text(json.dumps(as_json(run, seconds), indent=2))
    return result, plot(run, directory / f"{run.protocol}.png")
