"""`conceptvec ...`: a thin command-line shell over the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import ConceptvecError
from ..core.evidence import count_words
from ..core.params import Params
from ..extraction.config import ExtractConfig
from ..featureviz.params import FeatureVizParams
from ..study.config import StudyConfig
from .common import EngineOpt, OverwriteOpt, RayAddressOpt, SeedOpt, StoreArg, cli_errors, concept_table, console
from .options import config_options, method_options

app = typer.Typer(
    help="Disentangle polysemantic neurons into concept vectors (O'Mahony et al., CVPR 2023 workshops).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where to write the demo run (a new or empty folder, or an earlier run of the same settings).")] = Path("conceptvec-demo"),
    retrain: Annotated[bool, typer.Option("--retrain", help="Train the digits CNN here instead of using the shipped weights. Seeded training still "
                                          "differs across CPUs and thread counts, so the numbers may then differ from the README's.")] = False,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs with --retrain (default 120, as the shipped weights).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the method's k-means, and of the training with --retrain.")] = 0,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write the HTML report.")] = True,
    control: Annotated[bool, typer.Option("--control", help="Also compare with a 10-class control network (shipped, or trained with --retrain).")] = False,
    text: Annotated[bool, typer.Option("--text", help="The language demo instead: all-MiniLM-L6-v2 over standard-library docstrings (pip install 'conceptvec\\[text]').")] = False,
    top: Annotated[Optional[int], typer.Option("--top", help="With --text: each neuron's top sentences (default 50; above 50 the demo reads a larger corpus of docstrings, docs/text.md).")] = None,
) -> None:
    """Offline demo: split a polysemantic neuron of a CNN trained on bundled digits into concept vectors."""
    from ..demo.demo import control_comparison, run_demo

    if text:
        from .textdemo import DEFAULT_OUT, text_demo

        if retrain or epochs is not None or control:
            raise ConceptvecError("--retrain, --epochs and --control belong to the digits demo; --text runs its controls itself.")
        return text_demo(DEFAULT_OUT if out == Path("conceptvec-demo") else out, seed=seed, report=report, top=top)
    if top is not None:
        raise ConceptvecError("--top belongs to the text demo (--text); the digits demo's top is the paper's 100.")

    result = run_demo(out, retrain=retrain, epochs=epochs, seed=seed, report=report)
    cs, store = result.concept_set, result.store
    p = result.params
    w = result.weights
    if w["source"] == "shipped":
        weights = "shipped weights"
    else:
        weights = f"{'reused, ' if w['reused'] else ''}trained here ({w['train']['epochs']} epochs, seed {w['train']['seed']})"
    console.print(f"[bold]model[/] digits CNN, classes merging 0|5 1|6 2|7 3|8 4|9, {weights}: "
                  f"{result.test_accuracy:.1%} test accuracy; layer {store.metadata['layer']}, {store.n_examples} examples x {store.n_units} units")
    console.print(f"[bold]thresholds[/] auto: a split is kept when one concept alone would look this split with probability "
                  f"below {p.significance:g}; no scale to tune (see {result.out / 'demo.json'})")
    split = sum(r["split"] for r in result.merged_units)
    console.print(f"[bold]planted evidence[/] {len(result.merged_units)} units mix a merged pair among their top "
                  f"{p.top}; the method splits the pair into separate concepts in {split} of them")
    console.print(f"[bold]neuron {result.neuron}[/] chosen because {cs.provenance['chosen_because']}")
    console.print(f"C = {cs.n_agglomerative} clusters: {count_words(cs.n_concepts, cs.evidence)} (the method keeps "
                  f"{cs.n_concepts}), {int(cs.outliers.sum())} outliers, {int((~cs.kept).sum())} of {len(cs.labels)} examples removed")
    console.print(concept_table(cs, store.label_names, title=f"concepts of neuron {result.neuron}"))
    console.print(f"[bold]ConceptSet[/] {result.out / f'neuron_{result.neuron}'}")
    for path in result.figures:
        console.print(f"[bold]figure[/] {path}")
    if result.report:
        console.print(f"[bold]report[/] {result.report}")
    if result.atlas:
        console.print(f"[bold]atlas[/] {result.atlas} (every unit of the layer)")
    if control:
        rows = control_comparison(out, retrain=retrain, epochs=epochs, seed=seed)
        table = Table(title="planted vs control: units whose top examples mix two digits")
        for col in ("network", "test accuracy", "mixing units", "of them a merged pair"):
            table.add_column(col, justify="right")
        for name in ("merged", "control"):
            r = rows[name]
            table.add_row(f"{r['classes']} classes" + (" (pairs merged)" if name == "merged" else " (control)"),
                          f"{r['test_accuracy']:.1%}", str(r["mixing"]), str(r["mixing_a_merged_pair"]))
        console.print(table)
        console.print(f"by chance {rows['chance_share_of_merged_pairs']:.0%} of digit pairs are merged pairs; see {Path(out) / 'control.json'}")


@app.command()
@cli_errors
@config_options(ExtractConfig)
def extract(
    model: Annotated[str, typer.Option("--model", help="digits, torchvision:NAME, timm:NAME, hf:DIR (vision or language model) or checkpoint:FILE (TorchScript).")],
    layer: Annotated[list[str], typer.Option("--layer", help="Module name as the model names it; 'list' prints them. Repeat for several layers in one pass (one store each, under --out/<layer>).")],
    data: Annotated[Optional[str], typer.Option("--data", help="digits, an image folder (class sub-folders or flat), or a text file of paths; for a language model a .txt (one document a line), .jsonl/.csv/.parquet, a folder of .txt files or a saved dataset.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory of the ActivationStore (run again to resume).")] = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    config: ExtractConfig = ExtractConfig(),
    overwrite: OverwriteOpt = False,
) -> None:
    """Pool a layer's activations over a dataset into an ActivationStore (resumable: run again after an interruption)."""
    from ..extraction.pipeline import extract as run_extract
    from ..models.layers import list_layers
    from ..models.load import load_model

    if layer == ["list"]:
        loaded = load_model(model, config.weights, key_map=config.key_map, mean=config.mean, std=config.std, size=config.size,
                            transform_input=config.transform_input)
        table = Table(title=f"layers of {loaded.name}")
        for col in ("layer", "type", "output shape"):
            table.add_column(col)
        for name, kind, shape in list_layers(loaded):
            table.add_row(name, kind, "x".join(map(str, shape)) if shape else "-")
        console.print(table)
        return
    if data is None or out is None:
        raise ConceptvecError("extract needs --data and --out (or --layer list to see the layers).")
    made = run_extract(model, layer=layer[0] if len(layer) == 1 else layer, data=data, out=out, config=config, engine=engine,
                       ray_address=ray_address, overwrite=overwrite)
    for store in (made.values() if isinstance(made, dict) else [made]):
        skipped = store.metadata.get("skipped", {}).get("count", 0)
        what = "empty or unreadable row(s)" if store.metadata.get("data", {}).get("kind") == "text" else "unreadable file(s)"
        console.print(f"{store}" + (f"; {skipped} {what} skipped, listed in metadata.json" if skipped else ""))


