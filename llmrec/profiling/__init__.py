"""LLM item profiles: the prompt and its reading (profile.py), batched generation (generate.py), the
profiler that joins them (profiler.py), the resumable book of written profiles (book.py) and the
background worker that profiles items written without a title (worker.py)."""
