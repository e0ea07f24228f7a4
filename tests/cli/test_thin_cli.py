"""The command line stays thin: every function in tokenomy.cli fits on a screen (issue 12, "a thin CLI").

A command parses its options into specs, calls one function of a package and renders; the work lives in the
packages. The measure is a function's whole length, def line to last line (decorators excluded), so a command's
option declarations count too: options are declared once, one line each.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tokenomy.cli

MAX_FUNCTION_LINES = 60
CLI_DIR = Path(tokenomy.cli.__file__).parent


def function_lengths(source: str) -> dict[str, int]:
    """Lines of every function (methods and nested functions included) of a module, by qualified name."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                lengths[name] = child.end_lineno - child.lineno + 1
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def test_the_measure_counts_a_function_from_def_to_its_last_line() -> None:
    source = (
        "@app.command()\ndef f(\n    a: int,\n) -> None:\n    x = 1\n\n    return None\n\n"
        "class C:\n    def m(self):\n        pass\n"
    )
    assert function_lengths(source) == {"f": 6, "C.m": 2}


def test_no_function_in_the_cli_is_over_60_lines() -> None:
    modules = sorted(CLI_DIR.glob("*.py"))
    assert len(modules) > 5  # the package was found
    long = {
        f"{path.name}:{name}": n
        for path in modules
        for name, n in function_lengths(path.read_text()).items()
        if n > MAX_FUNCTION_LINES
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines in tokenomy.cli: {long}"


def test_the_cli_holds_no_domain_modules() -> None:
    """Ledger-to-tiers, history advice and catalogue listings live in their packages; cli/ only calls them."""
    text = {path.name: path.read_text() for path in CLI_DIR.glob("*.py")}
    for name, defined in (
        ("def tiers_from_ledger", "chain.py"),
        ("hourly_demand(", "history.py"),
        ("def catalog_listing", "planning.py"),
        ("def bench_summary", "bench.py"),
    ):
        assert name not in text.get(defined, ""), f"{name} is still in cli/{defined}"
