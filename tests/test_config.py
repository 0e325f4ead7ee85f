"""Configuration: shipped profiles, environment and CLI overrides, their precedence, strictness."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmrec.config import PipelineConfig, load_config


def test_local_profile_loads_cpu_friendly_settings():
    config = load_config("local", environ={})
    assert isinstance(config, PipelineConfig)
    assert config.encoder.model == "multilingual-e5-small"
    assert config.encoder.device == "auto"
    assert config.encoder.batch_size == 64
    assert config.encoder.dtype == "float32"
    assert config.index.kind == "auto"
    assert config.index.use_gpu is False
    assert config.max_k == 100
    assert config.rerank.candidates == 200


def test_cluster_profile_loads_gpu_settings():
    config = load_config("cluster", environ={})
    assert config.encoder.device == "cuda"
    assert config.encoder.batch_size == 256
    assert config.encoder.dtype == "float32"
    assert config.index.use_gpu is True
    assert config.max_k == 200
    assert config.rerank.candidates == 500
    # Keys the profile does not mention keep their defaults.
    assert config.rerank.mmr_lambda == 0.85


def test_no_source_gives_the_defaults():
    assert load_config(None, environ={}) == PipelineConfig()


def test_a_yaml_file_path_is_accepted_as_source(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("catalog: movielens-100k\nindex:\n  kind: ivf\n  ivf_nlist: 64\n")
    config = load_config(path, environ={})
    assert config.catalog == "movielens-100k"
    assert config.index.kind == "ivf"
    assert config.index.ivf_nlist == 64


def test_environment_overrides_a_nested_key():
    config = load_config("cluster", environ={"LLMREC__ENCODER__DEVICE": "cpu"})
    assert config.encoder.device == "cpu"


def test_environment_values_are_parsed_as_yaml_and_unprefixed_variables_ignored():
    environ = {"LLMREC__DEFAULT_K": "7", "LLMREC__INDEX__USE_GPU": "true", "HOME": "/x", "LLMREC_HOME": "/y"}
    config = load_config("local", environ=environ)
    assert config.default_k == 7
    assert config.index.use_gpu is True


def test_cli_style_override_sets_a_nested_key():
    config = load_config("local", overrides=["index.kind=hnsw", "rerank.mmr_lambda=0.5"], environ={})
    assert config.index.kind == "hnsw"
    assert config.rerank.mmr_lambda == 0.5


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ValueError, match="section.key=value"):
        load_config("local", overrides=["index.kind"], environ={})


def test_precedence_is_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("encoder:\n  device: from-file\n  batch_size: 8\n  max_seq_length: 32\n")
    environ = {"LLMREC__ENCODER__DEVICE": "from-env", "LLMREC__ENCODER__BATCH_SIZE": "16"}
    config = load_config(path, overrides=["encoder.device=from-cli"], environ=environ)
    assert config.encoder.device == "from-cli"  # override beats env and file
    assert config.encoder.batch_size == 16  # env beats file
    assert config.encoder.max_seq_length == 32  # file beats the default (128)


def test_unknown_key_in_override_is_rejected_naming_the_key():
    with pytest.raises(ValidationError) as caught:
        load_config("local", overrides=["encoder.devise=cpu"], environ={})
    (error,) = caught.value.errors()
    assert error["loc"] == ("encoder", "devise")
    assert error["type"] == "extra_forbidden"
    assert "Extra inputs are not permitted" in str(caught.value)


def test_unknown_key_in_environment_is_rejected():
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        load_config("local", environ={"LLMREC__INDEX__KINDS": "flat"})


def test_unknown_top_level_key_in_file_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("catalogue: demo\n")
    with pytest.raises(ValidationError) as caught:
        load_config(path, environ={})
    assert caught.value.errors()[0]["loc"] == ("catalogue",)


def test_invalid_value_is_rejected():
    with pytest.raises(ValidationError) as caught:
        load_config("local", overrides=["index.kind=annoy"], environ={})
    assert caught.value.errors()[0]["loc"] == ("index", "kind")


def test_unknown_profile_raises_file_not_found_listing_known_profiles():
    with pytest.raises(FileNotFoundError) as caught:
        load_config("laptop", environ={})
    message = str(caught.value)
    assert "'laptop'" in message
    assert "cluster" in message and "local" in message


def test_missing_yaml_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.yaml", environ={})
