"""Language models from a local folder (``hf:DIR``): causal LMs, encoders and sentence-transformers folders.

A folder is a language model when it holds a tokenizer and no image processor. Causal LMs (an
``...ForCausalLM`` / ``...LMHeadModel`` architecture in ``config.json``) load with
``AutoModelForCausalLM``, so their layers are named as nnsight and the model's code name them
(``transformer.h.5.mlp.act``, ``model.layers.3.mlp.act_fn``); encoders and sentence-transformers folders
with ``AutoModel`` (``encoder.layer.2.intermediate``). The forward pass stops at the layer, so the LM
head never runs. Layer names in TransformerLens's convention (``blocks.5.mlp.hook_post``) are mapped to
the module whose output is the same quantity for GPT-2-, Llama- and BERT-style models, or refused with
the module path to use.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import nn

from ..errors import ConceptvecError
from .hooks import first_tensor
from .layers import LoadedModel, layer_names
from .statedict import files_digest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")
DEFAULT_MAX_TOKENS = 512
SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog."


@dataclass
class TextModel(LoadedModel):
    """A language model and its tokenizer; ``kind`` is ``causal-lm``, ``encoder`` or ``sentence-transformers``."""

    tokenizer: Any = None
    kind: str = "encoder"
    max_tokens: int = DEFAULT_MAX_TOKENS

    def list_layers(self) -> list[tuple[str, str, tuple[Any, ...] | None]]:
        """(name, module type, output shape for one text) of every layer, from one forward on a sentence; ``T`` is its tokens."""
        enc = self.tokenizer([SAMPLE_TEXT], return_tensors="pt")
        n_tokens = enc["input_ids"].shape[1]
        shapes: dict[str, tuple[Any, ...]] = {}
        handles = []

        def record(name: str):
            def hook(_mod, _inp, out):
                out = first_tensor(out)
                if isinstance(out, torch.Tensor):
                    shapes[name] = tuple("T" if i == 0 and d == n_tokens else d for i, d in enumerate(out.shape[1:]))
            return hook

        named = [(n, m) for n, m in self.module.named_modules() if n]
        try:
            handles = [m.register_forward_hook(record(n)) for n, m in named]
            with torch.inference_mode():
                self.module(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        finally:
            for h in handles:
                h.remove()
        return [(n, type(m).__name__, shapes.get(n)) for n, m in named]


def refuse_custom_code(name: str, failure: BaseException | None = None) -> None:
    """Refuse a model folder that ships its own Python code (``auto_map`` in a config): conceptvec never runs it.

    transformers would otherwise ask "run custom code? [y/N]" on a terminal and run it on "y". Passing
    ``trust_remote_code=False`` as well keeps a model this check misses (one in the cache) from running any:
    transformers then fails, and ``failure``, its error, is said the same way here.
    """
    if failure is not None:
        if "trust_remote_code" in str(failure):
            raise ConceptvecError(
                f"hf:{name} needs its own code to load, which conceptvec never runs. If you trust it, load the model in "
                f"Python yourself (transformers' trust_remote_code=True) and pass the module: cv.extract(model=module, ...)."
            ) from None
        return
    folder = Path(name)
    if not folder.is_dir():
        return
    custom = []
    for config in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        try:
            data = json.loads((folder / config).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            custom.append(f"{config}: auto_map")
    if custom:
        custom += sorted(p.name for p in folder.glob("*.py"))
        raise ConceptvecError(
            f"hf:{name} ships its own code ({', '.join(custom)}), which conceptvec never runs. If you trust it, load the "
            f"model in Python yourself (transformers' trust_remote_code=True) and pass the module: cv.extract(model=module, ...)."
        )


def is_language_folder(name: str) -> bool:
    """Whether ``name`` is a local model folder with a tokenizer and no image processor."""
    folder = Path(name)
    if not folder.is_dir() or (folder / "preprocessor_config.json").exists():
        return False
    return any((folder / f).exists() for f in TOKENIZER_FILES)


def load_language_model(name: str, weights: str | None, overrides: dict[str, Any] | None = None) -> TextModel:
    """The model and tokenizer in folder ``name``; ``weights='none'`` builds the model from its config with random weights."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    if overrides:
        raise ConceptvecError(f"{', '.join('--' + k for k in overrides)} set an image model's preprocessing; {name} is a language "
                              f"model, which reads text with its tokenizer. Leave them out.")
    folder = Path(name)
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        refuse_custom_code(name, exc)
        raise ConceptvecError(f"could not read the model config in {name} ({exc}); save the model there with "
                              f"model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR).") from None
    architectures = config.architectures or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    kind = "causal-lm" if causal else ("sentence-transformers" if (folder / "modules.json").exists() else "encoder")
    auto = AutoModelForCausalLM if causal else AutoModel
    digest = None
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # conceptvec's own bar is the one on stderr
    try:
        if weights is not None and weights.lower() == "none":
            torch.manual_seed(0)
            module = auto.from_config(config, trust_remote_code=False)
            loaded = "none (random, torch seed 0)"
        elif weights is None:
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin"))
            digest = files_digest(files) if files else None
            module = auto.from_pretrained(name, local_files_only=True, trust_remote_code=False)
            loaded = str(folder.resolve())
        else:
            raise ConceptvecError(f"hf models take their weights from their folder; pass no --weights (or 'none' for random), not {weights!r}.")
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConceptvecError):
            raise
        refuse_custom_code(name, exc)
        raise ConceptvecError(f"could not load the language model or its tokenizer from {name} ({exc}); save both there "
                              f"with model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR).") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    max_tokens = _max_tokens(folder, config, tokenizer)
    preprocessing = {
        "tokenizer": type(tokenizer).__name__, "vocab_size": len(tokenizer), "padding_side": tokenizer.padding_side,
        "special_tokens": sorted(tokenizer.all_special_tokens), "model_max_tokens": max_tokens,
        "tokenizer_sha256": files_digest(sorted(folder / f for f in TOKENIZER_FILES if (folder / f).exists()))["sha256"],
    }
    return TextModel(module.eval(), f"hf:{name}", loaded, None, (), preprocessing, weights_digest=digest,
                     tokenizer=tokenizer, kind=kind, max_tokens=max_tokens)


