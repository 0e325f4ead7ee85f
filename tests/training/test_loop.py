"""The training loop body in one process (LocalHooks): a run that fails and resumes from its checkpoint
ends with exactly the weights of the same run left alone."""

from __future__ import annotations

import pytest
import torch

from llmrec.data.assets import resolve_model
from llmrec.training.loop import InjectedFailure, LocalHooks, LoopConfig, load_state, train_loop

PAIRS = {
    "user_text": [f"Liked: film {i}; film {i + 1}." for i in range(16)],
    "item_text": [f"Movie: film {i + 2}. Genres: Drama." for i in range(16)],
}


def final_weights(tmp_path, name: str, fail_at_step: int | None) -> dict[str, torch.Tensor]:
    config = LoopConfig(base_model=resolve_model("all-MiniLM-L6-v2"), max_steps=4, batch_size=4, max_seq_length=16, checkpoint_every=2, log_every=2,
                        warmup_steps=1, lr=1e-3, hard_negatives=False, fail_at_step=fail_at_step)  # fmt: skip
    hooks = LocalHooks(PAIRS, batch_size=4, checkpoint_root=tmp_path / name)
    if fail_at_step is not None:
        with pytest.raises(InjectedFailure):
            train_loop(config, hooks)
        assert hooks.last_checkpoint.name == "step-000002"
    result = train_loop(config, hooks)  # resumes from the last checkpoint, if any
    assert result["step"] == 4 and result["resumed_from_step"] == (2 if fail_at_step else None)
    return load_state(hooks.last_checkpoint)["model"]


def test_a_run_that_fails_and_resumes_ends_with_the_weights_of_the_run_left_alone(tmp_path):
    alone, resumed = final_weights(tmp_path, "alone", None), final_weights(tmp_path, "resumed", fail_at_step=3)
    assert alone.keys() == resumed.keys()
    assert all(torch.equal(alone[k], resumed[k]) for k in alone), [k for k in alone if not torch.equal(alone[k], resumed[k])][:5]
    from llmrec.training.model import build_model

    start = build_model("encoder", resolve_model("all-MiniLM-L6-v2")).state_dict()  # and training moved them
    assert any(not torch.equal(alone[k], start[k]) for k in alone if k in start)
