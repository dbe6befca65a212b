import pytest
import subprocess
import sys

CODE = """
from conceptvec.progress import progress_bar
with progress_bar("item") as bar:
    task = bar.add_task("working", total=3)
    for _ in range(3):
        bar.advance(task)
print("RESULT")
"""


@pytest.mark.slow
def test_progress_bars_go_to_stderr_and_leave_stdout_to_the_results():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env={"COLUMNS": "80", "TERM": "xterm"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "RESULT\n" and "working" in done.stderr


def test_the_rate_shows_when_each_step_takes_longer_than_rich_estimates_speed_over():
    from rich.progress import Progress

    from conceptvec.progress import _RateColumn

    clock = [0.0]
    column = _RateColumn("rows")
    bar = Progress(column, get_time=lambda: clock[0], disable=True)
    task_id = bar.add_task("extract", total=10_000, completed=2_000)  # resumed: 2,000 rows done before
    bar.start_task(task_id)
    task = bar.tasks[0]
    assert str(column.render(task)) == "- rows/s"
    for _ in range(2):  # a chunk of 1,000 rows every 40 s: rich keeps no two samples within 30 s
        clock[0] += 40.0
        bar.advance(task_id, 1_000)
    assert task.speed is None
    assert str(column.render(task)) == "25 rows/s"  # 2,000 rows of this run in 80 s
