"""Fine-tuning the encoder and the reranker, as plain torch (no Ray here).

`pairs` turns a catalog and its cold-item split into training pairs and a validation set with the
exact texts serving renders; `model` and `losses` are the two-tower encoder, the cross-encoder and
their objectives; `loop` is the per-worker training loop body (any launcher: Ray Train's
TorchTrainer in `train/`, or a plain process); `export` writes the model directories and their
cards.
Nothing is imported here eagerly, so a GPU box without pydantic can import `loop` alone.
"""
