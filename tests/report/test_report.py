"""The static HTML report: files, provenance, escaping, and (in headless Chromium) images, slider and sorting."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import planted
from PIL import Image
from scipy.cluster.hierarchy import fcluster

import conceptvec as cv
from conceptvec.sources.images import image_files
from conceptvec.storage.atomic import read_json
from conceptvec.report.html import write_report

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
META = {"model": {"name": "test-model"}, "layer": "block9", "data": {"kind": "sklearn-digits"}}
PARAMS = cv.Params(top=100, distance_threshold=10.0, outlier_threshold=40.0)
HOSTILE = "<img src=x onerror=alert(1)>.png"

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium); .ci/run installs it"
)


def digits_store(path, acts):
    from conceptvec.sources.digits import load_digits_images

    _, digits = load_digits_images()
    n = len(acts)
    examples = {"id": [f"d{i}" for i in range(n)], "label": digits[:n].tolist(),
                "label_name": [str(d) for d in digits[:n]], "source": [f"sklearn-digits:{i}" for i in range(n)]}
    return cv.ActivationStore.create(path, acts, examples=examples, metadata=META)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory with a store, a saved ConceptSet of neuron 3 and a scan of neurons 0, 3 and 5."""
    from conceptvec.scan import scan_layer

    root = tmp_path_factory.mktemp("run")
    acts, _ = planted()
    store = digits_store(root / "store", acts)
    cs = cv.disentangle(store, neuron=3, params=PARAMS)
    cs.save(root / "neuron_3")
    scan_layer(store, params=PARAMS, neurons=[0, 3, 5], workers=1, out=root / "scan", progress=False)
    index = write_report(root, umap=False)
    return root, index, cs


@pytest.mark.slow
def test_report_files_and_provenance(run):
    root, index, cs = run
    assert index == root / "report" / "index.html"
    report = index.parent
    assert sorted(p.name for p in report.glob("*.html")) == ["index.html", "neuron_0.html", "neuron_3.html", "neuron_5.html"]
    page = (report / "neuron_3.html").read_text()
    for text in ("test-model", "block9", "sklearn-digits", "&quot;distance_threshold&quot;: 10.0", "neuron_3/", "Fig. 3", "Fig. A.9",
                 "most cosine-similar examples"):
        assert text in page
    assert "scan/" in (report / "neuron_5.html").read_text()  # taken from the scan: says so
    data = read_json(report / "assets" / "neuron_3" / "data.json")
    assert data["params"] == PARAMS.to_dict() and data["summary"]["n_concepts"] == cs.n_concepts
    assert data["top_activating"]["index"] == cs.top_indices.tolist()
    # One thumbnail per example however many pages show it.
    thumbs = list((report / "assets" / "thumbs").glob("*.png"))
    shown = set(re.findall(r'assets/thumbs/(\d+)\.png', "".join(p.read_text() for p in report.glob("*.html"))))
    assert len(thumbs) == len(shown) and shown == {p.stem for p in thumbs}


@pytest.mark.slow
def test_report_uses_nothing_from_the_network(run):
    root, index, _ = run
    for page in index.parent.glob("*.html"):
        text = page.read_text()
        assert not re.search(r'(src|href)\s*=\s*"?(https?:)?//', text), page.name
        assert "@import" not in text and "url(" not in text
        for src in re.findall(r'src="([^"]+)"', text):
            assert (index.parent / src).exists(), src


@pytest.mark.slow
def test_report_neurons_option_and_errors(run, tmp_path):
    root, _, cs = run
    bare = tmp_path / "bare"
    shutil.copytree(root / "store", bare / "store")
    with pytest.raises(cv.ConceptvecError, match="nothing to report"):
        write_report(bare)
    with pytest.raises(cv.ConceptvecError, match="does not exist"):
        write_report(tmp_path / "missing")
    with pytest.raises(cv.ConceptvecError, match="out of range"):
        write_report(bare, neurons=[99])
    # With no saved set and no scan, the neuron is computed with the given parameters' defaults.
    index = write_report(bare, neurons=[7], out=tmp_path / "rep", umap=False)
    assert (index.parent / "neuron_7.html").exists() and "computed for this report" in (index.parent / "neuron_7.html").read_text()


def test_templates_escape_what_they_print():
    from conceptvec.report.pages import table
    from conceptvec.report.render import jinja_environment

    macros = jinja_environment().get_template("macros.html").module
    printed = str(macros.table(table([{"<b>": "<script>'&"}], cls='"x')))
    assert printed == ('<table class="&quot;x"><thead><tr><th>&lt;b&gt;</th></tr></thead>'
                       "<tbody><tr><td>&lt;script&gt;&#x27;&amp;</td></tr></tbody></table>")


