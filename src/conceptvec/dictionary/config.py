"""Options of a dictionary fit (:class:`DictionaryConfig`), declared once; imports no torch.

``cv.fit_dictionary`` takes the same keywords and ``conceptvec dictionary`` the same options.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConceptvecError
from ..core.options import at_least, boolean, check_fields, documented, one_of, option, optional, positive_number, whole_number

METHODS = {
    "topk_sae": "TopK sparse autoencoder (Gao et al. 2024) in PyTorch: each example keeps its k largest codes",
    "nmf": "non-negative matrix factorisation (scikit-learn's MiniBatchNMF); the activations must be >= 0",
    "dictionary_learning": "sparse dictionary learning (scikit-learn's MiniBatchDictionaryLearning), codes by OMP with k atoms",
}

SAE_ONLY = ("lr", "aux_k", "aux_alpha", "dead_after")  # options of the TopK SAE alone
MAX_EPOCHS = 10_000  # passes over the store at most: 10**9 (a typo) would run for ever with no output


@documented
@dataclass(frozen=True)
class DictionaryConfig:
    """How a dictionary of a layer is fitted; written beside it (``dictionary.json``)."""

    n_atoms: int = option(256, "Number of atoms (SAE features); e.g. 8 x the layer's width.", check=at_least(1))
    method: str = option("topk_sae", "topk_sae, nmf or dictionary_learning (see METHODS).", check=one_of(tuple(METHODS)))
    k: int = option(16, "Active atoms per example: TopK's k, the OMP atoms of dictionary_learning (NMF: unused).",
                    check=at_least(1))
    epochs: int = option(5, "Passes over the store.", check=lambda name, value: whole_number(
        name, value, 1, MAX_EPOCHS, why="each epoch reads the whole store; 5 to 50 is usual"))
    batch_size: int = option(1024, "Examples per optimiser step (SAE) or partial_fit call.", check=at_least(1))
    block_rows: int | None = option(None, "Rows of the store read at once (memory is bounded by this); default: about 64 MiB.",
                                    check=optional(at_least(1)), type=int, show_default="about 64 MiB of rows")
    lr: float = option(1e-3, "Adam's learning rate (topk_sae).", check=positive_number)
    alpha: float = option(0.1, "Sparsity penalty of dictionary_learning / NMF (scikit-learn's alpha).", check=positive_number)
    aux_k: int | None = option(None, "Dead atoms trained by the AuxK loss (Gao et al. 2024, topk_sae): each step the k_aux "
                                     "dead atoms with the largest pre-activations reconstruct the residual the k active ones "
                                     "left; 0 turns it off.", check=optional(at_least(0)), type=int,
                               show_default="half the layer's width")
    aux_alpha: float = option(1 / 32, "Weight of the AuxK loss beside the reconstruction loss (Gao et al.: 1/32).",
                              check=positive_number)
    dead_after: int | None = option(None, "Examples an atom may go without firing before the AuxK loss counts it dead.",
                                    check=optional(at_least(1)), type=int,
                                    show_default="the store's rows, at most 10,000,000 (Gao et al.'s window)")
    shuffle: bool = option(False, "Fit on shuffled activations (every unit's values permuted within each block): the "
                                  "baseline a real dictionary is compared against.", check=boolean)
    seed: int = option(0, "Seed of the initialisation and of the order of blocks and rows.", check=at_least(0))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.method != "topk_sae":  # the SAE's own options would be recorded, never applied
            given = [f.name for f in fields(self) if f.name in SAE_ONLY and getattr(self, f.name) != f.default]
            if given:
                flags = ", ".join(f"{name} (--{name.replace('_', '-')})" for name in given)
                raise ConceptvecError(f"{flags} {'is' if len(given) == 1 else 'are'} for method topk_sae only; {self.method} "
                                      f"would ignore {'it' if len(given) == 1 else 'them'}. Leave {'it' if len(given) == 1 else 'them'} out.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
