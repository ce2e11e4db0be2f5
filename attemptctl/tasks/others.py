"""The paper's other targets, outside GLUE and SuperGLUE.

IMDB, Yelp and Amazon are the three small sets of "Sentiment Labelled Sentences" (Kotzias et al.,
KDD 2015): 1,000 review sentences each (movies, restaurants, products). They are not on the hub under
this name: ``--data-dir`` must hold ``sentiment_labelled_sentences/{imdb,yelp,amazon}/{train,validation}.jsonl``
(rows ``{"sentence": ..., "label": 0|1}``). The collection has no split; the offline data here (IMDB
and Yelp) was shuffled with seed 13 and split 600 / 400, and docs/tasks.md says how to make Amazon's
files the same way. With the SST-2 source in the zoo they are the cleanest
transfer targets this project has (a new domain, a known skill).

SciTail and WinoGrande keep string labels on the hub (``"entailment"``, ``"1"``); ``label_map``
turns them into indices. WinoGrande is a choice between its two options, both shown (the
paper's code showed option1 twice).
"""

from __future__ import annotations

from attemptctl.tasks.base import Task

TASKS = (
    Task("amazon", "sentiment_labelled_sentences", "amazon", ("sentence",), ("negative", "positive"), ("accuracy",)),
    Task("imdb", "sentiment_labelled_sentences", "imdb", ("sentence",), ("negative", "positive"), ("accuracy",)),
    Task("yelp", "sentiment_labelled_sentences", "yelp", ("sentence",), ("negative", "positive"), ("accuracy",)),
    Task("yelp_polarity", "yelp_polarity", "plain_text", ("text",),
         ("negative", "positive"), ("accuracy",)),
    Task("paws", "paws", "labeled_final", ("sentence1", "sentence2"),
         ("not_paraphrase", "paraphrase"), ("accuracy",)),
    # snli_format, not tsv_format: its gold_label words are "entailment"/"neutral" as T5 says them.
    Task("scitail", "scitail", "snli_format", ("sentence1", "sentence2"),
         ("entailment", "neutral"), ("accuracy",),
         label_field="gold_label", label_map={"entailment": 0, "neutral": 1}),
    Task("winogrande", "winogrande", "winogrande_xl", ("sentence", "option1", "option2"),
         ("option1", "option2"), ("accuracy",),
         label_field="answer", label_map={"1": 0, "2": 1}),
)
