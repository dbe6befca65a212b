"""The layer atlas: its files, and (in headless Chromium, from file://) the overview, sorting, search, a neuron
page, a concept page and the shared concepts, with no network request and no console error."""

import dataclasses
import json
import re
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.planted import planted_shared_layer
from conceptvec.errors import ConceptvecError
from conceptvec.report.atlas.build import ATLAS_FILE, neuron_file
from conceptvec.scan.shared import GROUPS_FILE

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">'
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's chromium is not installed at {CHROMIUM}")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def read_data(path):
    """The JSON a data script hands to the page."""
    text = path.read_text()
    return json.loads(text[text.index("=") + 1:].strip().rstrip(";")) if text.startswith("ATLAS.overview") else \
        json.loads(text[text.index(",") + 1:].strip().rstrip(";").rstrip(")"))


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """A run of a planted layer (12 neurons, 3 shared facets) on digit images, one label hostile, scanned, with its atlas."""
    from conceptvec.sources.digits import load_digits_images

    root = tmp_path_factory.mktemp("atlas")
    layer = planted_shared_layer(48, n_neurons=12, n_shared=3, n_background=300, seed=0)
    _, digits = load_digits_images()
    n = len(layer.acts)
    names = [HOSTILE if i == 0 else str(digits[i]) for i in range(n)]
    store = cv.ActivationStore.create(root / "store", layer.acts, metadata={"model": {"name": "planted"}, "layer": "planted",
                                                                           "data": {"kind": "sklearn-digits"}},
                                      examples={"id": [f"d{i}" for i in range(n)], "label": digits[:n].tolist(), "label_name": names,
                                                "source": [f"sklearn-digits:{i}" for i in range(n)]})
    scan = cv.scan_layer(store, params=cv.Params(distance_threshold="auto", outlier_threshold="auto"), neurons=list(range(12)),
                         workers=1, progress=False, out=root / "scan")
    index = cv.write_atlas(root, progress=False, map_method="pca")
    return root, index, scan, layer