@app.command()
@cli_errors
@method_options
def disentangle(
    store: StoreArg,
    out: Annotated[Path, typer.Option("--out", help="Directory for the ConceptSet.")],
    neuron: Annotated[Optional[int], typer.Option("--neuron", help="Unit to disentangle.")] = None,
    direction: Annotated[Optional[Path], typer.Option("--direction", help="A .npy vector to start from instead of a neuron.")] = None,
    stability: Annotated[int, typer.Option("--stability", help="Bootstrap runs that check each concept comes back (members' Jaccard >= 0.75); 0 skips. The command checks by default (20) so that its table says which concepts come back; cv.disentangle skips it unless asked (0).")] = 20,
    overwrite: OverwriteOpt = False,
    params: Params = Params(),
) -> None:
    """Split one neuron (or direction) of a store into concept vectors with the paper's method."""

    from ..scan.disentangle import disentangle as run
    from ..scan.evidence import concept_evidence
    from ..storage.files import read_npy
    from ..storage.store import ActivationStore

    if params.representation in ("attribution", "excitation"):  # before the store is read: the CLI has no model to pass
        raise ConceptvecError(
            f"--representation {params.representation} needs the model's gradients, which the command line does not compute: "
            f"from Python, cv.disentangle(store, neuron=N, params=cv.Params(representation={params.representation!r}), "
            "attribution=cv.LayerAttribution(model, layer=..., below=..., inputs=...)) (docs/thresholds.md); here use "
            "activations or contributions.")
    acts = ActivationStore.open(store)
    vector = None
    if direction is not None:
        if not direction.exists():
            raise ConceptvecError(f"direction file {direction} does not exist.")
        vector = read_npy(direction, what="--direction")
    cs = run(acts, neuron=neuron, direction=vector, params=params, stability=stability)
    concept_evidence(cs, labels=acts)  # saved with the set: the table and the report show each concept's verdict
    cs.save(out, overwrite=overwrite)
    start = f"neuron {neuron}" if neuron is not None else f"direction {direction}"
    console.print(f"{start}: C = {cs.n_agglomerative} clusters: {count_words(cs.n_concepts, cs.evidence)} (the method keeps "
                  f"{cs.n_concepts}), {int(cs.outliers.sum())} outliers")
    if not cs.is_live:
        console.print(f"[yellow]warning:[/] {start} is not live: {cs.dead_reason}. Lower --top or pick another.")
    console.print(concept_table(cs, acts.label_names))
    console.print(f"ConceptSet written to {out}")


