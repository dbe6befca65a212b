"""causal_effects: ablate each concept direction of a neuron (and the neuron, and random directions) in the
model and measure what changes, on the concept's members, the other concepts' members and random examples.

Every group of examples goes through the model once per batch with all interventions as branches
(:func:`~conceptvec.causal.interventions.branch_forward`): the layers below the intervention run once on
the batch and only the layers above run once per branch, when the model allows it (checked on the
first batch against repeating the input; a skip connection or a mask from below the layer does not).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..core.options import whole_number
from ..errors import ConceptvecError
from ..progress import progress_bar
from ..storage.causal_effects import CausalEffects
from ..storage.conceptset import ConceptSet, recorded_store
from ..storage.provenance import environment
from ..models.hooks import pool_output, resolve_device
from .interventions import Edits, as_directions, basis_direction, branch_forward, reference_mean, resolve_layer
from ..models.layers import LoadedModel

TASKS = ("auto", "classify", "causal-lm", "embed")
MODES = ("ablate", "mean")
ALPHAS = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


def random_directions(n: int, n_units: int, seed: int) -> np.ndarray:
    """``n`` random unit directions (n, n_units), normal draws from ``np.random.default_rng(seed)``."""
    d = np.random.default_rng(seed).normal(size=(n, n_units))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def example_batches(data: Any, indices: np.ndarray, batch_size: int):
    """Batches of inputs for the given example indices of ``data`` (a tensor, an array or an indexable dataset)."""
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        if isinstance(data, torch.Tensor):
            yield data[torch.as_tensor(idx)]
        elif isinstance(data, np.ndarray):
            yield torch.as_tensor(data[idx])
        else:
            items = [data[int(i)] for i in idx]
            items = [it[0] if isinstance(it, (tuple, list)) else it for it in items]
            yield torch.stack([torch.as_tensor(it) for it in items])


def model_outputs(out: Any, task: str) -> tuple[str, torch.Tensor]:
    """(task, tensor): logits (N, C) or (N, T, V), or a final embedding (N, D)."""
    logits = getattr(out, "logits", None)
    if task == "auto":
        if logits is not None:
            task = "causal-lm" if logits.ndim == 3 else "classify"
        elif isinstance(out, torch.Tensor) and out.ndim == 2:
            task = "classify"
        else:
            task = "embed"
    if task in ("classify", "causal-lm"):
        t = logits if logits is not None else out
        if not isinstance(t, torch.Tensor) or t.ndim != (3 if task == "causal-lm" else 2):
            raise ConceptvecError(f"task={task!r} needs logits of shape {'(N, T, vocab)' if task == 'causal-lm' else '(N, classes)'}; "
                                  f"this model gives {type(out).__name__}. Pass task='embed' for a model without a head.")
        return task, t.float()
    hidden = getattr(out, "last_hidden_state", out)
    if hasattr(hidden, "to_tuple"):
        hidden = hidden.to_tuple()[0]
    if isinstance(hidden, (tuple, list)):
        hidden = hidden[0]
    hidden = hidden.float()
    return task, hidden.mean(dim=1) if hidden.ndim == 3 else hidden.reshape(len(hidden), -1)


def branch_metrics(task: str, outs: torch.Tensor, x: torch.Tensor, targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per branch and example (B, N): the metric changes of each branch against branch 0 (unedited)."""
    base = outs[0:1]
    nan = torch.full(outs.shape[:2], float("nan"))
    if task == "embed":
        cos = F.cosine_similarity(outs, base.expand_as(outs), dim=-1)
        return {"d_logit": nan, "d_prob": nan, "kl": nan, "flip": nan, "d_loss": nan, "cos_change": 1 - cos}
    logp = outs.log_softmax(-1)
    pred = base.argmax(-1)  # (1, N[, T])
    target = pred if targets is None or task == "causal-lm" else targets.view(1, -1)
    if targets is not None and task != "causal-lm" and len(targets) and int(targets.max()) >= outs.shape[-1]:
        raise ConceptvecError(f"targets name class {int(targets.max())}, but the model gives {outs.shape[-1]} logits; give "
                              f"class indices from 0 to {outs.shape[-1] - 1}.")
    index = target.expand(outs.shape[:-1]).unsqueeze(-1)
    logit, lp = outs.gather(-1, index).squeeze(-1), logp.gather(-1, index).squeeze(-1)
    p0 = logp[0:1].exp()
    result = {
        "d_logit": logit - logit[0:1], "d_prob": lp.exp() - lp[0:1].exp(),
        "kl": (p0 * (logp[0:1] - logp)).sum(-1), "flip": (outs.argmax(-1) != pred).float(),
    }
    if task == "causal-lm":
        # the next-token loss on the example's own tokens
        nll = -logp[:, :, :-1].gather(-1, x[None, :, 1:].expand(len(outs), -1, -1).unsqueeze(-1)).squeeze(-1)
        result = {k: v.mean(-1) for k, v in result.items()}
        result["d_loss"] = nll.mean(-1) - nll[0:1].mean(-1)
    else:
        result["d_loss"] = nan
    result["cos_change"] = nan
    return result


