"""Every public name of src/camloc says what it is, and every public function taking or giving tensors or arrays
says their shapes (issue 10).

Audited (AST, nothing imported): module-level functions, classes, and the methods of public classes, in modules
whose path has no `_`-prefixed part. Exempt: names with a leading underscore (dunders included), `@property` /
`@overload` / setters, and a method overriding a documented method of a camloc base class (the base states the
contract; a method overriding a third-party one, `nn.Module.forward` say, is not exempt). cli/ is not exempt: its
`add_parser` / `run` pairs are where a newcomer starts reading a command.

"Says the shapes": a function with a `Tensor` / `ndarray` parameter or return annotation has a tuple such as
`(B, k, H, W)`, `(N, 4)` or `(k,)` in its own docstring, or says "scalar" / "any shape".
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "camloc"

ARRAY = re.compile(r"\b(Tensor|ndarray|NDArray)\b")
# a parenthesised tuple of at least two entries or one entry and a comma: (B, k, H, W), (N, 4), (k,), (..., H, W)
SHAPE = re.compile(r"\((?:\s*[\w.+*/ -]+\s*,)+(?:\s*[\w.+*/ -]+)?\s*\)|\bscalar\b|\bany shape\b")
SKIP_DECORATORS = {"property", "overload", "setter", "cached_property"}

Def = ast.FunctionDef | ast.AsyncFunctionDef


def public_modules(root: Path = SRC) -> list[Path]:
    """The .py files under root whose path (below root's parent) has no part with a leading underscore, except
    `__init__.py` / `__main__.py`."""
    return [
        p
        for p in sorted(root.rglob("*.py"))
        if not any(
            part.startswith("_") and part not in ("__init__.py", "__main__.py")
            for part in p.relative_to(root.parent).parts
        )
    ]


def _decorators(f: Def) -> set[str]:
    names = set()
    for d in f.decorator_list:
        d = d.func if isinstance(d, ast.Call) else d
        names.add(d.attr if isinstance(d, ast.Attribute) else d.id if isinstance(d, ast.Name) else "")
    return names


def _base_names(c: ast.ClassDef) -> list[str]:
    return [
        b.attr if isinstance(b, ast.Attribute) else b.id for b in c.bases if isinstance(b, ast.Attribute | ast.Name)
    ]


def classes_of(paths: list[Path]) -> dict[str, ast.ClassDef]:
    """Every module-level class of the files by name (to resolve a method's camloc base classes)."""
    out: dict[str, ast.ClassDef] = {}
    for p in paths:
        for node in ast.parse(p.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                out.setdefault(node.name, node)
    return out


def _documented_in_base(c: ast.ClassDef, name: str, classes: dict[str, ast.ClassDef], seen: set[str]) -> bool:
    for base in _base_names(c):
        if base in seen or base not in classes:
            continue
        seen.add(base)
        for m in classes[base].body:
            if isinstance(m, Def) and m.name == name and ast.get_docstring(m):
                return True
        if _documented_in_base(classes[base], name, classes, seen):
            return True
    return False


def public_defs(path: Path, classes: dict[str, ast.ClassDef]) -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of every audited name of one file."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, Def) and not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield node.name, node
            for m in node.body:
                if not isinstance(m, Def) or m.name.startswith("_") or _decorators(m) & SKIP_DECORATORS:
                    continue
                if not ast.get_docstring(m) and _documented_in_base(node, m.name, classes, set()):
                    continue
                yield f"{node.name}.{m.name}", m


def takes_arrays(f: Def) -> bool:
    a = f.args
    annotations = [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs] if x.annotation is not None]
    if f.returns is not None:
        annotations.append(f.returns)
    return any(ARRAY.search(ast.unparse(x)) for x in annotations)


def audit(paths: list[Path], root: Path = SRC) -> tuple[list[str], list[str]]:
    """(names without a docstring, functions with arrays whose docstring gives no shape), as 'file:line name'."""
    classes = classes_of(paths)
    undocumented, shapeless = [], []
    for p in paths:
        rel = p.relative_to(root.parent)
        for name, node in public_defs(p, classes):
            assert isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            doc = ast.get_docstring(node)
            where = f"{rel}:{node.lineno} {name}"
            if not doc:
                undocumented.append(where)
            elif isinstance(node, Def) and takes_arrays(node) and not SHAPE.search(doc):
                shapeless.append(where)
    return undocumented, shapeless


def test_every_public_name_has_a_docstring() -> None:
    undocumented, _ = audit(public_modules())
    assert not undocumented, "no docstring:\n" + "\n".join(undocumented)


def test_every_public_function_with_arrays_states_their_shapes() -> None:
    _, shapeless = audit(public_modules())
    assert not shapeless, "tensors or arrays but no shape in the docstring:\n" + "\n".join(shapeless)


def test_the_audit_sees_what_it_should(tmp_path: Path) -> None:
    """The checker itself: the missing docstrings and shapes of a made-up package are found, the exemptions hold."""
    pkg = tmp_path / "pkg"
    (pkg / "_private").mkdir(parents=True)
    (pkg / "_private" / "x.py").write_text("def hidden(): pass\n")
    (pkg / "m.py").write_text(
        "from torch import Tensor, nn\n"
        "def bare(x): pass\n"
        "def _internal(x): pass\n"
        'def shapeless(x: Tensor) -> Tensor:\n    """Doubles x."""\n'
        'def shaped(x: Tensor) -> Tensor:\n    """x (B, k) float -> (B,) its row sums."""\n'
        'class Base:\n    """A base."""\n    def run(self, x: Tensor) -> Tensor:\n        """x (N, 4) -> (N,)."""\n'
        'class Child(Base):\n    """A child."""\n    def run(self, x: Tensor) -> Tensor:\n        return x\n'
        "    @property\n    def size(self) -> int:\n        return 1\n"
        "    def other(self): pass\n"
        "    def __len__(self): return 0\n"
        'class Net(nn.Module):\n    """A net."""\n    def forward(self, x: Tensor) -> Tensor:\n        return x\n'
        "class Undocumented: pass\n"
    )
    paths = public_modules(pkg)
    assert [p.name for p in paths] == ["m.py"]
    undocumented, shapeless = audit(paths, pkg)
    assert [u.split(" ")[1] for u in undocumented] == ["bare", "Child.other", "Net.forward", "Undocumented"]
    assert [s.split(" ")[1] for s in shapeless] == ["shapeless"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("maps (B, k, H, W) float", True),
        ("boxes (N, 4) [x0, y0, x1, y1)", True),
        ("classes (k,) int64", True),
        ("the loss, a scalar tensor", True),
        ("Load the file (gzip or plain).", False),
        ("Doubles x (in place).", False),
    ],
)
def test_what_counts_as_a_shape(text: str, found: bool) -> None:
    assert bool(SHAPE.search(text)) is found
