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
