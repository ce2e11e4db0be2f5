"""Prompts in and out of other tools' formats, so prompts trained elsewhere can be mixed here and ours served there.

Today one format, Hugging Face PEFT's prompt tuning (:mod:`attemptctl.interop.peft`):

- in: ``attemptctl source import DIR --task NAME`` registers an adapter folder (or hub id) as a
  source prompt; its record says where it came from in ``config["origin"]``;
- out: ``attemptctl registry export REF --format peft --output DIR`` writes a folder that
  ``PeftModel.from_pretrained(base_model, DIR)`` loads.

Torch-free at import time: the CLI imports this package to export, and export needs no torch.
"""

from __future__ import annotations

from pathlib import Path

from attemptctl.errors import ConfigError

FORMATS = ("peft",)
"""Formats ``registry export --format`` writes."""


def export_prompt(ws, ref: str, output: Path, *, format: str = "peft", kind: str | None = None):
    """Write the prompt ``ref`` to the new folder ``output`` in ``format``; see :func:`attemptctl.interop.peft.export_peft`."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format '{format}'; supported: {', '.join(FORMATS)}")
    from attemptctl.interop.peft import export_peft

    return export_peft(ws, ref, output, kind=kind)