class Brancher:
    """Runs edits as branches, sharing the layers below when the model allows (decided on the first call of 2+ examples).

    Called with N examples and B edits, it returns (task, outputs of shape (B, N, ...)) and keeps the
    edited layer output, pooled, in ``pooled`` (B, N, n_units). Unshared, the examples go in chunks of
    about N / B, so that each forward holds about N rows whichever way it runs.
    """

    pooled: torch.Tensor  # set by each call (and per forward by run's hook): not there before the first

    def __init__(self, module, layer, name, dev, share: bool | None):
        self.module, self.layer, self.name, self.dev, self.share = module, layer, name, dev, share

    def __call__(self, x: torch.Tensor, edits: Edits, task: str) -> tuple[str, torch.Tensor]:
        x = x.to(self.dev)
        if self.share is None and len(x) >= 2:  # one example broadcasts where several would not: decide on two
            self.share = self.can_share(x[:2], edits, task)
        share = bool(self.share)
        step = len(x) if share else -(-len(x) // edits.n_branches)
        outs, pooled = [], []
        for start in range(0, len(x), step):
            part = x[start:start + step]
            task, out = model_outputs(self.run(part, edits, share), task)
            outs.append(out.view(edits.n_branches, len(part), *out.shape[1:]))
            pooled.append(self.pooled)
        self.pooled = torch.cat(pooled, 1)
        return task, torch.cat(outs, 1)

    def run(self, x, edits, share):
        keep = self

        def pooled(out):  # the edited layer output, pooled, for the steering curve
            keep.pooled = pool_output(out.detach().float(), "avg").view(edits.n_branches, -1, out.shape[1 if out.ndim == 4 else -1])
            return out

        with torch.inference_mode():
            return branch_forward(self.module, self.layer, self.name, x, edits, share=share, after=pooled)

    def can_share(self, x, edits, task) -> bool:
        try:
            shared = self.run(x, edits, True)
        except (RuntimeError, ValueError):
            return False
        repeated = self.run(x, edits, False)
        a, b = (model_outputs(o, task)[1] for o in (shared, repeated))
        return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max().clamp(min=1))))


