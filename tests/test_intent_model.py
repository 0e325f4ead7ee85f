"""The transformers backend with the packaged Qwen2.5-Coder-0.5B-Instruct.

The default run uses the model only where it is already prepared under LLMREC_HOME (a local
checkout; CI starts clean and skips it); `-m slow` prepares it (about 3 minutes) and runs the
full-generation contract. The vllm backend's contract runs in its own virtualenv:
scripts/vllm_cpu.sh.
"""

from __future__ import annotations

import pytest
from intent_contract import DEMO_SCENES, check_contract

from llmrec.config import IntentConfig
from llmrec.intent import IntentParser

MODEL = "qwen2.5-coder-0.5b-instruct"


def _prepared() -> bool:
    from llmrec.assets import models_dir

    return (models_dir() / MODEL / "config.json").is_file()


@pytest.fixture(scope="module")
def scene_parser(llmrec_home):
    if not _prepared():
        pytest.skip(f"{MODEL} is not prepared (llmrec models prepare {MODEL}); `-m slow` prepares it")
    return IntentParser(IntentConfig(backend="transformers", fields="scene"), DEMO_SCENES)


def test_transformers_scene_choice_meets_the_contract(scene_parser):
    intents = check_contract(scene_parser)
    assert intents[0].scene == "movie" and intents[2].scene == "grocery"
    assert intents[2].constraints.price_max == 15 and intents[1].constraints.year_min == 1990


@pytest.mark.slow
def test_transformers_full_answers_meet_the_contract(llmrec_home):
    from llmrec.assets import resolve_model

    resolve_model(MODEL, prepare=True)
    parser = IntentParser(IntentConfig(backend="transformers", max_new_tokens=24), DEMO_SCENES)
    intents = check_contract(parser)
    assert intents[0].scene == "movie" and intents[0].keywords
