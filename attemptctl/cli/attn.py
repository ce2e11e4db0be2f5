"""`attn show`: attention heatmaps."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated

import typer

from attemptctl.cli.common import BackboneOpt, DataDirOpt, JsonOpt, RegistryOpt, attn_app, call, out, workspace

# -- attn ------------------------------------------------------------------------------------------

@attn_app.command("show")
def attn_show(
    tasks: Annotated[list[str] | None, typer.Argument(help="Targets (NAME or NAME@V); none: every target.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Average over the first N test examples.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
) -> None:
    """Heatmap of each target's mean attention to its sources and its own prompt (before the +1).

    Example: attemptctl attn show boolq
    """
    from attemptctl.reports import attention_summaries
    from attemptctl.views import AttentionRow, attention_heatmap

    summaries = call(attention_summaries, workspace(registry, data_dir, backbone), tasks or None, limit=limit)
    if as_json:
        out.print_json(json.dumps([{"prompt": s.record.ref, "examples": s.examples, "weights": s.weights} for s in summaries]))
        return
    columns = []
    for summary in summaries:
        columns += [c for c in summary.weights if c not in columns and c != "(target)"]
    columns = sorted(columns) + ["(target)"]
    # Targets trained together (one shared G) are grouped under the name of their run.
    runs = Counter(s.record.attention for s in summaries)
    rows = [AttentionRow(label=s.record.ref, weights=s.weights,
                         group=f"shared G {s.record.attention}" if runs[s.record.attention] > 1 else None)
            for s in summaries]
    out.print(attention_heatmap(rows, columns, title="Mean attention over test examples"))
