"""The ``attemptctl`` command line: one thin function per command.

Each command parses its options, calls ONE library function and renders the result with rich.
Heavy imports (torch, transformers) happen inside command bodies so ``attemptctl --help`` is fast.
Every command runs under the error contract of docs/errors.md (``common.call``): errors the user
can fix are one line on stderr with exit code 1, usage errors exit 2 (Typer), and anything
unexpected exits 70 with one line naming the file that holds the traceback.
"""

from __future__ import annotations

import functools
import warnings

import typer

# Importing the command modules registers their commands on the apps.
from attemptctl.cli import attn, eval, predict, registry, serve, source, study, target, task  # noqa: F401
from attemptctl.cli.app import app, call, err

__all__ = ["app", "main"]


def _guarded(command):
    """The command body itself under ``call``, so code outside a command's own ``call`` (rendering,
    option handling) cannot end in a raw traceback either."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        return call(command, *args, **kwargs)

    return run


def _guard_commands(group: typer.Typer) -> None:
    for info in group.registered_commands:
        if info.callback is not None and not hasattr(info.callback, "__wrapped__"):
            info.callback = _guarded(info.callback)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _guard_commands(sub.typer_instance)


_guard_commands(app)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False)


def main() -> None:
    warnings.showwarning = _show_warning
    app()