@app.command()
@cli_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory: store/, ConceptSet folders (neuron_N/), scan/.")],
    neurons: Annotated[Optional[str], typer.Option("--neurons", help="Neurons to give a page, e.g. 35 or 0-9,35; default the saved ConceptSets and the scan's most polysemantic.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Report folder; default RUN_DIR/report (an earlier report there is replaced; nothing else is).")] = None,
    umap: Annotated[bool, typer.Option("--umap/--no-umap", help="Draw the UMAP figure (paper Fig. 2): about 4 s once, then a tenth of a second per neuron.")] = True,
) -> None:
    """Write a static HTML report (index + a page per neuron, every figure, a live distance-threshold slider) that opens offline."""
    from ..report.html import write_report

    index = write_report(run_dir, neurons=neurons, out=out, umap=umap)
    console.print(f"report written to {index}")


@app.command()
@cli_errors
def atlas(
    run_dir: Annotated[Path, typer.Argument(help="Run directory holding scan/ (conceptvec scan STORE --out RUN/scan), or a scan folder.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Atlas folder; default RUN_DIR/atlas (an earlier atlas there is replaced; nothing else is).")] = None,
    shared: Annotated[bool, typer.Option("--shared/--no-shared", help="Find the concepts that neurons share (saved beside the scan).")] = True,
    map_method: Annotated[str, typer.Option("--map", help="Layout of the map of concept vectors: auto (UMAP from 15 up to 50,000 concepts, else PCA), umap or pca.")] = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Write the layer atlas: every scanned neuron and concept, the layer's map and shared concepts, one offline site.

    Where the run holds them it also shows `conceptvec thresholds`' figure, `conceptvec causal`'s selectivity and a
    `conceptvec compare-dictionary` comparison of the scan (docs/atlas.md)."""
    from ..report.atlas import write_atlas

    index = write_atlas(run_dir, out=out, shared=shared, map_method=map_method, seed=seed)
    console.print(f"atlas written to {index} (open it in a browser; it needs no server)")


@app.command()
@cli_errors
@config_options(FeatureVizParams, into="params", only=("steps", "seed"))
def featureviz(
    run_dir: Annotated[Path, typer.Argument(help="Run directory: store/ and the neuron's ConceptSet neuron_N/.")],
    neuron: Annotated[int, typer.Option("--neuron", help="Neuron whose ConceptSet (RUN_DIR/neuron_N) is visualised.")],
    # unlike cv.feature_visualisation's 224: a run knows its model, whose input size fits it
    size: Annotated[Optional[int], typer.Option("--size", help="Image side in pixels; default the model's input size (224 for torchvision).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    overwrite: OverwriteOpt = False,
    params: FeatureVizParams = FeatureVizParams(),
) -> None:
    """Feature visualisation of a neuron and of its concept vectors, optimised in one batch (the paper's Fig. 3)."""
    from ..featureviz import run_featureviz

    result = run_featureviz(run_dir, neuron=neuron, steps=params.steps, size=size, seed=params.seed, device=device,
                            overwrite=overwrite, progress=True)
    fv, out = result
    for name, value in zip(["neuron"] + [f"concept {j}" for j in range(len(fv.images) - 1)], fv.objective):
        console.print(f"{name}: objective {value:.3f}")
    if fv.interrupted:
        console.print(f"[bold]interrupted[/] after {max(fv.steps_done)} of {params.steps} steps; the images so far are in {out} (marked partial)")
        raise typer.Exit(130)
    console.print(f"feature visualisation written to {out}")


study_app = typer.Typer(
    help="The paper's human evaluation: make an offline intruder/labelling form from a run's concepts, then score the answers.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")
# The command's earlier name, for scripts written before it took the name of its stage (study/); not in --help.
app.add_typer(study_app, name="humaneval", hidden=True)


@study_app.command("make")
@cli_errors
@config_options(StudyConfig)
def study_make(
    run: Annotated[Path, typer.Argument(help="A scan directory, a ConceptSet, or a run directory holding scan/ or neuron_N/ sets.")],
    out: Annotated[Path, typer.Option("--out", help="Study folder: form.html (for participants), key.json and study.json (yours).")],
    neurons: Annotated[Optional[str], typer.Option("--neurons", help="Neurons whose concepts are asked about, e.g. 0-7; default the run's first 8 (the paper).")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Labels for the agree questions: JSON {\"35:0\": \"apples\"} or CSV neuron,concept,label; default the most common class among each concept's members.")] = None,
    overwrite: OverwriteOpt = False,
    config: StudyConfig = StudyConfig(),
) -> None:
    """Write an offline study form (form.html) and its separate answer key (key.json)."""
    from ..study import make_study

    study = make_study(run, out, neurons=neurons, labels=labels, overwrite=overwrite, config=config)
    counts = {kind: len(study.questions(kind)) for kind in ("intruder", "label", "agree")}
    console.print(f"study {study.study_id}: {counts['intruder']} intruder, {counts['label']} free-label and {counts['agree']} "
                  f"agree question(s) on the concepts of neurons {study.meta['neurons']}")
    other = sum(study.key[q]["intruder"]["from"] == "another neuron" for q in study.questions("intruder"))
    if other:
        console.print(f"{other} intruder question(s) take the intruder from another neuron (their neuron has one concept)")
    if study.meta["not_live_left_out"]:
        console.print(f"[yellow]left out[/] (not live): neurons {study.meta['not_live_left_out']}")
    console.print(f"give participants {out / 'form.html'} only; keep {out / 'key.json'} to score their CSVs with "
                  f"`conceptvec study score {out} ANSWERS.csv ...`")


@study_app.command("score")
@cli_errors
def study_score(
    study: Annotated[Path, typer.Argument(help="The study folder from `conceptvec study make`.")],
    answers: Annotated[list[Path], typer.Argument(help="CSV files exported from the form (rater,question,answer).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON only.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where scores.json and scores.png go; default STUDY/scores (replaced).")] = None,
) -> None:
    """Score participants' answers: intruder accuracy (95 % Wilson interval, chance), agreement, Fleiss' kappa, labels."""
    import json
    from collections import Counter

    from ..study import SCORE_DIR, score_study, write_scores

    scores = score_study(study, answers)
    folder = write_scores(scores, out or study / SCORE_DIR, answer_files=answers, study=study)
    d = scores.to_dict()
    if as_json:
        print(json.dumps(d, indent=2))
        return
    lo, hi = d["intruder_ci95"]
    console.print(f"study {d['study_id']}: {d['n_raters']} rater(s)")
    if d["intruder_answers"]:
        console.print(f"[bold]intruder accuracy[/] {d['intruder_accuracy']:.1%} of {d['intruder_answers']} answers "
                      f"(95 % Wilson {lo:.1%}-{hi:.1%}; chance {d['intruder_chance']:.1%})")
    if d["agreement_answers"]:
        lo, hi = d["agreement_ci95"]
        console.print(f"[bold]agreement with given labels[/] {d['agreement_rate']:.1%} of {d['agreement_answers']} answers "
                      f"(95 % Wilson {lo:.1%}-{hi:.1%})")
    for kind, k in d["fleiss_kappa"].items():
        if k["questions"]:
            value = "undefined" if k["kappa"] is None else f"{k['kappa']:.3f}"
            console.print(f"Fleiss' kappa ({kind}): {value} over {k['raters']} rater(s) who answered all {k['questions']}"
                          + (f" ({k['note']})" if "note" in k else ""))
    table = Table(title="per question")
    for col in ("question", "type", "concept", "answers", "share", "95 % CI", "note"):
        table.add_column(col)
    for kind, key in (("intruder", "intruder_questions"), ("agree", "agree_questions")):
        for q, v in d[key].items():
            share = v["accuracy"] if kind == "intruder" else v["rate"]
            note = f"from {v['intruder_from']}, chance {v['chance']:.0%}" if kind == "intruder" else f"label {v['label']!r}"
            table.add_row(q, kind, f"{v['neuron']}:{v['concept']}", str(v["n"]), "-" if share is None else f"{share:.0%}",
                          "-" if v["n"] == 0 else f"{v['ci95'][0]:.0%}-{v['ci95'][1]:.0%}", note)
    console.print(table)
    for item in d["labels"]:
        counts = Counter(x["label"] for x in item["labels"])
        given = "; ".join(f"{label!r} x{n}" for label, n in counts.most_common()) or "-"
        console.print(f"labels for concept {item['neuron']}:{item['concept']} ({item['question']}): {given}")
    if d["unanswered"]:
        console.print(f"[yellow]unanswered[/] {d['unanswered']}")
    console.print(f"scores written to {folder} (scores.json, scores.png)")
