"""The package's layers import one way (docs/architecture.md): physics <- config <- models <- data <-
ensemble <- cluster <- api, selfcheck, report, interop <- cli; nothing below the driver imports mpi4py, nothing below
the CLI imports click, and no module imports one of ours inside a function."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dpot_hpc"

#: Rank of each layer; a module may import only from layers of the same or lower rank.
LAYERS = {"constants": 0, "_version": 0, "progress": 0, "errors": 0, "seeds": 0, "physics": 1, "config": 2, "models": 3, "data": 4,
          "ensemble": 5, "cluster": 6, "api": 7, "selfcheck": 7, "report": 7, "interop": 7, "bench": 7,
          "cli": 8, "__init__": 8, "__main__": 9}


def _layer(module: str) -> str:
    """'dpot_hpc.models.flows' -> 'models'."""
    return module.split(".")[1] if module.count(".") else "__init__"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        yield name, path, ast.parse(path.read_text())


def _imports(name: str, path: Path, tree: ast.AST):
    """(imported module, node) for every import, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, node


def test_imports_point_down_the_layers():
    bad = []
    for name, path, tree in _modules():
        here = LAYERS[_layer(name)]
        for mod, node in _imports(name, path, tree):
            if mod.startswith("dpot_hpc") and mod != "dpot_hpc" and LAYERS[_layer(mod)] > here:
                bad.append(f"{name} imports {mod}")
    assert not bad, bad


def test_mpi_and_click_stay_at_the_top():
    for name, path, tree in _modules():
        mods = {m.split(".")[0] for m, _ in _imports(name, path, tree)}
        if "mpi4py" in mods:
            assert _layer(name) in ("cluster", "selfcheck"), name
        if "click" in mods:
            assert _layer(name) in ("cli",), name


def test_no_function_level_imports_of_our_own_modules():
    bad = []
    for name, path, tree in _modules():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for mod, node in _imports(name, path, fn):
                    if mod.startswith("dpot_hpc") or (isinstance(node, ast.ImportFrom) and node.level):
                        bad.append(f"{name}.{fn.name} imports {mod}")
    assert not bad, bad
