"""Console output for the CLI: rich consoles and a rich-backed progress reporter.

Only the CLI prints. Library code reports progress through
:class:`wsdal_wsi.progress.Progress`; :class:`RichProgress` implements it with
rich bars (one per task, with a live status field such as the loss).
"""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as _RichBars

__all__ = ["RichProgress", "err_console", "out_console"]

#: Console for results (stdout).
out_console = Console()
#: Console for messages and progress (stderr), so stdout stays parseable (``--json``).
err_console = Console(stderr=True)


class _RichTask:
    def __init__(self, bars: _RichBars, task_id: Any, lock: threading.Lock) -> None:
        self._bars = bars
        self._id = task_id
        self._lock = lock

    def advance(self, amount: float = 1.0) -> None:
        with self._lock:
            self._bars.advance(self._id, amount)

    def update(
        self,
        *,
        status: str | None = None,
        total: float | None = None,
        completed: float | None = None,
    ) -> None:
        fields: dict[str, Any] = {}
        if status is not None:
            fields["status"] = status
        if total is not None:
            fields["total"] = total
        if completed is not None:
            fields["completed"] = completed
        with self._lock:
            self._bars.update(self._id, **fields)

    def close(self) -> None:
        with self._lock:
            task = self._bars._tasks.get(self._id)
            if task is not None and task.total is not None:
                self._bars.update(self._id, completed=task.total)
            self._bars.stop_task(self._id)

    def __enter__(self) -> _RichTask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RichProgress:
    """A :class:`wsdal_wsi.progress.Progress` drawing rich bars on stderr.

    Use as a context manager around the work::

        with RichProgress() as progress:
            run_something(progress=progress)
    """

    def __init__(self, *, console: Console | None = None, transient: bool = False) -> None:
        self._bars = _RichBars(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console or err_console,
            transient=transient,
        )
        self._lock = threading.Lock()

    def task(self, description: str, *, total: float | None = None) -> _RichTask:
        with self._lock:
            task_id = self._bars.add_task(description, total=total, status="")
        return _RichTask(self._bars, task_id, self._lock)

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()
