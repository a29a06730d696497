import inspect

import pytest

from wsdal_wsi.cli._console import RichProgress
from wsdal_wsi.progress import NULL_PROGRESS, Progress, ProgressTask


def _params(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("progress", [NULL_PROGRESS, RichProgress()], ids=["null", "rich"])
def test_progress_implementations_have_the_protocols_signatures(progress):
    assert _params(type(progress).task) == _params(Progress.task)
    task = progress.task("x", total=3)
    for name in ("advance", "update", "close", "__enter__", "__exit__"):
        assert _params(getattr(type(task), name)) == _params(getattr(ProgressTask, name)), name
    task.close()


def test_null_progress_shows_nothing_and_never_swallows_an_error(capsys):
    with pytest.raises(ZeroDivisionError):
        with NULL_PROGRESS.task("x", total=3) as task:
            task.advance()
            task.update(status="loss 0.1", total=4, completed=2)
            1 / 0  # noqa: B018
    assert capsys.readouterr() == ("", "")


def test_rich_progress_tracks_counts(capsys):
    with RichProgress() as progress:
        task = progress.task("work", total=5)
        task.advance(2)
        task.update(status="loss 0.5")
        bars = progress._bars
        assert bars.tasks[0].completed == 2
        assert bars.tasks[0].fields["status"] == "loss 0.5"
        task.close()
        assert bars.tasks[0].completed == 5
