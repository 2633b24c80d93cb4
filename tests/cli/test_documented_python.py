"""The Python examples in docs/*.md: every name they import from dmao exists, and every call of
an imported dmao function or class uses keywords its signature has. A rename in the API cannot
leave an example stale. Nothing is run (the examples need trained runs)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples() -> list[tuple[str, ast.Module]]:
    """``(where, parsed block)`` of every python code block of the README and docs."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for k, block in enumerate(_BLOCK.findall(path.read_text(encoding="utf-8"))):
            found.append((f"{path.name}#{k}", ast.parse(block)))
    return found


EXAMPLES = examples()


def check_example(tree: ast.Module) -> list[str]:
    """What in one example does not match the code: imports of missing names, keywords a
    dmao callable does not take."""
    problems, bound = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dmao"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    problems.append(f"{node.module} has no {alias.name}")
                else:
                    bound[alias.asname or alias.name] = getattr(module, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            target = bound.get(node.func.id)
            if target is None or not callable(target):
                continue
            parameters = inspect.signature(target).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
            for keyword in node.keywords:
                if keyword.arg and not takes_any and keyword.arg not in parameters:
                    problems.append(f"{node.func.id}() takes no keyword {keyword.arg!r}")
    return problems


def test_there_are_examples_that_use_dmao():
    assert len(EXAMPLES) >= 5
    uses = sum(any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dmao")
                   for n in ast.walk(tree)) for _, tree in EXAMPLES)  # fmt: skip
    assert uses >= 4


@pytest.mark.parametrize(("where", "tree"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_an_example_matches_the_api(where, tree):
    assert check_example(tree) == [], where


def test_a_stale_example_would_be_caught():
    stale = ast.parse(
        "from dmao.export import Transcriber, load_exported, transcribe_everything\n"
        "t = Transcriber(load_exported('m'), backend='torch', beam=4)\n"
    )
    assert check_example(stale) == [
        "dmao.export has no transcribe_everything",
        "Transcriber() takes no keyword 'beam'",
    ]
