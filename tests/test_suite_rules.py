"""The test suite stays livable: test modules never import one another (shared fixtures live in
``conftest.py``, shared helpers and fakes in modules of their own), and every ``pytest.raises``
says which message it expects, so a wrong error cannot pass."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imported(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_test_module(name: str) -> bool:
    """``tests.test_app``, ``test_app`` and ``tests.test_app.new_app`` name a test module."""
    parts = name.split(".")
    module = parts[1] if parts[0] == "tests" and len(parts) > 1 else parts[0]
    return module.startswith("test_")


def test_no_test_module_imports_another_test_module():
    offenders = sorted(
        f"{path.relative_to(TESTS)} imports {name}"
        for path in _modules()
        for name in _imported(ast.parse(path.read_text(encoding="utf-8")))
        if _is_test_module(name)
    )
    assert offenders == [], "test modules importing test modules:\n" + "\n".join(offenders)


def _raises_without_match(tree: ast.AST) -> list[int]:
    """Lines of ``pytest.raises(...)`` calls with no ``match=``."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "raises"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "pytest"
        and not any(keyword.arg == "match" for keyword in node.keywords)
    ]


def test_every_pytest_raises_names_its_message():
    offenders = [
        f"{path.relative_to(TESTS)}:{line}"
        for path in _modules()
        for line in _raises_without_match(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offenders == [], "pytest.raises without match=:\n" + "\n".join(offenders)
