"""Benchmark: `conceptvec report` on the digits demo's run, this tree against an earlier commit, same run, same pages.

A user timed `conceptvec report` at 64 s for 6 neurons of the digits demo. Profiling showed the time in the example
grids (top activating, by concept, Fig. 3 three times: one matplotlib Axes per example, laid out by constrained layout,
about 2 to 3 s per page), umap-learn's first fit in a process (numba compiling, about 7 s once) and the evidence's
power numbers (``core.power``, about 2 s per one-concept page). The grids now draw every panel in one Axes
(``report.figures.panels``).

In one run: the digits demo's run is made once (``conceptvec demo --no-report``), the ``--before`` commit's ``src/`` is
exported with ``git archive``, then the same command, ``conceptvec report RUN --neurons 29,1,2,3,4,5 --out DIR``,
runs alternately with the old and this tree's package (``PYTHONPATH``, one thread), ``--repeats`` times each. Prints
each wall time, the best of each side and their ratio, and compares the two reports: the pages (HTML, timestamps
aside) and every ``data.json`` must be equal; the PNGs that differ are named (look at them).

Usage: python benchmarks/bench_report.py [--before d32d158] [--repeats 2] [--neurons 29,1,2,3,4,5] [--no-umap]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAMPS = re.compile(r"(created&quot;: &quot;|on )\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d\+00:00)?")  # the page's own time


def run(src: Path, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "conceptvec", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def compare(old: Path, new: Path) -> list[str]:
    """The PNGs that differ between two reports; raises if a page, a data.json or the file list differs."""
    files = sorted(p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file() and p.name != ".conceptvec-manifest.json")
    theirs = sorted(p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file() and p.name != ".conceptvec-manifest.json")
    if files != theirs:
        raise SystemExit(f"the reports hold different files: {sorted(set(files) ^ set(theirs))[:10]}")
    redrawn = []
    for name in files:
        a, b = old / name, new / name
        if name == "report.json":  # what the report was made from, with its time and versions
            continue
        if name.endswith(".html"):
            if STAMPS.sub("", a.read_text()) != STAMPS.sub("", b.read_text()):
                raise SystemExit(f"{name} differs between the reports")
        elif not filecmp.cmp(a, b, shallow=False):
            if not name.endswith(".png"):
                raise SystemExit(f"{name} differs between the reports")
            redrawn.append(name)
    return redrawn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="d32d158", help="the commit to compare with (main before the grids' change)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--neurons", default="29,1,2,3,4,5")
    ap.add_argument("--no-umap", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        before = work / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", a.before, "src"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        sides = {"before": before / "src", "ours": REPO / "src"}
        run(sides["ours"], "demo", "--out", str(work / "demo"), "--no-report")
        extra = ["--no-umap"] if a.no_umap else []
        times: dict[str, list[float]] = {"before": [], "ours": []}
        for k in range(a.repeats):
            for side, src in sides.items():
                times[side].append(run(src, "report", str(work / "demo"), "--neurons", a.neurons,
                                       "--out", str(work / f"{side}-{k}"), *extra))
                print(f"{side:6s} run {k + 1}: {times[side][-1]:6.1f} s")
        best = {side: min(t) for side, t in times.items()}
        n = len(a.neurons.split(","))
        print(f"report of {n} pages{' without UMAP' if a.no_umap else ''}: before {best['before']:.1f} s, ours {best['ours']:.1f} s "
              f"(best of {a.repeats}); ours / before = {best['ours'] / best['before']:.2f}")
        redrawn = compare(work / "before-0", work / "ours-0")
        stems = sorted({Path(r).stem for r in redrawn})
        print(f"pages and data.json equal; PNGs redrawn: {len(redrawn)} ({', '.join(stems)})")


if __name__ == "__main__":
    main()
