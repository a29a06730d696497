from wsdal_wsi.cli._console import RichProgress
from wsdal_wsi.progress import NULL_PROGRESS


def test_null_progress_accepts_the_protocol():
    with NULL_PROGRESS.task("x", total=3) as task:
        task.advance()
        task.update(status="loss 0.1", total=4, completed=2)


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
