"""Offline evaluation: published protocols on real data, llmrec against baselines.

`run_protocol("ml100k-msr", ["ease", "llmrec"])` tunes every model on the protocol's validation
data, fits it and scores the test users; `report` turns the run into a table, JSON, plot and CSV.
Training jobs that must not see the cold test items train on `ml1m_cold_items_split().train`.
"""

from __future__ import annotations

from llmrec.errors import LLMRecError
from llmrec.evaluation.protocols import RANKING_PROTOCOLS, ml1m_cold_items_split
from llmrec.evaluation.runner import Run, check_names, run_ranking

PROTOCOLS = (*RANKING_PROTOCOLS, "ml1m-scenes")


def run_protocol(
    protocol: str, models: list[str], encoder_dir: str | None = None, reduced: int | None = None, reranker_dir: str | None = None
) -> Run:
    """One protocol over the named models. `reduced` caps the evaluated users for a quick check;
    None runs the protocol exactly."""
    if protocol == "ml1m-scenes":
        from llmrec.evaluation.scenes import run_scenes

        return run_scenes(models, max_users=reduced)
    if protocol not in RANKING_PROTOCOLS:
        raise LLMRecError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    check_names(models, encoder_dir, reranker_dir)
    return run_ranking(RANKING_PROTOCOLS[protocol](max_users=reduced), models, encoder_dir, reranker_dir)


__all__ = ["PROTOCOLS", "Run", "ml1m_cold_items_split", "run_protocol"]
