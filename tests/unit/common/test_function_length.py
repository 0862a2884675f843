"""No function in product code runs over 80 lines.

A longer function does several things at once; split it into pieces whose names say what each
does. A function's length counts from its ``def`` line to the last line of its body (decorators
not included; a nested function counts inside its parent and on its own). This test reads
(``ast``) every module under ``libs/*/src``, ``services/*/src`` and ``src/`` and names each
function over the limit with its file and line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SOURCE_GLOBS = ("libs/*/src/**/*.py", "services/*/src/**/*.py", "src/**/*.py")
MAX_LINES = 80


@dataclass(frozen=True)
class LongFunction:
    path: str
    line: int
    name: str
    lines: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.name} ({self.lines} lines)"


class _FunctionLengths(ast.NodeVisitor):
    """Every function of a module with its qualified name (``Class.method.inner``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.scope: list[str] = []
        self.long: list[LongFunction] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._inside(node.name, node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._measure(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._measure(node)

    def _measure(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        lines = function_lines(node)
        if lines > MAX_LINES:
            name = ".".join([*self.scope, node.name])
            self.long.append(LongFunction(self.path, node.lineno, name, lines))
        self._inside(node.name, node)

    def _inside(self, name: str, node: ast.AST) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """From the ``def`` line (``lineno`` skips decorators) to the body's last line."""
    assert node.end_lineno is not None
    return node.end_lineno - node.lineno + 1


def long_functions_in(source: str, path: str) -> list[LongFunction]:
    visitor = _FunctionLengths(path)
    visitor.visit(ast.parse(source, filename=path))
    return visitor.long


def product_modules() -> list[Path]:
    return sorted({path for pattern in SOURCE_GLOBS for path in REPO.glob(pattern)})


def test_no_function_in_product_code_is_longer_than_80_lines() -> None:
    modules = product_modules()
    assert len(modules) > 50, f"found only {len(modules)} product modules under {REPO}"
    too_long = [
        function
        for path in modules
        for function in long_functions_in(
            path.read_text(encoding="utf-8"), str(path.relative_to(REPO))
        )
    ]
    assert not too_long, (
        f"{len(too_long)} function(s) over {MAX_LINES} lines; split each into named pieces:\n"
        + "\n".join(str(function) for function in too_long)
    )


# --- the measure itself -----------------------------------------------------------------------


def _function(name: str, body_lines: int, indent: str = "") -> str:
    signature = f"{indent}def {name}(\n{indent}    a: int,\n{indent}) -> None:\n"
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
    return f"{indent}@decorator\n{signature}{body}"


def test_length_counts_from_def_to_the_last_body_line_without_decorators() -> None:
    # 3 lines of signature + 77 of body = 80: at the limit, allowed; one more is too long.
    assert long_functions_in(_function("fits", 77), "m.py") == []
    assert long_functions_in(_function("too_long", 78), "m.py") == [
        LongFunction("m.py", 2, "too_long", 81)
    ]


def test_methods_and_nested_functions_are_named_by_where_they_are() -> None:
    source = "class Service:\n    async def start(self) -> None:\n" + _function(
        "inner", 90, indent="        "
    )
    found = {function.name: function.lines for function in long_functions_in(source, "m.py")}
    assert found == {"Service.start": 95, "Service.start.inner": 93}
