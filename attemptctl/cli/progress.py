"""Live progress of training and of a study: a progress bar and a line per dev evaluation or cell."""

from __future__ import annotations

from typing import Any

from attemptctl.cli.app import err


class TrainProgress:
    """Renders training events: a progress bar with loss, examples/s and ETA; a line per dev evaluation."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[speed]:.1f} ex/s"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
        self.bar = None
        self.seen = 0

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, event: str, **data: Any) -> None:
        if event == "start":
            self.bar = self.progress.add_task("training", total=data["total"], completed=data.get("resumed_at", 0),
                                              loss=float("nan"), speed=0.0)
        elif event == "step":
            self.seen += data["examples"]
            elapsed = self.progress.tasks[0].elapsed or 1e-9
            loss = {} if data["loss"] is None else {"loss": data["loss"]}  # None: not synced this step (GPU)
            self.progress.update(self.bar, advance=1, speed=self.seen / elapsed, **loss)
        elif event == "eval":
            marks = " ".join(f"{task}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()) for task, m in data["dev"].items())
            self.progress.console.print(f"step {data['step']}: dev {marks}" + ("  [green]best[/]" if data["improved"] else ""))
        elif event == "interrupted":
            where = f"; checkpoint {data['checkpoint']} (continue with --resume)" if data.get("checkpoint") else ""
            self.progress.console.print(f"interrupted at step {data['step']}; keeping the best prompt so far{where}")


class StudyProgress:
    """One line per finished cell; a transient bar for the cell in training."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), console=err,
                                 transient=True)
        self.bar, self.label = None, "training"

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    @staticmethod
    def _name(cells) -> str:
        first = cells[0]
        return str(first) if len(cells) == 1 else str(first).replace(first.target, "+".join(c.target for c in cells), 1)

    def cell(self, event: str, cells, index: int, total: int, **data: Any) -> None:
        self.label = f"[{index}/{total}] {self._name(cells)}"
        if event == "done":
            scores = ", ".join(f"{ref} {metric} {100 * value:.1f}" for ref, metric, value in data["scores"])
            self.progress.console.print(f"{self.label}: test {scores}", highlight=False)

    def __call__(self, event: str, **data: Any) -> None:
        if event == "start":
            if self.bar is not None:
                self.progress.remove_task(self.bar)
            self.bar = self.progress.add_task(self.label, total=data["total"], completed=data.get("resumed_at", 0),
                                              loss=float("nan"))
        elif event == "step":
            self.progress.update(self.bar, advance=1, **({} if data["loss"] is None else {"loss": data["loss"]}))
        elif event == "interrupted":
            where = f"; checkpoint {data['checkpoint']} (continue with --resume)" if data.get("checkpoint") else ""
            self.progress.console.print(f"{self.label}: interrupted at step {data['step']}{where}", highlight=False)
