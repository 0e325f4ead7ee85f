"""Do genre requests in Chinese find the right movies? The served pipeline, and the encoders alone.

A measurement, not a test: `python -m llmrec.evaluation.multilingual` (LLMREC_HOME must hold the
prepared `demo` catalog and the packaged intent model). Genre requests, in English and in Chinese,
in two sets: `dev`, the 8 read while designing the category pull (llmrec/serving/understanding.py),
and `held-out`, 9 written before any result on them. A request passes when at least 6 of its 10
movies carry the asked MovieLens genre.

Variants:
- `served`: the default profile (`local`: the intent LLM on, the shipped blend) answering each
  request as `/v1/recommend` does, in process (`Recommender`), with no scene given; an answer from
  another scene has no hits. `served-no-pull`: the same with `understand.category_pull=0`.
- the encoders alone: each embeds the demo catalog's movies exactly as the index does
  (`ItemRecord.render`) and takes each request's exact top 10 by cosine among the movies.
  `minilm` (all-MiniLM-L6-v2), `e5` (multilingual-e5-small with its prompts: "query: " on
  requests, "passage: " on movies), `e5-no-prompt` (as the serving `Encoder` calls it: plain
  `encode`) and `minilm-rewrite` (the packaged intent LLM rewrites each Chinese request into an
  English search query, greedy, one thread as the intent backend runs, then MiniLM retrieves; the
  median rewrite time is reported). Throughput is movie texts per second in the catalog pass, at
  the serving batch size and max_seq_length (`EncoderConfig` defaults), on CPU.
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
# Written after the requests above had been read while designing the category pull
# (llmrec/serving/understanding.py) and before any result on these: the held-out check.
HELD_OUT = (
    GenreRequest("Comedy", "a hilarious comedy that will make me laugh out loud", "一部让我捧腹大笑的喜剧"),
    GenreRequest("Documentary", "a documentary about real events and real people", "一部讲述真实事件的纪录片"),
    GenreRequest("Thriller", "a suspenseful thriller that keeps me on the edge of my seat", "一部让人紧张到坐立不安的惊悚片"),
    GenreRequest("Children's", "a film the whole family can watch with young children", "适合全家和小朋友一起看的儿童电影"),
    GenreRequest("Fantasy", "a fantasy adventure with magic and dragons", "有魔法和巨龙的奇幻电影"),
    GenreRequest("Action", "an action movie with explosions and car chases", "有爆炸和飞车追逐的动作片"),
    GenreRequest("Mystery", "a detective mystery where you have to guess the killer", "一部猜凶手的侦探推理片"),
    GenreRequest("Adventure", "an adventure film about a treasure hunt in the jungle", "一部在丛林里寻宝的冒险片"),
    GenreRequest("Film-Noir", "a black and white film noir with a femme fatale", "有蛇蝎美人的黑白黑色电影"),
)
# Requests that name no genre: the pull should change their answers little.
NEUTRAL = (
    "something good for tonight",
    "what should I watch this weekend",
    "a film with Tom Hanks",
    "a classic from the 70s",
    "随便推荐一部电影",
    "给我推荐几部好电影",
    "周末在家看什么电影好",
    "一部九十年代的老电影",
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


SETS = {"dev": REQUESTS, "held-out": HELD_OUT}
SERVED = ("served", "served-no-pull")
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


def _row(name: str, request: GenreRequest, language: str, hits: int, top: list[str], searched: str | None = None) -> dict[str, Any]:
    query = getattr(request, language)
    row = {"set": name, "language": language, "genre": request.genre, "request": query, "hits": int(hits), "passed": hits >= PASS_AT, "top": top[:3]}
    return {**row, "searched": searched} if searched is not None and searched != query else row


def _passes(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {f"{name} {language}": sum(r["passed"] for r in rows if (r["set"], r["language"]) == (name, language)) for name in SETS for language in LANGUAGES}


def evaluate_encoder(variant: EncoderVariant, texts: list[str], genres: list[set[str]], config: EncoderConfig | None = None) -> dict[str, Any]:
    """Genre hits in the exact top 10 for every request of both sets in both languages, and the catalog pass's speed."""
    config = config or EncoderConfig()
    model = _load(variant.spec, config)
    encode = {"batch_size": config.batch_size, "normalize_embeddings": True, "convert_to_numpy": True}
    model.encode(texts[: config.batch_size], prompt_name=variant.document_prompt, **encode)  # warm-up
    started = time.perf_counter()
    movies = model.encode(texts, prompt_name=variant.document_prompt, **encode)
    texts_per_s = len(texts) / (time.perf_counter() - started)
    rewritten, rewrite_s = {}, None
    if variant.rewrite:  # every Chinese request of both sets in one pass: the model loads once
        chinese = [r.chinese for requests in SETS.values() for r in requests]
        english, rewrite_s = rewrite_into_english(chinese)
        rewritten = dict(zip(chinese, english))
    rows = []
    for name, requests in SETS.items():
        for language in LANGUAGES:
            searched = [rewritten.get(getattr(r, language), getattr(r, language)) for r in requests]
            vectors = model.encode(searched, prompt_name=variant.query_prompt, **encode)
            top = np.argsort(-(vectors @ movies.T), axis=1)[:, :TOP_K]
            for request, text, ranked in zip(requests, searched, top):
                rows.append(_row(name, request, language, sum(request.genre in genres[i] for i in ranked), [texts[i] for i in ranked], text))
    report = {"variant": variant.name, "model": variant.spec, "passes": _passes(rows), "texts_per_s": round(texts_per_s, 1), "requests": rows}
    return {**report, "rewrite_s": round(rewrite_s, 2)} if rewrite_s is not None else report


