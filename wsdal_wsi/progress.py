"""Progress reporting without printing.

Library code never prints. Long operations take a keyword-only
``progress: Progress | None`` and report through it; the CLI passes a rich
progress display (:class:`wsdal_wsi.cli._console.RichProgress`), tests and
library users pass nothing (:data:`NULL_PROGRESS`).

Usage inside the library::

    progress = progress or NULL_PROGRESS
    with progress.task("Reading tiles", total=len(tiles)) as task:
        for tile in tiles:
            ...
            task.advance()
            task.update(status=f"loss {loss:.3f}")
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NULL_PROGRESS", "NullProgress", "Progress", "ProgressTask"]


class ProgressTask(Protocol):
    """One bar: advanced as work is done; a context manager that closes it."""

    def advance(self, amount: float = 1.0) -> None:
        """Mark ``amount`` more units of work done (thread-safe)."""

    def update(
        self,
        *,
        status: str | None = None,
        total: float | None = None,
        completed: float | None = None,
    ) -> None:
        """Set the live status text (e.g. the loss), the total or the completed count."""

    def close(self) -> None:
        """Finish the bar."""

    def __enter__(self) -> ProgressTask: ...

    def __exit__(self, *exc: object) -> None: ...


class Progress(Protocol):
    """A factory of progress bars."""

    def task(self, description: str, *, total: float | None = None) -> ProgressTask:
        """Start a bar for ``total`` units of work (``None``: unknown)."""


class _NullTask:
    def advance(self, amount: float = 1.0) -> None:
        pass

    def update(
        self,
        *,
        status: str | None = None,
        total: float | None = None,
        completed: float | None = None,
    ) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NullTask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullProgress:
    """A :class:`Progress` that shows nothing."""

    def task(self, description: str, *, total: float | None = None) -> ProgressTask:
        return _NullTask()


#: The progress reporter used when the caller passes none.
NULL_PROGRESS: Progress = NullProgress()
