"""The atlas beside what other commands found: causal selectivity (`conceptvec causal`) in the overview and on the
neuron and concept pages, and a dictionary's atoms (`conceptvec compare-dictionary`) on the neuron page; absent
gracefully where those were not run."""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from test_atlas import ARGS, CHROMIUM, needs_chromium, read_data

import conceptvec as cv
from conceptvec.core.planted import planted_shared_layer
from conceptvec.report.atlas.build import neuron_file

pytestmark = pytest.mark.slow  # the run's fixture (torch, a scan, a causal run, two atlases) takes about 8 s

PARAMS = cv.Params(distance_threshold="auto", outlier_threshold="auto")
CAUSAL_NEURON, OTHER_NEURON = 2, 5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A planted layer (12 neurons) on digit images, scanned; an atlas before and one after a causal run on neuron 2 (a toy
    model reading the layer through a linear head) and a comparison with a dictionary of the planted facets' directions."""
    import torch

    from conceptvec.dictionary.model import Dictionary
    from conceptvec.sources.digits import load_digits_images

    root = tmp_path_factory.mktemp("beside")
    run = cv.RunDir(root / "run")
    layer = planted_shared_layer(48, n_neurons=12, n_shared=3, n_background=300, seed=0)
    _, digits = load_digits_images()
    n = len(layer.acts)
    store = cv.ActivationStore.create(run.store, layer.acts, metadata={"model": {"name": "planted"}, "layer": "planted",
                                                                      "data": {"kind": "sklearn-digits"}},
                                      examples={"id": [f"d{i}" for i in range(n)], "label": digits[:n].tolist(),
                                                "label_name": [str(d) for d in digits[:n]], "source": [f"sklearn-digits:{i}" for i in range(n)]})
    scan = cv.scan_layer(store, params=PARAMS, neurons=list(range(12)), workers=1, progress=False, out=run.scan)
    before = cv.write_atlas(run.path, out=root / "before", shared=False, progress=False, map_method="pca")

    torch.manual_seed(0)
    model = torch.nn.Sequential(OrderedDict(layer=torch.nn.Identity(), head=torch.nn.Linear(48, 4))).eval()
    cs = cv.disentangle(store, neuron=CAUSAL_NEURON, params=PARAMS)
    cs.save(run.neuron(CAUSAL_NEURON))
    effects = cv.causal_effects(model, "layer", cs, data=torch.from_numpy(layer.acts), random_examples=100, seed=0)
    effects.save(run.causal(CAUSAL_NEURON))
    # atoms: the mean activation of each (neuron, facet) the layer planted, so each concept has an atom it matches
    keys = sorted({(int(o), int(f)) for o, f in zip(layer.owner, layer.facet) if o >= 0})
    decoder = np.stack([layer.acts[(layer.owner == o) & (layer.facet == f)].mean(axis=0) for o, f in keys]).astype(np.float32)
    dic = Dictionary(decoder=decoder, bias=np.zeros(48, np.float32), method="planted", config={"k": 1})
    comparison = cv.compare_scan_with_dictionary(cv.ScanResult.load(run.scan), dic, baseline="random")
    comparison.save(run.path / "dictionary-comparison")
    after = cv.write_atlas(run.path, out=root / "after", shared=False, progress=False, map_method="pca")
    return run, scan, cs, effects, comparison, before, after


def test_data_files_hold_the_causal_selectivity_and_the_atoms(run):
    _, scan, cs, effects, comparison, before, after = run
    pos = scan.position(CAUSAL_NEURON)
    old = read_data(before.parent / "data" / "overview.js")
    assert old["rows"]["causal"] == old["rows"]["atom_cos"] == [None] * len(scan) and old["dictionary"] is None
    assert read_data(before.parent / "data" / neuron_file(pos))["causal"] is None
    overview = read_data(after.parent / "data" / "overview.js")
    selectivity = effects.selectivity()
    passed = sum(r["more_than_other_concepts"] is not False and r["more_than_random_examples"] and
                 r["more_than_random_directions"] is not False for r in selectivity)
    assert overview["rows"]["causal"] == [passed if i == pos else None for i in range(len(scan))]
    assert overview["dictionary"]["method"] == "planted" and overview["dictionary"]["source"].endswith("dictionary-comparison")
    lowest = {n: min(c.cosine) for n, c in comparison.comparisons.items()}
    assert overview["rows"]["atom_cos"] == [round(lowest[n], 4) if n in lowest else None for n in scan.neurons.tolist()]
    neuron = read_data(after.parent / "data" / neuron_file(pos))
    causal = neuron["causal"]["concepts"]
    assert [c["own"] for c in causal] == [round(r["hurt_own"], 4) for r in selectivity]
    assert [c["members"] for c in causal] == [int(np.sum(cs.labels == j)) for j in range(cs.n_concepts)]
    # the causal run's ConceptSet was cut with the scan's parameters: each of its concepts is the scan's concept j
    assert [c["scan_concept"] for c in causal] == list(range(cs.n_concepts)) and all(c["cosine"] > 0.9999 for c in causal)
    for n in scan.neurons.tolist():
        atoms = read_data(after.parent / "data" / neuron_file(scan.position(n)))["dictionary"]
        assert [c["atom"] for c in atoms["concepts"]] == comparison.comparisons[n].matched_atom
        assert all(c["cosine"] > 0.9 for c in atoms["concepts"])  # the planted directions are the concepts' atoms