def evaluate_served(name: str, catalog_name: str) -> dict[str, Any]:
    """Genre hits in what the default profile answers each request with (the scene left to the
    pipeline), the category pull on or off; and the median seconds per answer."""
    import tempfile

    from llmrec.config import load_config
    from llmrec.serving.recommender import Recommender
    from llmrec.serving.schemas import RecommendRequest

    overrides = [f"catalog={catalog_name}"] + (["understand.category_pull=0"] if name == "served-no-pull" else [])
    rows, seconds = [], []
    with tempfile.TemporaryDirectory() as state:
        recommender = Recommender(load_config("local", [*overrides, f"store.url=sqlite:///{state}/state.db"]))
        for set_name, requests in SETS.items():
            for language in LANGUAGES:
                for request in requests:
                    started = time.perf_counter()
                    response = recommender.recommend(RecommendRequest(query=getattr(request, language), k=TOP_K))
                    seconds.append(time.perf_counter() - started)
                    hits = sum(response.scene == "movie" and request.genre in item.attributes.get("genres", []) for item in response.items)
                    rows.append(_row(set_name, request, language, hits, [f"{item.title} ({response.scene})" for item in response.items]))
        neutral = {query: [item.item_id for item in recommender.recommend(RecommendRequest(query=query, k=TOP_K)).items] for query in NEUTRAL}
    report = {"variant": name, "model": "default profile", "passes": _passes(rows), "seconds_per_request": round(float(np.median(seconds)), 2), "requests": rows}
    return {**report, "neutral": neutral}


def neutral_overlap(results: list[dict[str, Any]]) -> dict[str, int] | None:
    """Per request naming no genre, how many of its items the pull left in place (both served variants run)."""
    answers = {r["variant"]: r["neutral"] for r in results if "neutral" in r}
    if set(answers) != set(SERVED):
        return None
    return {query: len(set(answers["served"][query]) & set(answers["served-no-pull"][query])) for query in NEUTRAL}


def run(variants: list[str], catalog_name: str = "demo") -> dict[str, Any]:
    texts, genres = demo_movies(catalog_name)
    started = time.perf_counter()
    results = [evaluate_served(name, catalog_name) if name in SERVED else evaluate_encoder(ENCODERS[name], texts, genres) for name in variants]
    seconds = round(time.perf_counter() - started, 1)
    return {"catalog": catalog_name, "movies": len(texts), "top_k": TOP_K, "pass_at": PASS_AT, "seconds": seconds, "results": results, "neutral_overlap": neutral_overlap(results)}


def markdown(report: dict[str, Any]) -> str:
    sizes = {name: len(requests) for name, requests in SETS.items()}
    columns = [f"{name} {language}" for name in SETS for language in LANGUAGES]
    lines = [
        f"Genre requests passing (≥ {report['pass_at']} of the top {report['top_k']} among {report['movies']:,} {report['catalog']} movies have the genre)",
        "",
        f"| variant | {' | '.join(columns)} | movie texts/s | rewrite s/request (median) |",
        "| --- |" + " --- |" * (len(columns) + 2),
    ]
    for r in report["results"]:
        passes = " | ".join(f"{r['passes'][c]}/{sizes[c.rsplit(' ', 1)[0]]}" for c in columns)
        speed = f"{r['texts_per_s']:.0f}" if "texts_per_s" in r else f"{r['seconds_per_request']:.2f} s/request"
        lines.append(f"| {r['variant']} | {passes} | {speed} | {r.get('rewrite_s', '-')} |")
    header = " | ".join(f"{r['variant']} {SHORT[lang]}" for r in report["results"] for lang in LANGUAGES)
    lines += ["", "Genre hits in the top 10, per request:", "", f"| set | genre | {header} |", "| --- | --- |" + " --- |" * (2 * len(report["results"]))]
    for name, requests in SETS.items():
        for request in requests:
            cells = [str(row["hits"]) for r in report["results"] for lang in LANGUAGES for row in r["requests"] if (row["set"], row["language"], row["genre"]) == (name, lang, request.genre)]
            lines.append(f"| {name} | {request.genre} | " + " | ".join(cells) + " |")
    overlap = report.get("neutral_overlap")
    if overlap:
        lines += ["", f"Requests that name no genre, items of the top {report['top_k']} the same with and without the pull:", "", "| request | same |", "| --- | --- |"]
        lines += [f"| {query} | {same} |" for query, same in overlap.items()]
        lines.append(f"| mean | {np.mean(list(overlap.values())):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrec.evaluation.multilingual", description=__doc__.split("\n")[0])
    choices = [*SERVED, *ENCODERS]
    parser.add_argument("--variants", default=",".join(choices), help=f"comma-separated, from {', '.join(choices)}")
    parser.add_argument("--catalog", default="demo")
    parser.add_argument("--json", action="store_true", help="the full report, with each request's top 3")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(choices))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(choices)}")
    report = run(names, args.catalog)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else f"{markdown(report)}\n\n{report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