def causal_effects(model: Any, layer: str, concept_set: ConceptSet, *, data: Any, mode: str = "ablate", mean: Any = None,
                   centre: Any = None, n_random: int | None = None, random_examples: int = 500, groups: Mapping[str, Any] | None = None,
                   alphas: Sequence[float] = ALPHAS, targets: Any = None, task: str = "auto", seed: int = 0, batch_size: int = 64,
                   share: bool | None = None, device: str | None = None, progress: bool = False) -> CausalEffects:
    """Ablate each concept vector of ``concept_set`` (and the neuron, and random directions) at ``layer`` and measure.

    Parameters
    ----------
    model : nn.Module or LoadedModel, in eval mode
    layer : the layer the ConceptSet's activations came from
    concept_set : the neuron's ConceptSet; its example indices index ``data``
    data : the model's inputs for every example of the store, (n_examples, ...) tensor or array, or a
        dataset whose item i is example i's input (or a tuple starting with it); token ids for LMs
    mode : ``ablate`` (x - (x . v) v) or ``mean`` (x - ((x . v) - m) v; ``mean`` defaults to the store's mean row)
    centre : the layer's mean activation (n_units,) or an ActivationStore (its mean row): the concept directions are
        then the members' mean minus it, normalised (what sets a concept apart from the layer's average),
        instead of the paper's concept vectors, which on an all-positive layer all lie near the mean
    n_random : random unit directions as controls (default: as many as concepts, at least 3), seeded by ``seed``
    random_examples : size of the group of random examples (seeded by ``seed``)
    groups : more example groups to measure on, by name: example indices (e.g. every example of a class)
    alphas : steering strengths along each concept, in units of its members' mean projection on it
    targets : the class whose logit is measured for each example (n_examples,); default the unedited prediction
    task : ``auto``, ``classify`` (logits (N, C)), ``causal-lm`` (logits (N, T, V); next-token loss) or ``embed``
    share : run the layers below once and branch (None: when a check on the first batch allows it)
    device : where to run; None: where the model's parameters are (a device given moves the model there)

    Returns
    -------
    CausalEffects
        ``.effects`` (interventions x groups), ``.steering``, ``.selectivity()``, ``.save(out)``.
    """
    if mode not in MODES:
        raise ConceptvecError(f"unknown mode {mode!r}; valid: {', '.join(MODES)} (steering is measured by alphas).")
    if task not in TASKS:
        raise ConceptvecError(f"unknown task {task!r}; valid: {', '.join(TASKS)}.")
    if not isinstance(concept_set, ConceptSet):
        raise ConceptvecError(f"concept_set must be a ConceptSet (cv.disentangle(...), or cv.ConceptSet.load(path) for a folder), "
                              f"got {type(concept_set).__name__}.")
    if isinstance(data, torch.Tensor) and data.is_floating_point() and not bool(torch.isfinite(data).all()):
        raise ConceptvecError("data holds NaN or inf values; the model's outputs (and every effect) would be NaN. Give finite inputs.")
    if concept_set.n_concepts == 0:
        raise ConceptvecError("this ConceptSet has no concept: nothing to ablate. Disentangle a live neuron with concepts.")
    try:
        alphas = [float(a) for a in alphas]
    except (TypeError, ValueError):
        raise ConceptvecError(f"alphas must be numbers (steering strengths), got {alphas!r}.") from None
    if not all(np.isfinite(alphas)) or any(abs(a) > MAX_ALPHA for a in alphas):
        raise ConceptvecError(f"alphas must be finite and at most {MAX_ALPHA:g} in size (they are in units of the concept "
                              f"members' mean projection: {MAX_ALPHA:g} is already far beyond any activation the layer "
                              f"gives), got {alphas}.")
    random_examples, batch_size = whole_number("random_examples (--random-examples)", random_examples, 1), whole_number("batch_size", batch_size, 1)
    seed = whole_number("seed (--seed)", seed, 0)
    if n_random is not None:  # each control is one more forward pass over every group: 10**9 would never finish (or fit)
        n_random = whole_number("n_random (--random)", n_random, 0, MAX_RANDOM, why="each random direction is one more pass "
                                "over the examples; 3 to 20 show what chance gives")
    module, layer_module, name = resolve_layer(model, layer)
    try:
        n_data = len(data)
    except TypeError:
        raise ConceptvecError(f"data must hold the model's inputs of every example of the ConceptSet's store (a tensor, array or "
                              f"dataset), got {type(data).__name__}; cv.store_inputs(store, model) gives them for an image store.") from None
    n_units = concept_set.n_units
    concepts = as_directions(concept_set.concept_vectors, what="concept vectors")
    if centre is not None:
        c = reference_mean(centre, n_units)
        if isinstance(c, float):
            raise ConceptvecError(f"centre must be the layer's mean activation ({n_units},) or an ActivationStore, not one number.")
        means = [concept_set.top_activations[concept_set.labels == j].mean(axis=0) - c for j in range(len(concepts))]
        concepts = as_directions(np.stack(means), what="centred concept directions")
    neuron = concept_set.neuron_direction if concept_set.neuron is None else basis_direction(n_units, concept_set.neuron)
    n_random = max(3, len(concepts)) if n_random is None else int(n_random)
    directions = np.vstack([concepts, neuron[None], random_directions(n_random, n_units, seed)])
    names = ([f"concept {j}" for j in range(len(concepts))] + ["neuron"] + [f"random {r}" for r in range(n_random)])
    kinds = ["concept"] * len(concepts) + ["neuron"] + ["random"] * n_random
    shift = np.zeros(len(directions))
    if mode == "mean":
        ref = reference_mean(mean if mean is not None else _recorded_store(concept_set), n_units)
        shift = directions @ ref
    edits = Edits(np.vstack([np.zeros(n_units), directions]), np.r_[0.0, np.ones(len(directions))], np.r_[0.0, shift])

    top = concept_set.top_indices
    if top.max() >= n_data:
        raise ConceptvecError(f"the ConceptSet refers to example {int(top.max())} but data has {n_data} examples; give the inputs of every example of its store, in its order.")
    rng = np.random.default_rng(seed)
    named = {str(k): np.asarray(v, dtype=np.int64).ravel() for k, v in (groups or {}).items()}
    clash = [k for k in named if k == "random" or k.startswith("concept ")]
    if clash or any(len(v) == 0 or v.min() < 0 or v.max() >= n_data for v in named.values()):
        raise ConceptvecError(f"groups must map new names (not 'random' or 'concept j') to non-empty example indices below {n_data}.")
    measured = {f"concept {j}": concept_set.members(j) for j in range(len(concepts))}
    measured.update(named)
    measured["random"] = np.sort(rng.choice(n_data, size=min(random_examples, n_data), replace=False))
    target_values = None if targets is None else np.asarray(targets)
    if target_values is not None and not np.issubdtype(target_values.dtype, np.integer):
        raise ConceptvecError(f"targets must be whole class indices, one per example, got dtype {target_values.dtype}.")
    target_all = None if target_values is None else torch.as_tensor(target_values, dtype=torch.long)
    if target_all is not None and target_all.shape != (n_data,):
        raise ConceptvecError(f"targets must hold one class per example ({n_data},), got shape {tuple(target_all.shape)}.")
    if target_all is not None and n_data and int(target_all.min()) < 0:
        raise ConceptvecError(f"targets must be class indices from 0, got {int(target_all.min())}; give the class of each example.")
    if device is None:
        dev = next((p.device for p in module.parameters()), torch.device("cpu"))
    else:
        dev = resolve_device(device)
        module.to(dev)
    run = Brancher(module, layer_module, name, dev, share)
    found_task = task
    effects = []
    with progress_bar("ex", disable=not progress) as bar:
        job = bar.add_task(f"causal {name}", total=sum(len(g) for g in measured.values()))
        for group, idx in measured.items():
            sums: dict[str, torch.Tensor] = {}
            start = 0
            for x in example_batches(data, idx, batch_size):
                found_task, outs = run(x, edits, found_task)
                outs = outs.cpu()
                tgt = None if target_all is None else target_all[torch.as_tensor(idx[start:start + len(x)])]
                for k, v in branch_metrics(found_task, outs, x.cpu(), tgt).items():
                    sums[k] = sums.get(k, 0) + v.sum(1)
                start += len(x)
                bar.advance(job, len(x))
            for b in range(1, edits.n_branches):
                effects.append({"intervention": names[b - 1], "kind": kinds[b - 1], "group": group, "n_examples": int(len(idx)),
                                **{k: float(sums[k][b]) / len(idx) for k in sums}})
    steering = _steering(run, data, concept_set, concepts, measured, alphas, target_all, found_task, batch_size)
    params = {"mode": mode, "directions": "concept vectors" if centre is None else "centred: members' mean minus the layer mean, normalised",
              "seed": seed, "n_random": n_random, "random_examples": int(len(measured["random"])),
              "groups": list(named), "alphas": alphas,
              "alpha_unit": "the concept members' mean projection on the concept direction", "task": found_task,
              "targets": "given" if targets is not None else "the unedited model's prediction", "batch_size": batch_size,
              "shared_layers_below": bool(run.share)}
    provenance = {"model": model.describe() if isinstance(model, LoadedModel) else {"name": type(module).__name__},
                  "layer": name, "conceptset": concept_set.provenance, **environment()}
    return CausalEffects(effects, steering, params, provenance, concept_set.neuron)


