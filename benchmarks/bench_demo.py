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

With ``--text``, the same for ``conceptvec demo --text`` (all-MiniLM-L6-v2 over docstrings, ``auto`` thresholds,
offline), and as the baseline the same run with the layer-wide quantile rule (``run_text_demo(thresholds="layer-rule")``,
the text demo's thresholds before it moved to ``auto``), each in a fresh folder.

Usage: python benchmarks/bench_demo.py [--text] [--no-baseline] [--no-busy] [--keep DIR]
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
TEXT_RULE = [sys.executable, "-c", "import sys; from conceptvec.demo.text import run_text_demo; "
             "run_text_demo(sys.argv[1], thresholds='layer-rule', progress=False)"]


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


def time_demo(out: Path, *options: str, command: list[str] = DEMO, record: str = "demo.json") -> tuple[float, dict]:
    """Wall seconds of `conceptvec demo --out OUT OPTIONS` (or ``command OUT``) in a subprocess, and the record it wrote."""
    args = [*command, "--out", str(out), *options] if command is DEMO else [*command, str(out)]
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "COLUMNS": "100", "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[3:])} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, json.loads((out / record).read_text())


def text_summary(record: dict) -> str:
    n = record["control"]["neurons"]
    return (f"neuron {record['neuron']}, {n['n_mixing']} mixing neurons, {n['n_several']} with 2+ concepts, "
            f"{n['n_beyond_chance']} beyond chance; Python {record['python']}, {record['n_sentences']} sentences")


def time_text(work: Path, *, baseline: bool) -> float:
    """Time `conceptvec demo --text` and, with ``baseline``, the same run with the layer-wide rule; print both."""
    auto_s, auto = time_demo(work / "text-auto", "--text", record="text_demo.json")
    print(f"conceptvec demo --text (auto thresholds, fresh folder): {auto_s:.1f} s; {text_summary(auto)}")
    if baseline:
        rule_s, rule = time_demo(work / "text-rule", command=TEXT_RULE, record="text_demo.json")
        print(f"baseline run_text_demo(thresholds='layer-rule') (fresh folder): {rule_s:.1f} s; {text_summary(rule)}")
        print(f"ratio auto / layer rule: {auto_s / rule_s:.2f}x")
    return auto_s


def summary(record: dict) -> str:
    w = record["weights"]
    return (f"{w['source']} weights sha256 {w['sha256'][:16]}..., test accuracy {record['test_accuracy_merged_classes']:.1%}, "
            f"neuron {record['neuron']}, {record['n_merged_pair_units']} merged-pair units")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", action="store_true", help="time `conceptvec demo --text` instead (baseline: the layer rule)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the --retrain run (with --text: the layer-rule run)")
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
        if args.text:
            shipped_s = time_text(work, baseline=not args.no_baseline)
        else:
            shipped_s, shipped = time_demo(work / "shipped")
            print(f"conceptvec demo (shipped weights, fresh folder): {shipped_s:.1f} s; {summary(shipped)}")
        if not args.text and not args.no_baseline:
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
    demo = "conceptvec demo --text" if args.text else "the demo"
    print(f"goal: {demo} within {GOAL_S:.0f} s {where}: {'met' if shipped_s <= GOAL_S else 'NOT met'} ({shipped_s:.1f} s)")


if __name__ == "__main__":
    main()
