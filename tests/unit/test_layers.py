"""The dependency tower, read from the source: no import cycles in `imagedrop`, and the web
layer on top (only `app`, `cli` and the web package itself import it)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "imagedrop"
WEB_USERS = ("imagedrop.web", "imagedrop.app", "imagedrop.cli")
# Imports inside a function that pick a backend by URL or setting: the lazy-import pattern of
# saq's from_url, not a way around a cycle. (module, imported module)
LAZY_BACKENDS = {
    ("imagedrop.ledger", "imagedrop.ledger.sqlite"),
    ("imagedrop.ledger", "imagedrop.ledger.postgres"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> set[str]:
    """Every imagedrop module `path` imports, at any depth of the file (deferred ones too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("imagedrop")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {m for m in imports(path, name) if m in modules} - {name}
        edges[name] = {t for t in targets if (name, t) not in LAZY_BACKENDS}
    return edges


def _own_package(a: str, b: str) -> bool:
    """A package's __init__ and its own submodules may import each other."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), package edges aside."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if _own_package(v, w):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_web_layer_is_on_top() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items() if not module.startswith(WEB_USERS)
        for target in targets if target.startswith("imagedrop.web")
    )
    assert offenders == []


def test_the_checks_can_fail() -> None:
    """A cycle and a core module importing the web are found (the tests above can fail)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"pkg": {"pkg.x"}, "pkg.x": {"pkg"}}) == []
    assert "imagedrop.web.keys" in imports(PACKAGE / "app.py", "imagedrop.app")