def _recorded_store(cs: ConceptSet):
    from ..storage.store import ActivationStore

    path = recorded_store(cs)
    if not path:
        raise ConceptvecError("mode='mean' needs mean=: the ConceptSet records no store to take the reference mean from.")
    return ActivationStore.open(path)


MAX_ALPHA = 1e6
MAX_RANDOM = 1000  # random control directions at most


def _steering(run: Brancher, data, cs: ConceptSet, concepts: np.ndarray, groups, alphas, targets, task, batch_size) -> list[dict[str, Any]]:
    """Steer along each concept on its members: the layer's projection, the neuron's activation and the target logit."""
    if task == "embed":
        return []
    rows = []
    for j, v in enumerate(concepts):
        members = cs.top_activations[cs.labels == j]
        scale = float(np.mean(members @ v)) if len(members) else 1.0
        a = np.asarray(alphas) * scale
        # branch 0 unedited (its prediction is the target), then x + a_k v
        edits = Edits(np.vstack([np.zeros_like(v), np.repeat(v[None], len(a), 0)]), np.zeros(len(a) + 1), np.r_[0.0, a])
        idx = groups[f"concept {j}"]
        sums = np.zeros((len(a), 3))
        done = 0
        for x in example_batches(data, idx, batch_size):
            _, outs = run(x, edits, task)
            outs = outs.cpu()
            pooled = run.pooled.cpu().double().numpy()[1:]
            if targets is not None and task == "classify":
                tgt = targets[torch.as_tensor(idx[done:done + len(x)])].view(1, -1, 1)
            else:
                tgt = outs[0:1].argmax(-1, keepdim=True)
            logit = outs[1:].gather(-1, tgt.expand(len(a), *tgt.shape[1:])).squeeze(-1)
            logit = logit.mean(-1) if logit.ndim == 3 else logit
            neuron = pooled[..., cs.neuron] if cs.neuron is not None else pooled @ cs.neuron_direction
            sums += np.stack([(pooled @ v).sum(1), neuron.sum(1), logit.double().numpy().sum(1)], 1)
            done += len(x)
        means = sums / max(1, len(idx))
        broken = [alpha for alpha, row in zip(alphas, means) if not np.isfinite(row).all()]
        if broken:
            raise ConceptvecError(f"steering along concept {j} with alpha {', '.join(f'{a:g}' for a in broken)} makes the "
                                  f"model's outputs overflow (inf or NaN); give smaller alphas.")
        for alpha, (proj, act, logit) in zip(alphas, means):
            rows.append({"concept": f"concept {j}", "alpha": alpha, "projection": float(proj), "neuron_activation": float(act),
                         "target_logit": float(logit)})
    return rows


