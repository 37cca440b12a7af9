"""The layout the code promises (docs/guide.md, "How the code is laid out"): each layer
imports only the layers before it, with no cycle; reslab modules are imported at module
level (only the CLI imports lazily, to keep `--help` fast); files and functions stay
short enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "reslab"
GUIDE = SRC.parent.parent / "docs" / "guide.md"
MAX_FILE_LINES = 500  # counted as ruff formats (one argument a line where long); issue 34
MAX_FUNCTION_LINES = 100


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _target(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """Absolute reslab module names an ImportFrom reaches (the module, or its submodules)."""
    if node.level:
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    if not base.startswith("reslab"):
        return []
    return [base, *(f"{base}.{a.name}" for a in node.names)]


def _imports(module: str, path: Path, *, top_level: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level else [n for n in ast.walk(tree) if n not in tree.body]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            found.update(_target(module, path, node))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("reslab"))
    return found


def test_module_level_imports_have_no_cycle() -> None:
    modules = _modules()
    graph = {
        m: {t for t in _imports(m, p, top_level=True) if t in modules and t != m}
        for m, p in modules.items()
    }
    # A package's __init__ is reached through any of its submodules; edges into a
    # package from its own submodules are the usual re-export pattern, not a cycle.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if m.startswith(t + "."):
                continue
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def documented_layers() -> list[list[str]]:
    """The first column of the guide's layout table, top to bottom: per row, the modules
    and packages it names (`training/` -> reslab.training, `zoo/publish.py` ->
    reslab.zoo.publish)."""
    text = GUIDE.read_text()
    section = text[text.index("## How the code is laid out") :]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    layers = []
    for row in rows:
        cell = row.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        layers.append(
            ["reslab." + n.removesuffix("/").removesuffix(".py").replace("/", ".") for n in names]
        )
    return layers


def test_each_layer_imports_only_the_layers_before_it() -> None:
    layers = documented_layers()

    def layer(module: str) -> int | None:
        """The row that names the module or its longest enclosing package."""
        found = [
            (len(n), i)
            for i, names in enumerate(layers)
            for n in names
            if module == n or module.startswith(n + ".")
        ]
        return max(found)[1] if found else None

    modules = _modules()
    unplaced = [m for m in modules if m != "reslab" and layer(m) is None]
    assert not unplaced, f"modules in no row of the guide's layout table: {unplaced}"
    upward = []
    for m, path in modules.items():
        for t in _imports(m, path, top_level=True):
            # `from .. import x` names the package too; only the module x counts
            if t in modules and t != "reslab" and m != "reslab" and layer(t) > layer(m):
                upward.append(f"{m} -> {t}")
    assert not upward, f"imports of a later layer of docs/guide.md's table: {upward}"


# Optional dependencies, imported where used so that reslab runs without them.
OPTIONAL = ("tqdm", "matplotlib", "onnx", "onnxruntime", "safetensors", "torchao", "tensorboard")


def test_no_function_level_imports_of_reslab_outside_the_cli() -> None:
    lazy = {
        m: sorted(_imports(m, p, top_level=False))
        for m, p in _modules().items()
        if not m.startswith("reslab.cli") and m != "reslab"
    }
    offenders = {m: t for m, t in lazy.items() if t}
    assert not offenders, f"import these at module level: {offenders}"


def test_files_and_functions_are_short() -> None:
    long_files = {}
    long_functions = {}
    for module, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            long_files[module] = text.count("\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions[f"{module}.{node.name}"] = n
    assert not long_files, f"files over {MAX_FILE_LINES} lines: {long_files}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
