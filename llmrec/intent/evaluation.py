"""`llmrec eval intent`: scene accuracy, constraints, schema validity and latency of an IntentParser
on a labelled JSONL set (default: the packaged `llmrec/intent/cases.jsonl`).

Each line: {"query", "scene" (null for none), "lang", optional "kind", "split" (dev|test),
"constraints" {year_min, year_max, price_min, price_max, language, mood}, "keywords"}.
Constraint fields match when years are within one year, prices within 1%, languages name the
same language; a mood matches when both sides have one (moods are free words).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import LLMRecError
from llmrec.intent.parser import IntentParser, ParseResult
from llmrec.intent.repair import canonical_language
from llmrec.intent.rules import fallback_intent
from llmrec.intent.schema import Intent

CONSTRAINT_FIELDS = ("year_min", "year_max", "price_min", "price_max", "language", "mood")


def default_cases() -> Path:
    return Path(str(resources.files("llmrec.intent") / "cases.jsonl"))


def load_cases(path: str | Path | None = None, split: str | None = None) -> list[dict[str, Any]]:
    path = Path(path) if path else default_cases()
    if not path.is_file():
        raise LLMRecError(f"intent cases {path} not found")
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as error:
            raise LLMRecError(f"{path}:{number}: not JSON ({error})") from None
        if not isinstance(case, dict) or not isinstance(case.get("query"), str) or "scene" not in case:
            raise LLMRecError(f"{path}:{number}: each line needs at least 'query' and 'scene' (null for none)")
        case.setdefault("id", f"line-{number}")
        case.setdefault("lang", "und")
        if split in (None, "all") or case.get("split") == split:
            cases.append(case)
    if not cases:
        raise LLMRecError(f"{path}: no cases{f' in split {split!r}' if split else ''}")
    return cases


def _field_match(field: str, expected: Any, got: Any) -> bool:
    if field.startswith("year"):
        return abs(int(expected) - int(got)) <= 1
    if field.startswith("price"):
        return abs(float(expected) - float(got)) <= 0.01 * max(1.0, abs(float(expected)))
    if field == "language":
        return canonical_language(str(expected)) == canonical_language(str(got))
    return True  # mood: both present


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def evaluate(parser: IntentParser, cases: list[dict[str, Any]], progress: Callable[[dict[str, Any], ParseResult], None] | None = None) -> dict[str, Any]:
    """Parse every case once uncached (timed), then again from the cache; return the metrics.
    `backend_scene_accuracy` is the backend's own scene on the cases it answered (before the scene signal)."""
    results: list[ParseResult] = []
    errors = 0
    for case in cases:
        started = time.perf_counter()
        try:
            result = parser.parse_detailed(case["query"])
        except Exception:  # a broken backend is a fallback for the pipeline: count it as one
            errors += 1
            result = ParseResult(fallback_intent(case["query"]), seconds=time.perf_counter() - started)
        results.append(result)
        if progress is not None:
            progress(case, result)
    cached = []
    for case in cases:
        started = time.perf_counter()
        try:
            intent = parser.parse(case["query"])
        except Exception:
            continue
        if intent.source == "cache":
            cached.append((time.perf_counter() - started) * 1000)

    model_right = [r.model_scene == c["scene"] for c, r in zip(cases, results, strict=True) if r.raw is not None]
    by_lang: dict[str, list[bool]] = defaultdict(list)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    fields = {f: {"expected": 0, "predicted": 0, "matched": 0} for f in CONSTRAINT_FIELDS}
    keyword_hits = keyword_total = 0
    misses = []
    for case, result in zip(cases, results, strict=True):
        intent: Intent = result.intent
        right = intent.scene == case["scene"]
        by_lang[case["lang"]].append(right)
        by_kind[case.get("kind", "all")].append(right)
        confusion[str(case["scene"])][str(intent.scene)] += 1
        if not right:
            misses.append({"id": case["id"], "query": case["query"], "expected": case["scene"], "got": intent.scene, "backend": result.model_scene})
        expected = {k: v for k, v in (case.get("constraints") or {}).items() if v is not None}
        got = {k: v for k, v in intent.constraints.model_dump().items() if v is not None}
        for field in CONSTRAINT_FIELDS:
            fields[field]["expected"] += field in expected
            fields[field]["predicted"] += field in got
            fields[field]["matched"] += field in expected and field in got and _field_match(field, expected[field], got[field])
        for word in case.get("keywords") or []:
            keyword_total += 1
            keyword_hits += any(word.lower() in k.lower() or k.lower() in word.lower() for k in intent.keywords)
    all_right = [r for rights in by_lang.values() for r in rights]
    uncached = [r.seconds * 1000 for r in results]
    model_calls = [r for r in results if r.raw is not None]
    matched = sum(f["matched"] for f in fields.values())
    return {
        "backend": parser.backend_name,
        "model": parser.config.model if parser.backend is not None else None,
        "cases": len(cases),
        "scene_accuracy": _rate(sum(all_right), len(all_right)),
        "scene_accuracy_by_lang": {lang: _rate(sum(v), len(v)) for lang, v in sorted(by_lang.items())},
        "scene_accuracy_by_kind": {kind: _rate(sum(v), len(v)) for kind, v in sorted(by_kind.items())},
        "scene_signal": parser.signal.embedder.name if parser.signal is not None else None,
        "backend_scene_accuracy": _rate(sum(model_right), len(model_right)),  # the backend's own scene, before the signal
        "constraint_precision": _rate(matched, sum(f["predicted"] for f in fields.values())),
        "constraint_recall": _rate(matched, sum(f["expected"] for f in fields.values())),
        "constraint_fields": fields,
        "keyword_recall": _rate(keyword_hits, keyword_total),
        "schema_valid_rate": _rate(sum(r.valid for r in results), len(results)),
        "repaired_rate": _rate(sum(r.repaired for r in model_calls), len(model_calls)),
        "fallback_rate": _rate(sum(r.intent.source == "fallback" for r in results), len(results)),
        "errors": errors,
        "latency_ms_p50": _pct(uncached, 50),
        "latency_ms_p95": _pct(uncached, 95),
        "latency_ms_mean": round(float(np.mean(uncached)), 1) if uncached else None,
        "cached_latency_ms_p50": _pct(cached, 50),
        "cached_latency_ms_p95": _pct(cached, 95),
        "confusion": {k: dict(v) for k, v in confusion.items()},
        "misses": misses,
    }


