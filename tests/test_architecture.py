"""The architecture's rules (docs/architecture.md), checked by machine rather than kept by care."""

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "conceptvec"
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
MAX_LINES = 500


def lint_imports(config: Path, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = None
    if pythonpath is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([LINT_IMPORTS, str(config), "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed (pip install -e '.[test]')")
def test_import_contracts_are_kept():
    result = lint_imports(ROOT / "pyproject.toml", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed (pip install -e '.[test]')")
def test_a_broken_contract_fails_the_check(tmp_path):
    # The same kind of contract on a two-module package whose core imports its command line.
    pkg = tmp_path / "src" / "toypkg"
    (pkg / "core").mkdir(parents=True)
    (pkg / "cli").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("def f():\n    from toypkg import cli  # a lazy import counts too\n")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.importlinter]
        root_package = "toypkg"

        [[tool.importlinter.contracts]]
        name = "core never imports cli"
        type = "forbidden"
        source_modules = ["toypkg.core"]
        forbidden_modules = ["toypkg.cli"]
    """))
    result = lint_imports(tmp_path / "pyproject.toml", tmp_path, pythonpath=tmp_path / "src")
    assert result.returncode != 0 and "BROKEN" in result.stdout


FRESH = """
import sys
import numpy as np
import conceptvec as cv

rng = np.random.default_rng(0)
acts = np.abs(rng.normal(size=(300, 12))).astype(np.float32)
store = cv.ActivationStore.create(sys.argv[1], acts, examples=None, metadata={"model": {"name": "array"}})
store = cv.ActivationStore.open(sys.argv[1])
params = cv.Params(top=40, distance_threshold=2.0, outlier_threshold=4.0)
cs = cv.disentangle(store, neuron=3, params=params)
scan = cv.scan_layer(acts, params=params, neurons="0-3", workers=1, progress=False)
assert scan[3].concept_vectors.shape == cs.concept_vectors.shape
import inspect
signature = inspect.signature(cv.extract)
assert signature.parameters["layer"].kind is inspect.Parameter.KEYWORD_ONLY
assert "config" in signature.parameters and "workers" in signature.parameters
cv.ExtractConfig(per_class=130)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm", "transformers"))
print("LOADED", loaded)
"""


@pytest.mark.slow
def test_store_method_and_scan_run_without_torch(tmp_path):
    result = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "store")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout


def test_feature_visualisation_shows_its_signature():
    import inspect

    import conceptvec as cv

    params = inspect.signature(cv.feature_visualisation).parameters
    assert list(params)[:3] == ["model", "layer", "directions"]
    assert "steps" in params and "seed" in params


def underscore_imports(package: Path, root_name: str) -> list[str]:
    """``file:line name`` for every import of an underscore name (or module) of the package from another module."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join((root_name, *path.relative_to(package).with_suffix("").parts))
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        package_of = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package_of.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != root_name:
                    continue
                names = [a.name for a in node.names]
                parts = target.split(".")[1:]
                bad = [p for p in parts if p.startswith("_")] + [n for n in names if n.startswith("_") and not n.startswith("__")]
                if bad and target != module:
                    found.append(f"{path.relative_to(package)}:{node.lineno} {target}: {', '.join(bad)}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == root_name and any(p.startswith("_") and not p.startswith("__") for p in parts):
                        found.append(f"{path.relative_to(package)}:{node.lineno} {alias.name}")
    return found


@pytest.mark.slow
def test_no_module_imports_another_modules_private_name():
    assert underscore_imports(PACKAGE, "conceptvec") == []


def test_the_underscore_check_finds_a_private_import(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("_hidden = 1\nshown = 2\n")
    (pkg / "sub" / "b.py").write_text("from .a import shown\n\ndef f():\n    from .a import _hidden\n")
    (pkg / "c.py").write_text("import toy._private\nfrom toy.sub import a\n")
    found = underscore_imports(pkg, "toy")
    assert found == ["c.py:1 toy._private", "sub/b.py:4 toy.sub.a: _hidden"]


def test_modules_stay_small_or_say_why():
    # A module over MAX_LINES lines must be named, with its reason, in docs/architecture.md.
    allowed = (ROOT / "docs" / "architecture.md").read_text()
    long = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > MAX_LINES]
    assert [p for p in long if f"`{p}`" not in allowed] == []


def import_cycles(graph) -> list[list[str]]:
    """Groups of modules that import each other in a circle (strongly connected, lazy imports included)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def package_graph(graph, depth: int = 2):
    """The same graph with every module folded into its room (``conceptvec.scan.layer`` -> ``conceptvec.scan``)."""
    import grimp

    folded = grimp.ImportGraph()
    room = lambda m: ".".join(m.split(".")[:depth])  # noqa: E731
    for m in graph.modules:
        folded.add_module(room(m))
        for w in graph.find_modules_directly_imported_by(m):
            if room(w) != room(m) and room(m) != "conceptvec" and room(w) != "conceptvec":
                folded.add_import(importer=room(m), imported=room(w))
    return folded


def test_no_import_circle_between_modules_or_rooms():
    import grimp

    graph = grimp.build_graph("conceptvec")
    assert import_cycles(graph) == []
    # Rooms: the package's top-level folders and modules; the package's own __init__ (the public namespace) aside.
    assert import_cycles(package_graph(graph)) == []


def test_the_circle_check_finds_a_circle():
    import grimp

    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]
    graph.add_import(importer="p.x.one", imported="p.y.two")
    graph.add_import(importer="p.y.three", imported="p.x.four")
    assert ["p.x", "p.y"] in import_cycles(package_graph(graph, depth=2))


def test_no_room_holds_more_than_a_fifth_of_the_code():
    lines: dict[str, int] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        room = parts[0] if len(parts) > 1 else path.stem
        lines[room] = lines.get(room, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    assert max(lines.values()) <= total / 5, sorted(lines.items(), key=lambda kv: -kv[1])[:3]


def test_every_core_module_is_named_by_the_storage_contract():
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    storage = next(c for c in contracts if c["name"].startswith("storage takes from core only"))
    allowed = {"conceptvec.core.params", "conceptvec.core.outliers", "conceptvec.core.options", "conceptvec.core.live"}
    core = {f"conceptvec.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__"}
    assert set(storage["forbidden_modules"]) == core - allowed


def test_no_two_test_files_share_a_name():
    # pytest imports test modules by their base name (the test folders are not packages): two files of one name
    # stop the whole run at collection.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