def _max_tokens(folder: Path, config: Any, tokenizer: Any) -> int:
    """The longest input the model takes: a sentence-transformers folder's max_seq_length, else the positions it has."""
    st = folder / "sentence_bert_config.json"
    if st.exists():
        with_limit = json.loads(st.read_text()).get("max_seq_length")
        if isinstance(with_limit, int) and with_limit > 0:
            return with_limit
    given = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    given.append(getattr(tokenizer, "model_max_length", None))
    limits = [int(v) for v in given if isinstance(v, int) and 0 < v < 1_000_000]
    return min(limits) if limits else DEFAULT_MAX_TOKENS


# -- TransformerLens hook names --------------------------------------------------------------------------
# For each family: where its blocks are, and the module whose output is the hook's value in the model as
# Hugging Face runs it (TransformerLens's from_pretrained_no_processing; its default folds and centres weights).
class _Family(TypedDict):
    """Where a model family keeps what TransformerLens hook names refer to (module paths; None: no such module)."""

    blocks: str
    embed: str
    pos: str | None
    first: str
    hooks: dict[str, str | None]


FAMILIES: dict[str, _Family] = {
    "gpt2": {"blocks": "transformer.h", "embed": "transformer.wte", "pos": "transformer.wpe", "first": "transformer.drop",
             "hooks": {"hook_resid_post": "", "hook_attn_out": ".attn", "hook_mlp_out": ".mlp", "mlp.hook_pre": ".mlp.c_fc",
                       "mlp.hook_post": ".mlp.act", "attn.hook_z": None, "hook_resid_mid": None}},
    "llama": {"blocks": "model.layers", "embed": "model.embed_tokens", "pos": None, "first": "model.embed_tokens",
              "hooks": {"hook_resid_post": "", "hook_attn_out": ".self_attn", "hook_mlp_out": ".mlp", "mlp.hook_pre": ".mlp.gate_proj",
                        "mlp.hook_pre_linear": ".mlp.up_proj", "mlp.hook_post": None, "hook_resid_mid": None}},
    "bert": {"blocks": "encoder.layer", "embed": "embeddings.word_embeddings", "pos": "embeddings.position_embeddings",
             "first": "embeddings",
             "hooks": {"hook_resid_post": "", "hook_attn_out": ".attention.output.dense", "hook_mlp_out": ".output.dense",
                       "mlp.hook_pre": ".intermediate.dense", "mlp.hook_post": ".intermediate", "hook_resid_mid": None}},
}
WHY_NOT = {
    "mlp.hook_post": "a gated MLP's hook_post is act(gate_proj(x)) * up_proj(x), the input of down_proj, which no module outputs; "
                     "{block}.mlp.act_fn gives act(gate_proj(x)) alone",
    "hook_resid_mid": "the residual stream between attention and MLP is a sum no module outputs; {block} gives hook_resid_post",
    "attn.hook_z": "the heads' values before the output projection are not a module's output; {block}.attn gives hook_attn_out",
}
TL_NAME = re.compile(r"^(blocks\.(\d+)\.(.+)|hook_embed|hook_pos_embed|ln_final\.hook_normalized)$")