def test_a_comparison_of_another_scan_or_a_causal_run_of_another_store_is_not_shown(run, tmp_path):
    import json

    from conceptvec.report.atlas.beside import causal_by_row, find_comparison

    r, scan, *_ = run
    saved = json.loads((r.path / "dictionary-comparison" / "comparison.json").read_text())
    first = next(iter(saved["neurons"]))
    saved["neurons"][first]["matched_atom"].append(7)  # one concept more than the scan has for that neuron
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "comparison.json").write_text(json.dumps(saved))
    assert find_comparison([tmp_path], scan) is None and find_comparison([r.path], scan) == r.path / "dictionary-comparison"
    other = cv.ActivationStore.create(tmp_path / "store", np.ones((5, 48), np.float32))
    assert causal_by_row(scan, r, other) == {}


@needs_chromium
@pytest.mark.browser
def test_causal_and_atoms_in_chromium(run):
    from playwright.sync_api import sync_playwright

    _, scan, cs, effects, comparison, before, after = run
    pos = scan.position(CAUSAL_NEURON)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # without a causal run or a comparison: no column, no section
        page.goto(Path(before).resolve().as_uri() + f"#n/{pos}")
        page.wait_for_selector(f"body[data-view='neuron:{CAUSAL_NEURON}']")
        assert page.locator("#causal").count() == 0 and page.locator("#atoms").count() == 0
        page.goto(Path(before).resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator(".thead div[data-col='causal'], .thead div[data-col='atom_cos']").count() == 0
        # with them: a sortable column, the neuron's first whichever way (the rest have none)
        url = Path(after).resolve().as_uri()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        passed = sum(r["more_than_other_concepts"] is not False and r["more_than_random_examples"] and
                     r["more_than_random_directions"] is not False for r in effects.selectivity())
        for _ in range(2):
            page.click(".thead div[data-col='causal']")
            assert page.locator(".row").first.get_attribute("data-neuron") == str(CAUSAL_NEURON)
            assert f"{passed} of {cs.n_concepts}" in page.locator(".row").first.inner_text()
        # sorted by the lowest cosine of a concept with its atom: the neuron whose concepts all match best first
        page.click(".thead div[data-col='atom_cos']")
        lowest = {n: round(min(c.cosine), 4) for n, c in comparison.comparisons.items()}
        first = int(page.locator(".row").first.get_attribute("data-neuron"))
        assert lowest[first] == max(lowest.values()) and first == min(n for n, v in lowest.items() if v == lowest[first])
        page.click(".thead div[data-col='atom_cos']")  # again: the worst first
        assert lowest[int(page.locator(".row").first.get_attribute("data-neuron"))] == min(lowest.values())
        page.click(".thead div[data-col='causal']")
        page.locator(".row").first.locator("a").click()
        page.wait_for_selector(f"body[data-view='neuron:{CAUSAL_NEURON}']")
        rows = page.locator("#causal tr")
        assert rows.count() == cs.n_concepts + 1
        verdicts = [rows.nth(j + 1).locator("td").last.inner_text() for j in range(cs.n_concepts)]
        assert verdicts == ["yes" if r["more_than_other_concepts"] is not False and r["more_than_random_examples"]
                            and r["more_than_random_directions"] is not False else "no" for r in effects.selectivity()]
        atoms = page.locator("#atoms tr")
        assert atoms.count() == scan.n_concepts[pos] + 1
        matched = comparison.comparisons[CAUSAL_NEURON]
        assert atoms.nth(1).locator("td").nth(1).inner_text() == f"atom {matched.matched_atom[0]}"
        assert atoms.nth(1).locator("td").nth(3).inner_text() == f"{round(matched.member_share[0] * 100)}%"
        # a neuron without a causal run has the atoms only; a concept page has both lines
        page.goto(url + f"#n/{scan.position(OTHER_NEURON)}")
        page.wait_for_selector(f"body[data-view='neuron:{OTHER_NEURON}']")
        assert page.locator("#causal").count() == 0 and page.locator("#atoms tr").count() == scan.n_concepts[scan.position(OTHER_NEURON)] + 1
        page.goto(url + f"#c/{pos}/0")
        page.wait_for_selector(f"body[data-view='concept:{CAUSAL_NEURON}:0']")
        assert f"atom {matched.matched_atom[0]}" in page.inner_text("#concept-atom")
        assert page.locator(".concept-causal").count() == 1
        browser.close()
    assert errors == []
