"""Regenerate everything that shows the digits demo's output, from a fresh run of the commands a user types.

When the method's answer on the demo changes (``core.auto``'s test, k-means, the null), README's "See it work"
block and the figures and screenshots in ``docs/images/`` describe an old output. This script, from the repository
root, in a fresh folder:

1. runs ``conceptvec demo --out conceptvec-demo --control`` (100 columns, as ``tests/demo/test_demo.py`` does) and
   writes its printed lines into README.md's demo block and ``--control`` table;
2. copies the demo's ``figures/concepts.png``, ``cosine.png`` and ``projecting.png`` to ``docs/images/demo_*.png``;
3. runs docs/causal.md's ``conceptvec causal --neuron N`` and ``conceptvec causal-demo`` (both modes, both kinds of
   direction), then the atlas's README sequence (``docs/atlas.md``): ``conceptvec causal --neuron N --centred``,
   ``conceptvec dictionary`` (dictionary learning, 512 atoms, k = 8), ``conceptvec compare-dictionary``,
   ``conceptvec atlas`` and ``conceptvec report``;
4. then ``conceptvec thresholds conceptvec-demo/store --out conceptvec-demo/thresholds`` ->
   ``docs/images/thresholds-block3.png`` (after the atlas, whose layer view then reads the scan's own trees);
5. screenshots with headless Chromium (``/usr/bin/chromium``): the report's neuron page with the slider moved to
   0.6 (``report-slider.png``), its paper Fig. 3 (``report-fig3.png``), its causal section (``causal-section.png``),
   the atlas's overview, neuron and layer views (``atlas_demo_*.png``), and the form of
   ``conceptvec study make conceptvec-demo --seed 0`` with one option chosen (``humaneval-form.png``);
6. prints the numbers that README.md, ``docs/`` and ``tests/demo/test_demo.py`` cite in prose (digit make-up,
   merged pairs split, thresholds, causal drops, atoms' cosines, stability), and writes them to
   ``WORK/facts.json``: update the prose and the test's expected numbers from them (``grep -rn`` for the old ones).

LOOK at every PNG it writes before committing. Takes about 5 minutes on one core.

Usage: PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/regen_demo.py [--work DIR] [--no-screenshots] [--dry-run]
(``--dry-run`` writes nothing in the repository: compare WORK's outputs with it yourself.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
README = ROOT / "README.md"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DEMO = "conceptvec-demo"
SLIDER_AT = "0.6"  # README's report screenshot: the slider moved from the run's cut


def cli(work: Path, *args: str) -> str:
    """Run ``conceptvec ARGS`` in ``work`` as a user would (this checkout's code, 100 columns); its stdout."""
    env = dict(os.environ, COLUMNS="100", PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    print("$ conceptvec " + " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "conceptvec", *args], cwd=work, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"conceptvec {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    (work / "log.txt").open("a").write(f"$ conceptvec {' '.join(args)}\n{done.stdout}\n")
    return done.stdout


def demo_blocks(printed: str) -> tuple[list[str], list[str]]:
    """The README's demo block (from the model line to the table's bottom) and the --control table's lines."""
    lines = [line.rstrip() for line in printed.splitlines()]
    first = next(i for i, line in enumerate(lines) if line.startswith("model digits CNN"))
    last = next(i for i in range(first, len(lines)) if lines[i].startswith("└"))
    header = next(i for i, line in enumerate(lines) if re.match(r"┃\s+network ┃", line))
    chance = next(i for i, line in enumerate(lines) if line.startswith("by chance"))
    rows = [line for line in lines[header + 2 : chance] if line.startswith("│")]
    control = [lines[header], *rows, lines[chance].split(";")[0]]
    return lines[first : last + 1], control


def update_readme(demo: list[str], control: list[str]) -> None:
    text = README.read_text()
    start = f"```\n$ conceptvec demo --out {DEMO}\n"
    head, rest = text.split(start, 1)
    text = head + start + "\n".join(demo) + "\n```" + rest.split("\n```", 1)[1]
    old = re.search(r"( *)```\n(\s*┃\s+network.*?)\n\s*```", text, re.S)
    if old is None:
        sys.exit("README.md: the --control table (```, a line with '┃ network ┃') was not found")
    indent = old.group(1)
    block = f"{indent}```\n" + "\n".join(indent + line for line in control) + f"\n{indent}```"
    README.write_text(text[: old.start()] + block + text[old.end():])


def screenshots(run: Path, neuron: int, position: int, *, out: Path) -> dict[str, Any]:
    """The report's and the atlas's pictures of the demo run, into ``out``; what the pages said."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto((run / "report" / f"neuron_{neuron}.html").as_uri())
        page.wait_for_load_state("load")
        box = page.locator("#threshold-value")
        box.fill(SLIDER_AT)
        box.dispatch_event("input")
        box.dispatch_event("change")
        page.wait_for_timeout(300)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(200)
        found = re.search(r"(\d+) cluster\(s\) at threshold (\S+)", page.inner_text("body"))
        seen["slider"] = found.group(0) if found else "no cluster count on the page"
        page.screenshot(path=str(out / "report-slider.png"))
        page.set_viewport_size({"width": 1100, "height": 1600})
        page.locator("section#projecting").screenshot(path=str(out / "report-fig3.png"))
        causal = page.locator("section#causal, section.causal, h2:text('Causal effect')").first
        if causal.count():
            top = causal.evaluate("e => e.getBoundingClientRect().top + window.scrollY")
            page.set_viewport_size({"width": 1100, "height": 930})
            page.evaluate(f"window.scrollTo(0, {top} - 12)")
            page.wait_for_timeout(200)
            page.screenshot(path=str(out / "causal-section.png"))
        else:
            seen["causal"] = "no causal section on the report page"
        atlas = (run / "atlas" / "index.html").as_uri()
        for name, hash_, size in (("atlas_demo_overview.png", "", (1300, 700)),
                                  ("atlas_demo_neuron.png", f"#n/{position}", (1300, 1250)),
                                  ("atlas_demo_layer.png", "#layer", (1300, 990))):
            view = browser.new_page(viewport={"width": size[0], "height": size[1]})
            errors: list[str] = []
            view.on("pageerror", lambda e: errors.append(str(e)))
            view.goto(atlas + hash_)
            view.wait_for_selector("body[data-ready='1']")
            view.wait_for_load_state("networkidle")
            view.wait_for_timeout(800)
            view.screenshot(path=str(out / name))
            if errors:
                sys.exit(f"{name}: the atlas page raised {errors}")
            view.close()
        form = browser.new_page(viewport={"width": 1000, "height": 760})
        form.goto((run.parent / "study" / "form.html").as_uri())
        form.wait_for_load_state("load")
        form.locator("input[type=radio]").first.check()  # README: "question 1 of 10, one option chosen"
        form.evaluate("window.scrollTo(0, 0)")
        form.screenshot(path=str(out / "humaneval-form.png"))
        browser.close()
    return seen


def facts(run: Path, neuron: int, thresholds_out: str) -> dict[str, Any]:
    """The numbers the prose cites, read from the run's own files."""
    import numpy as np

    import conceptvec as cv

    demo = json.loads((run / "demo.json").read_text())
    cs = cv.ConceptSet.load(run / f"neuron_{neuron}")
    makeup = json.loads((run / f"neuron_{neuron}" / "digit_makeup.json").read_text())
    units = demo["merged_pair_units"]
    out: dict[str, Any] = {
        "neuron": neuron,
        "n_merged_pair_units": len(units), "n_split": sum(u["split"] for u in units),
        "n_agglomerative, n_concepts, outliers, removed": [cs.n_agglomerative, cs.n_concepts,
                                                           int(cs.outliers.sum()), int((~cs.kept).sum())],
        "digit_makeup": makeup,
        "thresholds (printed)": thresholds_out.strip().splitlines(),
    }
    scan = cv.ScanResult.load(run / "scan")
    live = np.asarray(scan.n_concepts)[np.asarray(scan.live)]
    out["scan: live neurons by number of concepts"] = {int(c): int(n) for c, n in sorted(Counter(live.tolist()).items())}
    out["scan: mean concepts per live neuron"] = round(float(live.mean()), 2)
    stability = cv.concept_stability(cs.top_activations, cs.labels, params=cs.params, runs=20, seed=0)
    out["stability (runs=20, seed=0): reappearance per concept"] = [round(float(r), 2) for r in stability.reappearance]
    out["stability: count agreement"] = float(stability.count_agreement)
    out["control network: live units auto splits (>= 2 concepts)"] = control_split(cs.params)
    return out


def control_split(params: Any) -> str:
    """How many of the shipped 10-class control network's live block3 units auto splits (bench_truth's count)."""
    import numpy as np
    import torch

    import conceptvec as cv
    from conceptvec.core.live import live_mask
    from conceptvec.core.streaming import top_examples
    from conceptvec.models.digits import load_shipped_digits_cnn, preprocess_digits
    from conceptvec.models.hooks import capture_layer, forward_to_layer
    from conceptvec.sources.digits import load_digits_images

    images, _ = load_digits_images()
    model, _, _ = load_shipped_digits_cnn(merged=False)
    torch.set_num_threads(1)
    with capture_layer(model.block3) as captured, torch.inference_mode():
        acts = forward_to_layer(model, preprocess_digits(images), captured).numpy().astype(np.float64)
    _, scores = top_examples(acts, params.top, neurons=np.arange(acts.shape[1]))
    live = np.flatnonzero(live_mask(scores))
    split = sum(cv.disentangle(acts, neuron=int(u), params=params).n_concepts >= 2 for u in live)
    return f"{split} of {len(live)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="a folder that does not exist yet (default: a temporary one)")
    ap.add_argument("--no-screenshots", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="write nothing into the repository")
    a = ap.parse_args()
    if a.work is not None and a.work.exists():
        sys.exit(f"--work {a.work} exists; the demo must run in a fresh folder: name another")
    work = a.work or Path(tempfile.mkdtemp(prefix="regen-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    run = work / DEMO
    print(f"working in {work}", flush=True)

    printed = cli(work, "demo", "--out", DEMO, "--control")
    demo_lines, control = demo_blocks(printed)
    print("\n".join(demo_lines + control), flush=True)
    neuron = int(json.loads((run / "demo.json").read_text())["neuron"])
    # docs/causal.md: the paper's concept vectors first, then the centred directions the atlas and report show
    print(cli(work, "causal", DEMO, "--neuron", str(neuron)), flush=True)
    print(cli(work, "causal", DEMO, "--neuron", str(neuron), "--centred", "--overwrite"), flush=True)
    for mode in ("ablate", "mean"):  # docs/causal.md's table of the merged-pair units
        for centred in ([], ["--centred"]):
            name = f"causal-demo-{mode}{'-centred' if centred else ''}.json"
            print(cli(work, "causal-demo", DEMO, "--mode", mode, *centred, "--out", name), flush=True)
    cli(work, "dictionary", f"{DEMO}/store", "--out", f"{DEMO}/dictionary", "--method", "dictionary_learning",
        "--n-atoms", "512", "--k", "8", "--epochs", "10")
    print(cli(work, "compare-dictionary", f"{DEMO}/scan", f"{DEMO}/dictionary", "--out",
              f"{DEMO}/dictionary-comparison", "--baseline", "random"), flush=True)
    cli(work, "atlas", DEMO)
    cli(work, "report", DEMO, "--neurons", str(neuron))
    cli(work, "study", "make", DEMO, "--seed", "0", "--out", "study")  # README's form screenshot
    # after the atlas: its layer view then shows clusters per neuron read off the scan's trees (README's caption)
    thresholds_out = cli(work, "thresholds", f"{DEMO}/store", "--out", f"{DEMO}/thresholds")
    print(thresholds_out, flush=True)

    shots = work / "images"
    shots.mkdir()
    for name in ("concepts", "cosine", "projecting"):
        shutil.copyfile(run / "figures" / f"{name}.png", shots / f"demo_{name}.png")
    shutil.copyfile(run / "thresholds" / "thresholds.png", shots / "thresholds-block3.png")
    import conceptvec as cv

    position = cv.ScanResult.load(run / "scan").position(neuron)
    seen = {} if a.no_screenshots else screenshots(run, neuron, position, out=shots)

    found = facts(run, neuron, thresholds_out)
    found["pages"] = seen
    (work / "facts.json").write_text(json.dumps(found, indent=1, default=str))
    print(json.dumps(found, indent=1, default=str))
    if a.dry_run:
        print(f"dry run: README.md and docs/images/ untouched; the new outputs are in {shots}")
        return
    update_readme(demo_lines, control)
    for png in sorted(shots.glob("*.png")):
        shutil.copyfile(png, IMAGES / png.name)
        print(f"wrote docs/images/{png.name}")
    print("wrote README.md's demo block and --control table; now update the prose numbers and tests/demo/test_demo.py "
          f"from {work / 'facts.json'}, and LOOK at every picture")


if __name__ == "__main__":
    main()
