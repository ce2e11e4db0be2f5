"""The ``attemptctl`` command line: one thin function per command.

Each command parses its options, calls ONE library function and renders the result with rich.
Heavy imports (torch, transformers) happen inside command bodies so ``attemptctl --help`` is fast.
Errors the user can fix are one line on stderr with exit code 1; usage errors exit 2 (Typer).
"""

from __future__ import annotations

import warnings

# Importing the command modules registers their commands on the apps.
from attemptctl.cli import attn, evaluation, registry_commands, tasks, training  # noqa: F401
from attemptctl.cli.common import app, err

__all__ = ["app", "main"]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False)


def main() -> None:
    warnings.showwarning = _show_warning
    app()
