"""The architecture holds: the core never imports Streamlit, and its packages import one another
without cycles (an arrow between two packages goes one way only)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "treesynth_core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, resolved to absolute names."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _package(module: str) -> str | None:
    """The first-level part of the core a module belongs to (``treesynth_core.llm.base`` -> ``llm``)."""
    parts = module.split(".")
    if parts[0] != "treesynth_core" or len(parts) < 2:
        return None
    return parts[1]


def test_the_core_never_imports_streamlit():
    offenders = sorted(
        _module_name(path)
        for path in CORE.rglob("*.py")
        if any(name == "streamlit" or name.startswith("streamlit.") for name in _imports(path))
    )
    assert offenders == [], f"core modules importing streamlit: {offenders}"


def test_packages_of_the_core_have_no_import_cycles():
    known = {p.stem if p.is_file() else p.name for p in CORE.iterdir() if not p.name.startswith("__")}
    edges: dict[str, set[str]] = {name: set() for name in known}
    for path in CORE.rglob("*.py"):
        source = _package(_module_name(path))
        if source is None:
            continue
        for target in filter(None, map(_package, _imports(path))):
            if target != source and target in known:
                edges[source].add(target)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    return [*trail, start]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    cycles = {" -> ".join(c) for name in sorted(edges) if (c := cycle_from(name))}
    assert not cycles, "package import cycles:\n" + "\n".join(sorted(cycles))
