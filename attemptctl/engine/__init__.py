"""The engine: the one training loop, evaluation, checkpoints, batching."""
