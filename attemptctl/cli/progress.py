"""Live progress of training and of a study: one renderer of training events, and a study's cell lines."""

from __future__ import annotations

from typing import Any

from attemptctl.cli.app import err
from attemptctl.cli.render import dev_summary
from attemptctl.formatting import percent


def off_curve_note(steps: list[int], shown: int = 5) -> str:
    """The line naming the dev checks a learning curve skips (the first ``shown`` of many, and their count)."""
    many = len(steps) > 1
    listed = ", ".join(map(str, steps[:shown])) + (f", … ({len(steps)} in all)" if len(steps) > shown else "")
    return (f"note: dev check{'s' if many else ''} at step{'s' if many else ''} {listed} "
            f"{'are not curve steps' if many else 'is not a curve step'}; a state kept there scores off the "
            f"learning curve (make --curve-steps list the --eval-every steps)")


class TrainProgress:
    """Renders training events: a progress bar with loss, examples/s and ETA; a line per dev evaluation.

    ``transient``: the bar disappears when the run ends and dev lines are not printed (a study's cell,
    which prints one line of its own when done); its messages then start with the bar's label.
    """

    def __init__(self, *, transient: bool = False) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = [TextColumn("{task.description}" if transient else "[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TextColumn("loss {task.fields[loss]:.3f}"),
                   TextColumn("{task.fields[speed]:.1f} ex/s"), TimeElapsedColumn()]
        self.progress = Progress(*columns, *([] if transient else [TimeRemainingColumn()]), console=err,
                                 transient=transient)
        self.transient = transient
        self.label = "training"
        self.bar = None
        self.seen = 0

    def __enter__(self):
        return self  # the bar starts with the run: an error before it (unknown task, bad data) stays one line

    def __exit__(self, *exc):
        if self.progress.live.is_started:
            self.progress.stop()

    def __call__(self, event: str, **data: Any) -> None:
        if event == "start":
            if not self.progress.live.is_started:
                self.progress.start()
            if self.bar is not None:  # the next run of a study: one bar at a time
                self.progress.remove_task(self.bar)
            self.bar = self.progress.add_task(self.label, total=data["total"], completed=data.get("resumed_at", 0),
                                              loss=float("nan"), speed=0.0)
            self.seen = 0
            if data.get("off_curve"):
                self.progress.console.print(("" if not self.transient else f"{self.label}: ")
                                            + off_curve_note(data["off_curve"]), highlight=False)
        elif event == "step":
            self.seen += data["examples"]
            elapsed = self.progress.tasks[-1].elapsed or 1e-9
            loss = {} if data["loss"] is None else {"loss": data["loss"]}  # None: not synced this step (GPU)
            self.progress.update(self.bar, advance=1, speed=self.seen / elapsed, **loss)
        elif event == "eval" and not self.transient:
            self.progress.console.print(f"step {data['step']}: {dev_summary(data['dev'], data.get('examples'))}"
                                        + ("  [green]best[/]" if data["improved"] else ""), highlight=False)
        elif event == "curve" and not self.transient:
            self.progress.console.print(f"step {data['step']}: {dev_summary(data['test'], data['examples'], 'test')}"
                                        "  (learning curve)", highlight=False)
        elif event == "interrupted":
            where = f"; checkpoint {data['checkpoint']} (continue with --resume)" if data.get("checkpoint") else ""
            if self.transient:
                self.progress.console.print(f"{self.label}: interrupted at step {data['step']}{where}", highlight=False)
            else:
                self.progress.console.print(f"interrupted at step {data['step']}; keeping the best prompt so far{where}")


class StudyProgress:
    """One line per finished cell; a transient bar (a :class:`TrainProgress`) for the cell in training."""

    def __init__(self) -> None:
        self.training = TrainProgress(transient=True)

    def __enter__(self):
        self.training.__enter__()
        return self

    def __exit__(self, *exc):
        self.training.__exit__(*exc)

    def __call__(self, event: str, **data: Any) -> None:
        self.training(event, **data)

    @staticmethod
    def _name(cells) -> str:
        first = cells[0]
        return str(first) if len(cells) == 1 else str(first).replace(first.target, "+".join(c.target for c in cells), 1)

    def cell(self, event: str, cells, index: int, total: int, **data: Any) -> None:
        self.training.label = f"[{index}/{total}] {self._name(cells)}"
        if event == "done":
            scores = ", ".join(_test_score(*score) for score in data["scores"])
            self.training.progress.console.print(f"{self.training.label}: test {scores}", highlight=False)


def _test_score(ref: str, metric: str, value: float, examples: int | None = None) -> str:
    """A finished cell's test score, with the rows it was measured on when the study gives them."""
    return f"{ref} {metric} {percent(value)}" + (f" on {examples:,} rows" if examples is not None else "")
