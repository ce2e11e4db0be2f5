"""The paper's other classification targets, outside GLUE and SuperGLUE.

Not here yet: SciTail and WinoGrande (their hub labels are strings such as "entails" or "1", not
class indices), ReCoRD (list-valued entities) and the MRQA sets (one hub dataset filtered by a
``subset`` field); each needs a small extension of :class:`Task` first.
"""

from __future__ import annotations

from attemptctl.tasks.base import Task

TASKS = (
    Task("yelp_polarity", "yelp_polarity", "plain_text", ("text",),
         ("negative", "positive"), ("accuracy",)),
    Task("paws", "paws", "labeled_final", ("sentence1", "sentence2"),
         ("not_paraphrase", "paraphrase"), ("accuracy",)),
)
