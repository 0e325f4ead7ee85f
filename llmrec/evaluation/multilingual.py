"""Do genre requests in Chinese find the right movies? MiniLM against the rebuilt multilingual-e5-small.

A measurement, not a test: `python -m llmrec.evaluation.multilingual` (LLMREC_HOME must hold the
prepared `demo` catalog). Each encoder embeds the demo catalog's movies exactly as the index does
(`ItemRecord.render`: "Movie: Title. Year: …. Genres: …."), and each of 8 genre requests, in English
and in Chinese, retrieves its exact top 10 by cosine among the movies alone (the movie scene's
index). A request passes when at least 6 of its 10 movies carry the asked MovieLens genre.

Encoders: `minilm` (all-MiniLM-L6-v2), `e5` (multilingual-e5-small with its prompts: "query: " on
requests, "passage: " on movies), `e5-no-prompt` (the same model as the serving `Encoder` calls it:
plain `encode`, no prefix) and `minilm-rewrite` (the other way the issue names: the packaged intent
LLM rewrites each Chinese request into an English search query, greedy, one thread as the intent
backend runs, then MiniLM retrieves; the median rewrite time is reported). Throughput is movie texts per second in the
catalog pass, at the serving batch size and max_seq_length (`EncoderConfig` defaults), on CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrec.config import EncoderConfig

TOP_K = 10
PASS_AT = 6  # of TOP_K movies with the asked genre


@dataclass(frozen=True)
class GenreRequest:
    genre: str  # the MovieLens genre the request asks for
    english: str
    chinese: str


REQUESTS = (
    GenreRequest("Horror", "I want a scary ghost film", "我想看一部吓人的鬼片"),
    GenreRequest("Romance", "a light romantic comedy", "来点轻松的爱情喜剧电影"),
    GenreRequest("War", "a war movie about soldiers in battle", "一部关于士兵作战的战争片"),
    GenreRequest("Animation", "an animated cartoon for my kids", "给孩子们看的动画片"),
    GenreRequest("Sci-Fi", "a science fiction film set in outer space", "一部发生在外太空的科幻电影"),
    GenreRequest("Western", "a western with cowboys and gunfights", "有牛仔和枪战的西部片"),
    GenreRequest("Musical", "a musical full of singing and dancing", "一部载歌载舞的歌舞片"),
    GenreRequest("Crime", "a tense crime thriller about gangsters", "一部关于黑帮的紧张犯罪惊悚片"),
)
LANGUAGES = ("english", "chinese")
SHORT = {"english": "en", "chinese": "zh"}


@dataclass(frozen=True)
class EncoderVariant:
    name: str
    spec: str  # for resolve_model
    query_prompt: str | None  # a prompt name in the model's prompts, or None for plain encode
    document_prompt: str | None
    rewrite: bool = False  # Chinese requests rewritten into English by the intent LLM first


ENCODERS = {
    "minilm": EncoderVariant("minilm", "all-MiniLM-L6-v2", None, None),
    "e5": EncoderVariant("e5", "multilingual-e5-small", "query", "passage"),
    "e5-no-prompt": EncoderVariant("e5-no-prompt", "multilingual-e5-small", None, None),
    "minilm-rewrite": EncoderVariant("minilm-rewrite", "all-MiniLM-L6-v2", None, None, rewrite=True),
}
REWRITE_PROMPT = "Rewrite the request to a recommender as a short English search query (genre and topic words). Answer with the query only."
REWRITE_EXAMPLES = (("80年代的香港警匪片，不要爱情片", "1980s Hong Kong cop and gangster film, not romance"), ("适合跳舞的英文歌", "English dance songs"))


def rewrite_into_english(queries: list[str]) -> tuple[list[str], float]:
    """Each request rewritten by the packaged intent model (IntentConfig's), and the median seconds per rewrite."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.config import IntentConfig
    from llmrec.data.assets import resolve_model

    config = IntentConfig()
    torch.set_num_threads(config.threads or torch.get_num_threads())
    path = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out, seconds = [], []
    for query in queries:
        messages = [{"role": "system", "content": REWRITE_PROMPT}]
        for request, answer in REWRITE_EXAMPLES:
            messages += [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": query})
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        started = time.perf_counter()
        with torch.inference_mode():
            generated = model.generate(ids, max_new_tokens=24, do_sample=False)
        seconds.append(time.perf_counter() - started)
        out.append(tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True).strip())
    return out, float(np.median(seconds))



def demo_movies(catalog_name: str = "demo") -> tuple[list[str], list[set[str]]]:
    """The movie scene's texts, as the index embeds them, and each movie's genres."""
    from llmrec.data.catalog import load_catalog
    from llmrec.data.items import items_from_catalog

    records = [r for r in items_from_catalog(load_catalog(catalog_name)).values() if r.scene == "movie"]
    return [r.render() for r in records], [set(r.attributes.get("genres", [])) for r in records]


def _load(spec: str, config: EncoderConfig):
    from sentence_transformers import SentenceTransformer

    from llmrec.data.assets import resolve_model

    model = SentenceTransformer(resolve_model(spec), device="cpu", local_files_only=True)
    model.max_seq_length = min(config.max_seq_length, model.max_seq_length or 512)
    return model


def evaluate_encoder(variant: EncoderVariant, texts: list[str], genres: list[set[str]], config: EncoderConfig | None = None) -> dict[str, Any]:
    """Genre hits in the top 10 for every request in both languages, and the catalog pass's speed."""
    config = config or EncoderConfig()
    model = _load(variant.spec, config)
    encode = {"batch_size": config.batch_size, "normalize_embeddings": True, "convert_to_numpy": True}
    model.encode(texts[: config.batch_size], prompt_name=variant.document_prompt, **encode)  # warm-up
    started = time.perf_counter()
    movies = model.encode(texts, prompt_name=variant.document_prompt, **encode)
    texts_per_s = len(texts) / (time.perf_counter() - started)
    rows = []
    rewrite_s = None
    for language in LANGUAGES:
        queries = [getattr(r, language) for r in REQUESTS]
        searched = queries
        if variant.rewrite and language != "english":
            searched, rewrite_s = rewrite_into_english(queries)
        vectors = model.encode(searched, prompt_name=variant.query_prompt, **encode)
        top = np.argsort(-(vectors @ movies.T), axis=1)[:, :TOP_K]
        for request, query, text, ranked in zip(REQUESTS, queries, searched, top):
            hits = sum(request.genre in genres[i] for i in ranked)
            row = {"language": language, "genre": request.genre, "request": query, "hits": int(hits), "passed": hits >= PASS_AT, "top": [texts[i] for i in ranked[:3]]}
            rows.append({**row, "searched": text} if text != query else row)
    passes = {language: sum(r["passed"] for r in rows if r["language"] == language) for language in LANGUAGES}
    report = {"encoder": variant.name, "model": variant.spec, "passes": passes, "texts_per_s": round(texts_per_s, 1), "requests": rows}
    return {**report, "rewrite_s": round(rewrite_s, 2)} if rewrite_s is not None else report


def run(encoders: list[str], catalog_name: str = "demo") -> dict[str, Any]:
    texts, genres = demo_movies(catalog_name)
    started = time.perf_counter()
    results = [evaluate_encoder(ENCODERS[name], texts, genres) for name in encoders]
    return {"catalog": catalog_name, "movies": len(texts), "top_k": TOP_K, "pass_at": PASS_AT, "seconds": round(time.perf_counter() - started, 1), "results": results}


def markdown(report: dict[str, Any]) -> str:
    n = len(REQUESTS)
    lines = [
        f"Genre requests passing (≥ {report['pass_at']} of the top {report['top_k']} among {report['movies']:,} {report['catalog']} movies have the genre)",
        "",
        "| encoder | English | Chinese | movie texts/s | rewrite s/request (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        rewrite = f"{r['rewrite_s']:.2f}" if "rewrite_s" in r else "-"
        lines.append(f"| {r['encoder']} | {r['passes']['english']}/{n} | {r['passes']['chinese']}/{n} | {r['texts_per_s']:.0f} | {rewrite} |")
    header = " | ".join(f"{r['encoder']} {SHORT[lang]}" for r in report["results"] for lang in LANGUAGES)
    lines += ["", "Genre hits in the top 10, per request:", "", f"| genre | {header} |", "| --- |" + " --- |" * (2 * len(report["results"]))]
    for i, request in enumerate(REQUESTS):
        cells = [str(r["requests"][j * n + i]["hits"]) for r in report["results"] for j in range(len(LANGUAGES))]
        lines.append(f"| {request.genre} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrec.evaluation.multilingual", description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default=",".join(ENCODERS), help=f"comma-separated, from {', '.join(ENCODERS)}")
    parser.add_argument("--catalog", default="demo")
    parser.add_argument("--json", action="store_true", help="the full report, with each request's top 3 movies")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ENCODERS))
    if unknown:
        parser.error(f"unknown encoders {unknown}; choose from {', '.join(ENCODERS)}")
    report = run(names, args.catalog)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else f"{markdown(report)}\n\n{report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
