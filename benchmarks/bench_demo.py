"""Benchmark: `conceptvec demo` on 2 cores with another process busy on one of them.

In one run:

1. starts a busy process (a plain Python loop) pinned to one core, so that the demo has one free
   core and shares the other, as on a machine where something else runs;
2. times ``conceptvec demo --out <fresh folder>`` (the shipped weights) as a subprocess, from start
   to exit: Python and torch start-up, extraction, thresholds, the neuron, figures and HTML report;
3. as the baseline, times ``conceptvec demo --retrain --out <another fresh folder>`` the same way
   (the CNN trained before the rest: the path every run took before the weights were shipped), and
   prints the ratio and whether the retrained weights equal the shipped ones on this machine;
4. prints the load average before and after, and whether the goal (the demo within 60 s) is met.

Usage: python benchmarks/bench_demo.py [--no-baseline] [--no-busy] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 60.0
DEMO = [sys.executable, "-c", "from conceptvec.cli import app; app()", "demo"]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def start_busy(core: int) -> subprocess.Popen:
    """A Python busy loop pinned to ``core``."""
    busy = subprocess.Popen([sys.executable, "-c", "while True:\n    pass"])
    os.sched_setaffinity(busy.pid, {core})
    return busy


def time_demo(out: Path, *options: str) -> tuple[float, dict]:
    """Wall seconds of `conceptvec demo --out OUT OPTIONS` in a subprocess, and the demo.json it wrote."""
    start = time.perf_counter()
    result = subprocess.run([*DEMO, "--out", str(out), *options], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "100"})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"conceptvec demo {' '.join(options)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, json.loads((out / "demo.json").read_text())


def summary(record: dict) -> str:
    w = record["weights"]
    return (f"{w['source']} weights sha256 {w['sha256'][:16]}..., test accuracy {record['test_accuracy_merged_classes']:.1%}, "
            f"neuron {record['neuron']}, {record['n_merged_pair_units']} merged-pair units")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-baseline", action="store_true", help="skip the --retrain run")
    parser.add_argument("--no-busy", action="store_true", help="no busy process (the idle machine)")
    parser.add_argument("--keep", type=Path, help="write the demo folders here instead of a temporary folder")
    args = parser.parse_args()

    import conceptvec
    import torch

    cpus = sorted(os.sched_getaffinity(0))
    print(f"machine: {len(cpus)} CPUs ({cpu_name()}), Python {platform.python_version()}, torch {torch.__version__}, "
          f"conceptvec {conceptvec.__version__} from {Path(conceptvec.__file__).parent}")
    print(f"load average before: {load()}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    busy = None
    try:
        if not args.no_busy:
            busy = start_busy(cpus[-1])
            time.sleep(2.0)  # let it reach full speed
            print(f"busy process {busy.pid}: a Python loop pinned to CPU {cpus[-1]}; load average {load()}")
        shipped_s, shipped = time_demo(work / "shipped")
        print(f"conceptvec demo (shipped weights, fresh folder): {shipped_s:.1f} s; {summary(shipped)}")
        if not args.no_baseline:
            retrain_s, retrained = time_demo(work / "retrained", "--retrain")
            same = retrained["weights"]["sha256"] == shipped["weights"]["sha256"]
            print(f"baseline conceptvec demo --retrain (trains the CNN first, fresh folder): {retrain_s:.1f} s; {summary(retrained)}")
            print(f"retrained weights {'equal' if same else 'differ from'} the shipped ones on this machine; "
                  f"ratio --retrain / shipped: {retrain_s / shipped_s:.1f}x")
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {load()}")
    where = "with another process busy on one core" if busy is not None else "with no busy process started"
    print(f"goal: the demo within {GOAL_S:.0f} s {where}: {'met' if shipped_s <= GOAL_S else 'NOT met'} ({shipped_s:.1f} s)")


if __name__ == "__main__":
    main()