def store_inputs(store: Any, loaded: LoadedModel) -> Any:
    """The model's input for every example of ``store``, in its order, from the examples' ``source`` strings:
    a tensor for the bundled digits, else a dataset that reads and prepares each image when asked."""
    from torch.utils.data import Dataset

    from ..sources.images import load_example_image
    from ..sources.digits import DIGITS_PREFIX, load_digits_images
    from ..models.digits import preprocess_digits

    sources = [str(s) for s in store.sources]
    if sources and all(s.startswith(DIGITS_PREFIX) for s in sources):
        images, _ = load_digits_images()
        return preprocess_digits(images[[int(s[len(DIGITS_PREFIX):]) for s in sources]])
    if loaded.transform is None:
        raise ConceptvecError(f"model {loaded.name} has no preprocessing of its own to prepare the store's examples; call "
                              f"cv.causal_effects(model, layer, concept_set, data=...) with the prepared inputs.")
    transform = loaded.transform  # not None (checked above), a name the class below sees narrowed
    data = store.metadata.get("data")
    root = data.get("root") if isinstance(data, dict) else None
    background = data.get("background") if isinstance(data, dict) else None  # as extraction composited them

    class StoreImages(Dataset):
        def __len__(self) -> int:
            return len(sources)

        def __getitem__(self, i: int) -> torch.Tensor:
            return transform(load_example_image(sources[i], root, background))

    return StoreImages()


def run_causal(run_dir: Any, *, neuron: int, mode: str = "ablate", centred: bool = False, n_random: int | None = None,
               random_examples: int = 500,
               alphas: Sequence[float] = ALPHAS, seed: int = 0, batch_size: int = 64, device: str = "auto",
               overwrite: bool = False, progress: bool = True) -> tuple[CausalEffects, Any]:
    """Causal effects of neuron ``neuron`` of a run: its ConceptSet ``RUN/neuron_<n>``, the model, layer and examples
    its store records; written to ``RUN/neuron_<n>/causal/``. ``centred``: ablate the concept directions centred
    on the store's mean row (see :func:`causal_effects`). Returns the effects and that folder."""
    from ..storage.atomic import refuse_existing
    from ..storage.causal_effects import METADATA_FILE as CAUSAL_FILE
    from ..storage.rundir import RunDir
    from ..models.load import load_model

    run = RunDir(run_dir)
    cs, cs_dir = run.neuron_conceptset(neuron, python="cv.causal_effects from Python")
    out = run.causal(int(neuron))
    refuse_existing(out, overwrite=overwrite, what="causal effects", marker=CAUSAL_FILE)
    dev = resolve_device(device)
    source = run.model_source(cs)
    store = run.open_store([cs])
    store.check_made_from(cs.provenance, what=f"the ConceptSet {cs_dir}")  # its example indices index that store only
    loaded = load_model(source["model"]["name"], source["model"].get("weights"), **source["load"])
    effects = causal_effects(loaded, source["layer"], cs, data=store_inputs(store, loaded), mode=mode,
                             mean=store if mode == "mean" else None, centre=store if centred else None, n_random=n_random, random_examples=random_examples,
                             alphas=alphas, seed=seed, batch_size=batch_size, device=str(dev), progress=progress)
    effects.provenance["store"] = store.provenance()
    effects.provenance["conceptset_path"] = str(cs_dir.resolve())
    effects.save(out, overwrite=True)
    return effects, out