def resolve_layer(module: nn.Module, name: str) -> str:
    """The module path for layer ``name``: itself when the model has such a module, or a TransformerLens hook name mapped."""
    names = layer_names(module)
    if name in names:
        return name
    match = TL_NAME.match(name)
    if match is None:
        near = difflib.get_close_matches(name, names, n=5, cutoff=0.0)
        raise ConceptvecError(f"invalid layer {name!r}. Nearest layers: {', '.join(near)}. List them all with `--layer list`.")
    family, prefix = _family(names)
    if family is None:
        raise ConceptvecError(f"{name!r} is a TransformerLens hook name, mapped for GPT-2-, Llama- and BERT-style models only; "
                              f"name the module instead (`--layer list` shows them).")
    spec = FAMILIES[family]
    root = prefix[: -len(spec["blocks"])]  # what wraps the base model, e.g. "bert." in a BertForMaskedLM
    if match.group(2) is None:
        target = {"hook_embed": spec["embed"], "hook_pos_embed": spec["pos"]}.get(name)
        if target is None:
            raise ConceptvecError(f"{name!r} has no module here whose output is the same quantity; use "
                                  f"{'the final norm module' if 'ln_final' in name else 'an embedding module'} from `--layer list`.")
        return _exists(root + target, names, name)
    i, hook = int(match.group(2)), match.group(3)
    n_blocks = sum(1 for n in names if re.fullmatch(re.escape(prefix) + r"\.\d+", n))
    if i >= n_blocks:
        raise ConceptvecError(f"{name!r}: the model has blocks 0-{n_blocks - 1}.")
    block = f"{prefix}.{i}"
    if hook == "hook_resid_pre":
        return _exists(f"{prefix}.{i - 1}" if i > 0 else root + spec["first"], names, name)
    if hook not in spec["hooks"]:
        raise ConceptvecError(f"TransformerLens hook {hook!r} is not mapped for {family}-style models; mapped: hook_resid_pre, "
                              f"{', '.join(h for h, v in spec['hooks'].items() if v is not None)}. Otherwise name the module, "
                              f"e.g. {block} (`--layer list` shows them).")
    suffix = spec["hooks"][hook]
    if suffix is None:
        raise ConceptvecError(f"{name!r} cannot be mapped: {WHY_NOT[hook].format(block=block)}. Name a module (`--layer list`).")
    return _exists(block + suffix, names, name)


def _family(names: list[str]) -> tuple[str | None, str]:
    for family, spec in FAMILIES.items():
        for n in names:
            if n == spec["blocks"] + ".0" or n.endswith("." + spec["blocks"] + ".0"):
                return family, n[:-2]
    return None, ""


def _exists(path: str, names: list[str], asked: str) -> str:
    if path not in names:
        raise ConceptvecError(f"{asked!r} maps to module {path!r}, which this model does not have; name a module (`--layer list`).")
    return path
