"""What every command shares: the Typer apps, the consoles, the workspace, and the error contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

T = TypeVar("T")

app = typer.Typer(help="ATTEMPT: modular multi-task tuning of a frozen LM with attentional mixtures of soft prompts.",
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="rich")
source_app = typer.Typer(help="Train source prompts (prompt tuning on a large task).", no_args_is_help=True)
target_app = typer.Typer(help="Train target prompts that mix source prompts through attention.", no_args_is_help=True)
attn_app = typer.Typer(help="Inspect the attention of targets over their sources.", no_args_is_help=True)
registry_app = typer.Typer(help="List, show, remove, verify and back up registered prompts.", no_args_is_help=True)
task_app = typer.Typer(help="The task catalogue.", no_args_is_help=True)
app.add_typer(source_app, name="source")
app.add_typer(target_app, name="target")
app.add_typer(attn_app, name="attn")
app.add_typer(registry_app, name="registry")
app.add_typer(task_app, name="task")

out = Console()
err = Console(stderr=True)

def workspace(registry: Path | None, data_dir: Path | None = None, backbone: str | None = None, *,
              device: str = "auto", precision: str = "fp32", eval_batch_size: int | None = None,
              existing: bool = False):
    """The workspace a command works in; ``device``/``precision``/``eval_batch_size``: how its LM runs;
    ``existing``: the command only reads prompts, so a path without a registry is refused, never created."""
    from attemptctl.method.runtime import Runtime
    from attemptctl.workflows.workspace import Workspace, default_registry_path

    return Workspace(registry_path=registry or default_registry_path(), data_dir=data_dir, backbone=backbone,
                     runtime=Runtime(device=device, precision=precision, eval_batch_size=eval_batch_size),
                     existing=existing)


# Exit codes: see docs/errors.md. EX_SOFTWARE (sysexits.h) marks a bug, not a user mistake.
EXIT_ERROR, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 70, 130


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a library function under the error contract of docs/errors.md.

    Errors a user can fix: one line, exit 1. Anything unexpected: one line naming the file that
    holds the traceback, exit 70. Typer's own exits and usage errors (exit 2) pass through.
    """
    from attemptctl.errors import AttemptError
    from registry import RegistryError

    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except (AttemptError, RegistryError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # noqa: BLE001 - the contract: never a raw traceback
        report = write_crash_report(exc)
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {_first_line(exc)} — this is a bug in "
                  f"attemptctl; the full traceback is in {report}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_BUG) from None


def require_matplotlib() -> None:
    """A PNG export without matplotlib: one line with the install hint, exit 1, before any work is done."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from rich.markup import escape

        from attemptctl.cli.render import PLOT_EXTRA_HINT

        err.print(f"[bold red]error:[/] {escape(PLOT_EXTRA_HINT)}", highlight=False)  # "[plot]" is not markup
        raise typer.Exit(EXIT_ERROR) from None


def write_crash_report(exc: BaseException) -> Path:
    """``crash-<UTC time>-<pid>.txt`` under ``$ATTEMPTCTL_CACHE`` (or ``~/.cache/attemptctl``), else the tempdir."""
    import os
    import sys
    import tempfile
    import traceback
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    text = (f"attemptctl crash at {stamp}\ncommand: {' '.join(sys.argv)}\npython: {sys.version}\n\n"
            + "".join(traceback.format_exception(exc)))
    cache = Path(os.environ.get("ATTEMPTCTL_CACHE") or Path.home() / ".cache" / "attemptctl")
    for folder in (cache, Path(tempfile.gettempdir())):
        path = folder / f"crash-{stamp}-{os.getpid()}.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return Path("(nowhere: neither the cache folder nor the temp folder is writable)")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "(no message)"



def exit_if_interrupted(result) -> None:
    """An interrupted run has registered its best prompt and checkpointed; it still exits 130."""
    if result is not None and result.interrupted:
        raise typer.Exit(130)
