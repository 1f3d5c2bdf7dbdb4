"""The package's import graph: no import circles, and no import from a lower layer up to a higher one.

Every `import camloc...` / `from camloc... import` statement in src/camloc is read (function-level imports too,
since a lazy import still ties the modules together) and checked against LAYERS.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "camloc"

# Lowest first. A module may import modules of its own layer or of lower layers; the first matching prefix wins.
LAYERS: list[tuple[str, ...]] = [
    ("camloc.errors",),
    (
        "camloc.io",
        "camloc.boxes",
        "camloc.engine",
        "camloc.preprocess",
        "camloc.viz",
        "camloc.distributed",
        "camloc.zoom",
    ),
    ("camloc.models", "camloc.methods", "camloc.data"),
    ("camloc.explainer",),
    ("camloc.localize", "camloc.training", "camloc.probe", "camloc.export", "camloc.onnx_runtime"),
    ("camloc.bench",),
    ("camloc.serve",),
    ("camloc.cli", "camloc.__main__"),
]
# Within the fourth layer the packages are ordered too: localize < training < probe (a probe's benchmark row scores
# with localize; nothing below imports probe).
WITHIN = ["camloc.localize", "camloc.training", "camloc.probe"]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """camloc modules imported anywhere in the file (resolved to the longest existing module name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("camloc"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("camloc") and node.level == 0:
            for a in node.names:  # `from camloc.x import y` may import the submodule camloc.x.y
                names.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module)
    return {n for n in names if n != "camloc"}


MODULES = {module_name(p) for p in SRC.rglob("*.py")}


def layer_of(name: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in tests/test_layers.py")


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in SRC.rglob("*.py") if module_name(p) != "camloc"}


def test_every_import_goes_down() -> None:
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            if layer_of(dep) > layer_of(mod):
                bad.append(f"{mod} imports {dep} (a higher layer)")
            pkg = [p for p in WITHIN if mod.startswith(p)]
            dep_pkg = [p for p in WITHIN if dep.startswith(p)]
            if pkg and dep_pkg and WITHIN.index(dep_pkg[0]) > WITHIN.index(pkg[0]):
                bad.append(f"{mod} imports {dep} (localize < training < probe)")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circles() -> None:
    g = graph()
    # parent packages are imported implicitly by their submodules: an edge module -> its own package is no circle
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if m.startswith(d + "."):
                continue
            if state.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d) :], d]))
            elif d in g and d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_has_a_docstring(name: str) -> None:
    path = SRC.parent.joinpath(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{name} says nothing of what it holds"


def test_the_checker_sees_a_bad_import(tmp_path: Path) -> None:
    """The walk itself works: an upward import written into a file is found."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from camloc.cli.explain import run\n")
    assert "camloc.cli.explain" in imports_of(f)
    assert layer_of("camloc.cli.explain") > layer_of("camloc.boxes")


def layout_entries(readme: str) -> dict[str, str]:
    """README's Layout block under `src/camloc/`: entry name (`io.py`, `models/`) -> its text (continuations too)."""
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    lines = section.split("    src/camloc/\n", 1)[1].splitlines()
    entries: dict[str, str] = {}
    name = ""
    for line in lines:
        if not line.startswith("      "):  # back at the block's first level (tests/, benchmarks/): done
            break
        if line[6] != " ":
            name, _, text = line[6:].partition(" ")
            entries[name] = text
        else:
            entries[name] += " " + line.strip()
    return entries


def test_readme_layout_matches_the_tree() -> None:
    """Every module and package of src/camloc is in README's Layout (a package's modules named in its entry), and
    every entry exists."""
    entries = layout_entries((SRC.parents[1] / "README.md").read_text(encoding="utf-8"))
    top = {p.name for p in SRC.glob("*.py")} | {f"{d.name}/" for d in SRC.iterdir() if (d / "__init__.py").is_file()}
    assert set(entries) == top
    unnamed = []
    for pkg in (d for d in SRC.iterdir() if (d / "__init__.py").is_file()):
        words = set(re.findall(r"\w+", entries[f"{pkg.name}/"]))
        unnamed += [
            f"{pkg.name}/{p.name}" for p in sorted(pkg.glob("*.py")) if p.stem != "__init__" and p.stem not in words
        ]
        assert not [d for d in pkg.iterdir() if d.is_dir() and (d / "__init__.py").is_file()], "a sub-package: list it"
    assert not unnamed, "modules the Layout does not name:\n" + "\n".join(unnamed)