@pytest.mark.browser
@pytest.mark.slow
def test_hostile_names_are_escaped(tmp_path):
    folder = tmp_path / "images" / "<b>cls</b>"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [HOSTILE] + [f"img{i}.png" for i in range(11)]
    for name in names:
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / name)
    files = image_files(tmp_path / "images")
    acts = rng.random((len(files), 4))
    acts[files.paths.index(f"<b>cls</b>/{HOSTILE}"), 0] = 10.0  # the hostile image is the top example
    run_dir = tmp_path / "run"
    store = cv.ActivationStore.create(
        run_dir / "store", acts,
        examples={"id": files.paths, "label": files.labels, "label_name": [files.classes[k] for k in files.labels], "source": files.paths},
        metadata={"model": {"name": "<script>m</script>"}, "layer": "x", "data": files.describe()},
    )
    cv.disentangle(store, neuron=0, params=cv.Params(top=10, distance_threshold=1.0, min_cluster_size=1)).save(run_dir / "neuron_0")
    index = write_report(run_dir, umap=False)
    page = (index.parent / "neuron_0.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page and "&lt;b&gt;cls&lt;/b&gt;" in page
    assert "<img src=x" not in page and "<b>cls" not in page and "<script>m" not in page
    assert list((index.parent / "assets" / "thumbs").iterdir())  # files named by index, not by the hostile name
    if Path(CHROMIUM).exists():
        with browser() as b:
            pg, problems = open_page(b, index.parent / "neuron_0.html")
            dialogs = []
            pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            pg.reload()
            assert not dialogs and not problems
            assert pg.get_by_text(HOSTILE, exact=False).count() >= 1


# -- in the browser ------------------------------------------------------------------------------
class browser:
    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.b = self.pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        return self.b

    def __exit__(self, *exc):
        self.b.close()
        self.pw.stop()


def open_page(b, path):
    pg = b.new_page(viewport={"width": 1200, "height": 900})
    problems = []
    pg.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    pg.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    pg.goto(path.as_uri())
    pg.wait_for_load_state("load")
    return pg, problems


def broken_images(pg):
    return pg.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_pages_load_offline_with_every_image(run):
    _, index, _ = run
    with browser() as b:
        for page in sorted(index.parent.glob("*.html")):
            pg, problems = open_page(b, page)
            assert problems == [], page.name
            assert pg.evaluate("document.images.length") > 0
            assert broken_images(pg) == [], page.name
            pg.close()


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_slider_recuts_the_tree_as_scipy_does(run):
    _, index, cs = run
    z = cs.linkage
    heights = np.sort(z[:, 2])[::-1]
    assert cs.n_agglomerative >= 3
    with browser() as b:
        pg, problems = open_page(b, index.parent / "neuron_3.html")
        assert pg.inner_text("#n-clusters") == str(cs.n_agglomerative)
        assert float(pg.get_attribute("#threshold", "value")) == PARAMS.distance_threshold  # the run's value marked
        assert "run: 10" in pg.inner_text(".mark")
        for target in ((heights[0] + heights[1]) / 2, (heights[1] + heights[2]) / 2, heights[-1] / 2):
            value = pg.evaluate(
                "t => { const s = document.getElementById('threshold'); s.value = t;"
                " s.dispatchEvent(new Event('input', {bubbles: true})); return +s.value; }", float(target))
            expected = fcluster(z, value, criterion="distance")
            assert pg.inner_text("#n-clusters") == str(len(np.unique(expected)))
            # Same partition of the top examples as SciPy's, tile by tile.
            labels = pg.evaluate("t => window.conceptvecCut(t).labels", value)
            pairs = set(zip(labels, expected.tolist()))
            assert len(pairs) == len(set(labels)) == len(np.unique(expected))
            shown = pg.evaluate("Array.from(document.querySelectorAll('#clusters .cluster')).map(c => c.querySelectorAll('.tile').length)")
            assert sorted(shown) == sorted(np.bincount(expected)[1:].tolist())
        assert (heights[0] + heights[1]) / 2 > PARAMS.distance_threshold  # the first move merged clusters
        ms = pg.evaluate(
            "() => { const s = document.getElementById('threshold'); const t0 = performance.now();"
            " for (let k = 0; k < 20; k++) { s.value = (k % 2 ? 5 : 60); s.dispatchEvent(new Event('input')); }"
            " return (performance.now() - t0) / 20; }")
        assert ms < 50, f"{ms:.1f} ms per move"
        pg.click("#threshold-reset")
        assert pg.inner_text("#n-clusters") == str(cs.n_agglomerative)
        assert problems == []


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_index_links_and_sorts_the_scan(run):
    root, index, _ = run
    with browser() as b:
        pg, problems = open_page(b, index)
        assert "of 3 live neurons" in pg.inner_text("body")
        hrefs = pg.eval_on_selector_all("a", "as => as.map(a => a.getAttribute('href'))")
        assert {"neuron_0.html", "neuron_3.html", "neuron_5.html"} <= set(hrefs)
        pg.click("table.scan th:nth-child(2)")
        counts = [int(x) for x in pg.eval_on_selector_all("table.scan tbody tr td:nth-child(2)", "ts => ts.map(t => t.textContent)")]
        assert counts == sorted(counts, reverse=True)
        pg.click("table.scan th:nth-child(2)")
        counts = [int(x) for x in pg.eval_on_selector_all("table.scan tbody tr td:nth-child(2)", "ts => ts.map(t => t.textContent)")]
        assert counts == sorted(counts)
        with pg.expect_navigation():
            pg.click("a[href='neuron_5.html'] >> nth=0")
        pg.wait_for_load_state("load")
        assert pg.url.endswith("neuron_5.html") and broken_images(pg) == []
        assert problems == []


@pytest.mark.slow
def test_cli_report_command(run, tmp_path):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    root, _, _ = run
    result = CliRunner().invoke(app, ["report", str(root), "--neurons", "3", "--no-umap", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "report written to" in result.output and (tmp_path / "r" / "neuron_3.html").exists()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.slow
def test_not_live_neurons_are_flagged(tmp_path):
    from conceptvec.scan import scan_layer

    acts, _ = planted()
    acts = acts[:, :6].copy()
    acts[:, 2] = 0.0  # a dead unit: its top 100 are ties at zero
    store = digits_store(tmp_path / "store", acts)
    scan_layer(store, params=PARAMS, workers=1, out=tmp_path / "scan", progress=False, projecting=False)
    index = write_report(tmp_path, neurons=[2, 3], umap=False)
    text = index.read_text()
    assert "1 neuron(s) are not live" in text and "<td>not live</td>" in text
    assert ("Not live:</b> this neuron has no top: all 100 of its top examples have the same activation (0)"
            in (index.parent / "neuron_2.html").read_text())
    assert "Not live" not in (index.parent / "neuron_3.html").read_text()


@pytest.mark.slow
def test_an_off_scale_scan_is_said_on_the_report(tmp_path):
    from conceptvec.scan import scan_layer

    acts, _ = planted()
    store = digits_store(tmp_path / "store", acts)
    params = cv.Params(top=60, distance_threshold=0.95, outlier_threshold=1e6, min_cluster_size=5)
    with pytest.warns(cv.ThresholdScaleWarning):
        scan = scan_layer(store, params=params, workers=1, out=tmp_path / "scan", progress=False, projecting=False)
    assert scan.summary()["scale_warnings"]
    index = write_report(tmp_path, neurons=[3], umap=False)
    text = " ".join(index.read_text().split())
    assert f"<b>Off scale:</b> {scan.summary()['scale_warnings'][0]}" in text.replace("&#39;", "'")
    assert "--distance-threshold auto" in text and "conceptvec thresholds" in text


def test_a_local_model_is_named_by_its_last_path_parts_on_a_page():
    from conceptvec.report.pages import describe

    line = describe({"model": {"name": "hf:/home/me/.venv/lib/site-packages/minilm/model"}, "layer": "l", "data": {"kind": "text"},
                     "n_examples": 3, "n_units": 2})
    assert line.startswith("Model hf:.../minilm/model, layer l, data text, 3 examples x 2 units")
    assert describe({"model": {"name": "torchvision:resnet18"}})[:26] == "Model torchvision:resnet18"
    assert describe({"model": {"name": "hf:/models/gpt2"}}).startswith("Model hf:/models/gpt2,")


def test_a_store_without_class_labels_gets_no_class_figure_nor_labels_column(tmp_path):
    # a store made from a list of icon paths has no classes: its pages showed a class make-up of "(no label)" bars
    # and a "commonest labels" column of "(none) ×68"
    acts, _ = planted()
    n = len(acts)
    cv.ActivationStore.create(tmp_path / "store", acts, metadata=META,
                              examples={"id": [f"d{i}" for i in range(n)], "source": [f"sklearn-digits:{i}" for i in range(n)]})
    cv.disentangle(cv.ActivationStore.open(tmp_path / "store"), neuron=3, params=PARAMS).save(tmp_path / "neuron_3")
    index = write_report(tmp_path, neurons=[3], umap=False)
    page = (index.parent / "neuron_3.html").read_text()
    assert "Class labels of each concept" not in page and "commonest labels" not in page and "(none)" not in page
    assert not (index.parent / "assets" / "neuron_3" / "class_makeup.png").exists()
    assert (index.parent / "assets" / "neuron_3" / "top_activating.png").exists()
