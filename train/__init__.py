"""Ray jobs over the llmrec library: fine-tune the encoder and the reranker with Ray Train's
TorchTrainer, build versioned indexes with Ray Data, and benchmark both.

Each job is a function taking a small dataclass (so the CLI, a RayJob manifest and a test call the
same thing); the training loop body itself is plain torch in `llmrec.training.loop`.
"""
