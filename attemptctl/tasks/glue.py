"""GLUE tasks (hub id ``glue``), with T5's label words in Hugging Face label-index order."""

from __future__ import annotations

from attemptctl.tasks.base import Row, Task


def stsb_target(row: Row) -> tuple[str, ...]:
    """STS-B's score as text, rounded to 0.2 steps as T5 does (not 0.1: ATTEMPT's bug)."""
    score = row["label"]
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 5:
        raise ValueError(f"label must be a similarity score in 0..5, got {score!r}")
    return (f"{round(score * 5) / 5:.1f}",)


TASKS = (
    # MNLI's official dev is the mismatched half, its test the matched half (paper protocol).
    Task("mnli", "glue", "mnli", ("premise", "hypothesis"),
         ("entailment", "neutral", "contradiction"), ("accuracy",),
         dev_split="validation_mismatched", test_split="validation_matched"),
    Task("qqp", "glue", "qqp", ("question1", "question2"),
         ("not_duplicate", "duplicate"), ("f1", "accuracy")),
    Task("qnli", "glue", "qnli", ("question", "sentence"),
         ("entailment", "not_entailment"), ("accuracy",)),
    Task("sst2", "glue", "sst2", ("sentence",), ("negative", "positive"), ("accuracy",)),
    Task("rte", "glue", "rte", ("sentence1", "sentence2"),
         ("entailment", "not_entailment"), ("accuracy",)),
    Task("mrpc", "glue", "mrpc", ("sentence1", "sentence2"),
         ("not_equivalent", "equivalent"), ("f1", "accuracy")),
    Task("wnli", "glue", "wnli", ("sentence1", "sentence2"),
         ("not_entailment", "entailment"), ("accuracy",)),
    Task("cola", "glue", "cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews",)),
    Task("stsb", "glue", "stsb", ("sentence1", "sentence2"), None, ("pearson", "spearman"),
         answers_of=stsb_target),
)
