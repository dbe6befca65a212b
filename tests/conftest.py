import numpy as np
import pytest


def planted(n_examples=400, n_units=24, neuron=3, facets=((0, 8), (12, 20)), per_facet=30, seed=0, gap=6.0):
    """Activations where ``neuron`` fires for len(facets) groups of examples, each group also strong on its own units.

    Returns the matrix and the group of every example (-1 for background).
    """
    rng = np.random.default_rng(seed)
    acts = np.abs(rng.normal(0.0, 0.3, size=(n_examples, n_units)))
    groups = np.full(n_examples, -1)
    for g, (lo, hi) in enumerate(facets):
        rows = np.arange(g * per_facet, (g + 1) * per_facet)
        acts[rows, neuron] += 5.0 + rng.normal(0, 0.1, size=len(rows))
        acts[rows, lo:hi] += gap
        groups[rows] = g
    return acts, groups


def planted_class_acts():
    """(400, 16) float32: 16 neurons, each firing for 1 to 3 of 10 classes of 40 examples (the Ray tests' store)."""
    rng = np.random.default_rng(0)
    prototypes = np.zeros((10, 16))
    for j in range(16):
        prototypes[rng.choice(10, rng.integers(1, 4), replace=False), j] = 3.0
    classes = np.repeat(np.arange(10), 40)
    return np.maximum(prototypes[classes] + 0.05 * rng.standard_normal((400, 16)), 0).astype(np.float32)


def run_cli(*args):
    """``conceptvec ARGS`` in-process, 300 columns wide: (exit code, output)."""
    from typer.testing import CliRunner

    from conceptvec.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    return result.exit_code, result.output


def one_line_error(code, output, *fragments):
    """Bad input's answer: exit 2 and one ``error:`` line holding every fragment, no traceback, no "bug"."""
    assert code == 2, output
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output and "bug" not in output, output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


# The constructed layer of the borderline tests (tests/core/test_borderline.py, tests/report/test_evidence_borderline.py):
BORDERLINE_UNITS = 12
# (separation of two halves, seed) -> the first split's p at the default level 0.01 (measured, asserted below):
# near the level on both sides of it, and far below / far above it
BORDERLINE_CASES = {"near, split": (1.1, 0), "near, one": (1.2, 2), "far, split": (2.0, 0), "far, one": (0.0, 0)}


def borderline_top_set(separation: float, seed: int, *, high: int, along: int, n: int = 100) -> np.ndarray:
    """n rows that fire unit ``high`` (about 5, the rest about 0) in two halves ``separation`` apart along unit ``along``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, BORDERLINE_UNITS)) * 0.3
    x[:, high] += 5.0
    x[: n // 2, along] += separation / 2
    x[n // 2 :, along] -= separation / 2
    return x


def borderline_layer() -> np.ndarray:
    """Neuron k's top 100 examples are case k's set (the units after 4 carry the separations), then background."""
    blocks = [borderline_top_set(sep, seed, high=k, along=4 + k) for k, (sep, seed) in enumerate(BORDERLINE_CASES.values())]
    background = np.random.default_rng(9).standard_normal((300, BORDERLINE_UNITS)) * 0.3
    return np.vstack(blocks + [background])


@pytest.fixture
def planted_acts():
    return planted()


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``), restored after:
    on a busy 2-core machine two OpenMP threads spin against other processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_cluster(request):
    """One local Ray of 2 CPUs shared by a test module (starting one costs seconds; Ray has no local mode), shut down after."""
    ray = pytest.importorskip("ray")
    # Functions and classes of the test module travel to Ray's workers by value (the workers cannot import it).
    ray.cloudpickle.register_pickle_by_value(request.module)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# Tiny language models for the text tests: a GPT-2 and a BERT with random weights and tokenizers trained on a few
# sentences, saved to folders loaded through ``hf:DIR`` (built once per test session: a fraction of a second).
SENTENCES = [
    "The cat sat on the mat.",
    "A dog ran in the park with a ball.",
    "Stocks fell sharply on Monday morning.",
    "The bank raised its interest rates again.",
    "She played the violin at the concert.",
    "Rain is expected over the weekend in the north.",
    "The river bank was covered in reeds.",
    "He wrote a short program in Python.",
]


def _tiny_gpt2(folder):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id))
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def _tiny_bert(folder):
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=48, max_position_embeddings=64, pad_token_id=fast.pad_token_id))
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    return _tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path
