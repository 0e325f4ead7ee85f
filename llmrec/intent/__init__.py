"""Free text → a schema-validated `Intent`: prompt, backends, answer repair, rules, cache, scene signal.

`parser.IntentParser` is the entry point; `evaluation` scores it on the packaged labelled cases.
"""