def test_atlas_files(atlas):
    root, index, scan, _ = atlas
    out = index.parent
    assert index == root / "atlas" / "index.html" and (out / ATLAS_FILE).is_file()
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(["overview.js"] + [neuron_file(i) for i in range(len(scan))])
    assert (root / "scan" / GROUPS_FILE).is_file()  # the shared concepts were saved beside the scan
    overview = read_data(out / "data" / "overview.js")
    assert overview["rows"]["neuron"] == scan.neurons.tolist() and overview["rows"]["concepts"] == scan.n_concepts.tolist()
    # the evidence the scan recorded: auto's p-value of each neuron's first split, to 3 significant digits
    assert overview["rows"]["split_p"] == [float(f"{p:.3g}") if np.isfinite(p) else None for p in scan.first_p]
    assert any(p is not None and p < 0.01 for p in overview["rows"]["split_p"])
    # and the count in the words of its checks (the planted facets carry digit labels: supported where split)
    from conceptvec.core.evidence import count_words

    assert overview["rows"]["evidence"] == [count_words(int(k), rows) for k, rows in zip(scan.n_concepts, scan.evidence())]
    assert any(w.endswith("concepts") and not w.startswith("unsupported") for w in overview["rows"]["evidence"])
    assert len(overview["map"]["x"]) == len(scan.concept_vectors) and overview["map"]["method"].startswith("PCA")
    # every example shown is drawn once into the sprite sheets, however many neurons show it
    shown = set(scan.top_indices.ravel().tolist()) | set(scan.projecting["indices"][:, :12].ravel().tolist())
    assert overview["thumbs"]["n_drawn"] == len(shown)
    assert len(overview["thumbs"]["sheets"]) == -(-len(shown) // 256) == len(list((out / "sprites").glob("*.jpg")))
    neuron = read_data(out / "data" / neuron_file(3))
    assert [t[0] for t in neuron["top"]] == scan.top_indices[3].tolist()
    assert len(neuron["concepts"]) == scan.n_concepts[3] and len(neuron["linkage"]) == scan.params.top - 1
    assert [c["verdict"] for c in neuron["concepts"]] == [r["verdict"] for r in scan.evidence()[3]]
    # nothing from elsewhere: no URL with a scheme or host in the page, script or style
    for name in ("index.html", "atlas.js", "atlas.css"):
        assert not re.search(r"(https?:)?//[a-z]", (out / name).read_text().replace("http://www.w3.org/2000/svg", "")), name


def test_thresholds_figure_read_off_the_trees_or_taken_from_conceptvec_thresholds(atlas, tmp_path):
    from conceptvec.core.steps import n_clusters_at
    from conceptvec.report.atlas.thresholds import find_sweep, thresholds_figure
    from conceptvec.report.figures.thresholds import clusters_at

    root, index, scan, _ = atlas
    # without a `conceptvec thresholds` output: C per neuron read off the scan's ward trees, drawn into thresholds.png
    overview = read_data(index.parent / "data" / "overview.js")
    assert overview["thresholds"]["kind"] == "clusters" and "conceptvec thresholds" in overview["thresholds"]["how"]
    assert "unit length" in overview["thresholds"]["what"]  # the scan used auto: its trees are of unit-length examples
    assert (index.parent / "thresholds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = np.array([0.1, 0.5, 1.0, 2.0])
    assert clusters_at(scan.linkage[:, :, 2], grid).tolist() == [[n_clusters_at(z, t) for t in grid] for z in scan.linkage]
    # a thresholds output of this store in a folder of the run is found and its figure shown; another store's is not
    store = cv.ActivationStore.open(root / "store")
    for name, made_from in (("other", {"store": "/elsewhere", "store_id": "not-this-one"}), ("thresholds", store.provenance())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "thresholds.json").write_text(json.dumps({"format": "conceptvec.thresholds/1", "store": made_from}))
        (tmp_path / name / "thresholds.png").write_bytes(b"figure of " + name.encode())
    assert find_sweep([tmp_path / "missing", tmp_path], store) == tmp_path / "thresholds"
    (tmp_path / "atlas").mkdir()
    shown = thresholds_figure(scan, store, [tmp_path], tmp_path / "atlas")
    assert shown["kind"] == "sweep" and (tmp_path / "atlas" / "thresholds.png").read_bytes() == b"figure of thresholds"
    (tmp_path / "thresholds" / "thresholds.json").unlink()
    assert find_sweep([tmp_path], store) is None
    # trees whose merges are all at height 0 (identical top examples): nothing to cut, no figure
    flat = dataclasses.replace(scan, linkage=np.concatenate([scan.linkage[:, :, :2], np.zeros_like(scan.linkage[:, :, 2:])], axis=2))
    assert thresholds_figure(flat, store, [], tmp_path / "atlas") is None


def test_atlas_refuses_other_folders_and_needs_a_scan(atlas, tmp_path):
    root, *_ = atlas
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(ConceptvecError, match="not a atlas|holds other files"):
        cv.write_atlas(root, out=tmp_path, progress=False, map_method="pca")
    assert (tmp_path / "mine.txt").read_text() == "keep"
    with pytest.raises(ConceptvecError, match="conceptvec scan"):
        cv.write_atlas(tmp_path, progress=False)
    with pytest.raises(ConceptvecError, match="give out="):
        cv.write_atlas(cv.ScanResult.load(root / "scan"), progress=False)


@needs_chromium
@pytest.mark.browser
@pytest.mark.slow
def test_atlas_in_chromium(atlas):
    from playwright.sync_api import sync_playwright

    root, index, scan, layer = atlas
    url = index.resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors, elsewhere = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith("file://") else elsewhere.append(r.url))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator(".row").count() == len(scan)
        # sort by the split's p-value: largest first, then again for the clearest split first
        for pick in (np.nanmax, np.nanmin):
            page.click(".thead div[data-col='split_p']")
            first = int(page.locator(".row").first.get_attribute("data-neuron"))
            assert scan.first_p[scan.position(first)] == pick(scan.first_p)
        # sort by concepts, most first; again for fewest first
        page.click(".thead div[data-col='concepts']")
        first = int(page.locator(".row").first.get_attribute("data-neuron"))
        assert scan.n_concepts[scan.position(first)] == scan.n_concepts.max()
        page.click(".thead div[data-col='concepts']")
        first = int(page.locator(".row").first.get_attribute("data-neuron"))
        assert scan.n_concepts[scan.position(first)] == scan.n_concepts.min()
        # search by neuron number, then by label; filter by concept count
        page.fill("#search", "7")
        assert page.get_attribute("body", "data-shown") == str(sum(1 for i in range(len(scan)) if i == 7 or "7" in
                                                                  page.evaluate(f"ATLAS.overview.rows.labels[{i}]")))
        page.fill("#search", "")
        page.fill("#kmin", "3")
        assert page.get_attribute("body", "data-shown") == str(int(np.sum(scan.n_concepts >= 3)))
        page.fill("#kmin", "")
        # keyboard: down twice and Enter opens the third row's neuron
        page.click(".thead div[data-col='neuron']")
        page.click(".thead div[data-col='neuron']")  # descending
        page.focus("#rows")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        page.wait_for_selector("#concepts")
        assert page.get_attribute("body", "data-view") == f"neuron:{scan.neurons[-3]}"
        # a neuron page: its concepts, the slider re-cuts the tree
        page.goto(url + "#n/3")
        page.wait_for_selector("body[data-view='neuron:3']")
        assert page.locator("#concepts tr").count() == scan.n_concepts[3] + 1
        assert page.get_attribute("body", "data-clusters") == str(scan.n_agglomerative[3])
        page.eval_on_selector("#threshold", "e => { e.value = 0; e.dispatchEvent(new Event('input')); }")
        assert page.get_attribute("body", "data-clusters") == str(scan.params.top)
        # a concept page: its members, and its nearest concepts in other neurons
        page.goto(url + "#c/3/0")
        page.wait_for_selector("body[data-view='concept:3:0']")
        assert page.locator("#members .ex").count() == int(np.sum(scan.labels[3] == 0))
        assert page.locator("#near a").count() == 5
        # the shared concepts: a row per group, and a link to one of its concepts
        page.goto(url + "#shared")
        page.wait_for_selector("body[data-view='shared']")
        groups = cv.SharedConcepts.load(root / "scan").groups
        assert len(groups) >= len(layer.shared) - 1 and page.locator("#shared tr").count() == len(groups) + 1
        page.locator("#shared a").first.click()
        page.wait_for_selector("#members")
        page.goto(url + "#layer")
        page.wait_for_selector("#map")
        # the thresholds figure, loaded from the atlas folder
        page.wait_for_function("document.getElementById('thresholds').complete")
        assert page.evaluate("document.getElementById('thresholds').naturalWidth") > 400
        # the hostile label (example 0, a top example of neuron 0) is text, never markup
        page.goto(url + "#n/0")
        page.wait_for_selector("body[data-view='neuron:0']")
        titles = page.eval_on_selector_all(".ex", "es => es.map(e => e.title)")
        assert sum(t.startswith(f"d0 · {HOSTILE}") for t in titles) == 1
        assert page.evaluate("document.body.dataset.pwned") is None and page.locator("img[src=x]").count() == 0
        assert errors == [] and elsewhere == []
        # equally through a plain HTTP server
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(index.parent)))
        Thread(target=server.serve_forever, daemon=True).start()
        try:
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html#n/3")
            page.wait_for_selector("body[data-view='neuron:3']")
            assert page.locator("#concepts tr").count() == scan.n_concepts[3] + 1
        finally:
            server.shutdown()
        browser.close()
    assert errors == []


