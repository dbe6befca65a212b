"""`conceptvec reproduce`: the paper's ImageNet experiment in the authors' setting, with the paper's statements beside ours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.params import Params
from .app import app
from .common import EngineOpt, RayAddressOpt, cli_errors, console
from .options import method_options


@app.command()
@cli_errors
@method_options(only=("top",))  # the paper's setting: only N may change
def reproduce(
    imagenet: Annotated[Path, typer.Option("--imagenet", help="ImageNet's training set folder (train/, one folder per class).")],
    weights: Annotated[Path, typer.Option("--weights", help="torchvision's Inception V3 IMAGENET1K_V1 state dict (inception_v3_google-0cc3c7bd.pth).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder (run again to continue an interrupted reproduction).")],
    every: Annotated[int, typer.Option("--every", help="Every N-th image of the sorted list (the paper: 10, 128,117 images).")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    workers: Annotated[Optional[int], typer.Option("--workers", show_default="each stage's default", help="As in extract and scan (with --engine ray: Ray actors / tasks).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the HTML report of neurons 35, 16, 1 and the scan.")] = True,
    params: Params = Params(),
) -> None:
    """The paper's experiment: Inception V3 Mixed_7b over every 10th ImageNet training image, neurons 35, 16, 1 and the
    layer scan, with the paper's statements beside what this run finds."""
    from ..demo.reproduce import CAVEAT, reproduce as run

    result = run(imagenet, weights=weights, out=out, every=every, params=params, engine=engine,
                 ray_address=ray_address, workers=workers, batch_size=batch_size, device=device, report=report)
    console.print(f"[bold]the paper beside this run[/] ({result.store.n_examples:,} images, Mixed_7b)", highlight=False)
    for row in result.findings:
        console.print(f"{row['what']}\n  paper:    {row['paper']}\n  this run: {row['found']}", highlight=False, soft_wrap=True)
    console.print(f"caveat: {CAVEAT}.")
    console.print(f"written to {out} (store/, scan/, neuron_35/, neuron_16/, neuron_1/, reproduce.json"
                  + (f", report: {result.report})" if result.report else ")"))