def markdown(report: dict[str, Any]) -> str:
    lang = ", ".join(f"{k} {v:.1%}" for k, v in report["scene_accuracy_by_lang"].items())
    kind = ", ".join(f"{k} {v:.1%}" for k, v in report["scene_accuracy_by_kind"].items())

    def fmt(value: Any, pct: bool = True) -> str:
        return "n/a" if value is None else (f"{value:.1%}" if pct else f"{value}")

    lines = [
        f"backend {report['backend']} ({report['model'] or 'no model'}), {report['cases']} cases",
        f"scene accuracy        {fmt(report['scene_accuracy'])}  ({lang})",
        f"  backend alone       {fmt(report['backend_scene_accuracy'])} (scene signal: {report['scene_signal'] or 'off'})",
        f"  by kind             {kind}",
        f"constraints           precision {fmt(report['constraint_precision'])}, recall {fmt(report['constraint_recall'])}",
        f"keyword recall        {fmt(report['keyword_recall'])}",
        f"schema-valid answers  {fmt(report['schema_valid_rate'])} (repaired {fmt(report['repaired_rate'])}), fallback {fmt(report['fallback_rate'])}, errors {report['errors']}",
        f"latency uncached      p50 {fmt(report['latency_ms_p50'], False)} ms, p95 {fmt(report['latency_ms_p95'], False)} ms",
        f"latency cached        p50 {fmt(report['cached_latency_ms_p50'], False)} ms, p95 {fmt(report['cached_latency_ms_p95'], False)} ms",
    ]
    if report["misses"]:
        lines.append("wrong scenes:")
        lines += [f"  {m['id']}: expected {m['expected']}, got {m['got']}: {m['query'][:70]}" for m in report["misses"]]
    return "\n".join(lines)