def test_atlas_command(atlas, tmp_path):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    root, *_ = atlas
    runner = CliRunner()
    result = runner.invoke(app, ["atlas", str(root / "scan"), "--out", str(tmp_path / "a"), "--map", "pca"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "atlas written to" in result.output and (tmp_path / "a" / "index.html").is_file()
    result = runner.invoke(app, ["atlas", str(root), "--out", str(tmp_path / "b"), "--map", "tsne"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "map method must be one of auto, umap, pca" in result.output
    assert not (tmp_path / "b").exists()


def test_an_atlas_inside_the_scan_it_reads_is_refused_before_the_work_naming_where_to_write_it(atlas):
    # Written there it would be a foreign folder inside the scan, whose --overwrite then refuses to replace it.
    from conftest import one_line_error, run_cli

    root, *_ = atlas
    before = sorted(p.name for p in (root / "scan").iterdir())
    code, output = run_cli("atlas", str(root), "--out", str(root / "scan" / "atlas"), "--map", "pca")
    one_line_error(code, output, "is inside the scan", f"--out {root / 'atlas'}")
    code, output = run_cli("atlas", str(root), "--out", str(root / "store" / "x"), "--map", "pca")
    one_line_error(code, output, "is inside the activation store")
    assert sorted(p.name for p in (root / "scan").iterdir()) == before and not (root / "store" / "x").exists()


def test_a_report_or_a_dictionary_comparison_inside_the_scan_is_refused_naming_where_to_write_it(atlas, tmp_path):
    from conftest import one_line_error, run_cli

    root, *_ = atlas
    before = sorted(p.name for p in (root / "scan").iterdir())
    code, output = run_cli("report", str(root), "--out", str(root / "scan" / "report"), "--no-umap")
    one_line_error(code, output, "is inside the scan", f"--out {root / 'report'}")
    dic = cv.fit_dictionary(cv.ActivationStore.open(root / "store"), n_atoms=8, method="nmf", out=tmp_path / "dic", progress=False)
    assert dic.n_atoms == 8
    code, output = run_cli("compare-dictionary", str(root / "scan"), str(tmp_path / "dic"), "--out", str(root / "scan" / "cmp"))
    one_line_error(code, output, "is inside the scan", f"--out {root / 'dictionary-comparison'}")
    code, output = run_cli("compare-dictionary", str(root / "scan"), str(tmp_path / "dic"), "--out", str(tmp_path / "dic" / "cmp"))
    one_line_error(code, output, "is inside the dictionary")
    assert sorted(p.name for p in (root / "scan").iterdir()) == before and not (tmp_path / "dic" / "cmp").exists()
