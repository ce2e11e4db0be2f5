"""SuperGLUE tasks (hub id ``super_glue``), with T5's label words in Hugging Face label order."""

from __future__ import annotations

from attemptctl.tasks.base import Row, Task

_BOOL = ("False", "True")


def multirc_question(row: Row) -> str:
    """MultiRC rows are answer options; a question's options are scored together (exact match)."""
    idx = row["idx"]
    return f"{idx['paragraph']}-{idx['question']}"


TASKS = (
    Task("boolq", "super_glue", "boolq", ("question", "passage"), _BOOL, ("accuracy",)),
    Task("cb", "super_glue", "cb", ("premise", "hypothesis"),
         ("entailment", "contradiction", "neutral"), ("macro_f1", "accuracy")),
    Task("wic", "super_glue", "wic", ("sentence1", "sentence2", "word"), _BOOL, ("accuracy",)),
    Task("wsc", "super_glue", "wsc", ("text", "span1_text", "span2_text"), _BOOL, ("accuracy",)),
    Task("copa", "super_glue", "copa", ("premise", "question", "choice1", "choice2"),
         ("choice1", "choice2"), ("accuracy",)),
    Task("multirc", "super_glue", "multirc", ("question", "answer", "paragraph"), _BOOL,
         ("f1", "group_em"), max_length=348, group_of=multirc_question),
)
